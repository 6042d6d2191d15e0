/**
 * useMonitoring: the dashboard document, refreshed every `refreshIntervalMs` (30 s by default),
 * with the last good document kept through failures (never a blank page), when it was last
 * updated, whether it is stale, and the problem of the last attempt.
 */

import { useCallback, useEffect, useRef, useState } from "react";
import {
  type ChartWindow,
  createSilence,
  type DashboardDoc,
  expireSilence,
  fetchDashboard,
  type FunctionsCaller,
  isStale,
  MonitoringProblem,
  type SilenceRequest,
} from "./monitoringClient";

export interface MonitoringOptions {
  /** How often to refresh, in ms (default 30 000; at least 1 000). */
  refreshIntervalMs?: number;
  /** The chart's window (default 24h). */
  window?: ChartWindow;
  /** Rows of recent errors, dead letters and silences (default 50). */
  limit?: number;
  /** The Edge Function's name (default monitoring-dashboard). */
  functionName?: string;
}

export interface MonitoringState {
  doc: DashboardDoc | null;
  /** the problem of the last attempt, null when it succeeded */
  problem: MonitoringProblem | null;
  /** when the last good document arrived (ms since epoch) */
  lastUpdated: number | null;
  /** whether the shown document is older than twice the refresh interval */
  stale: boolean;
  loading: boolean;
  refresh: () => Promise<void>;
  silence: (req: SilenceRequest) => Promise<void>;
  expire: (id: number) => Promise<void>;
}

export const DEFAULT_REFRESH_MS = 30_000;

export function useMonitoring(
  client: FunctionsCaller,
  options: MonitoringOptions = {},
): MonitoringState {
  const interval = Math.max(1_000, options.refreshIntervalMs ?? DEFAULT_REFRESH_MS);
  const { window: chartWindow = "24h", limit = 50, functionName } = options;
  const [doc, setDoc] = useState<DashboardDoc | null>(null);
  const [problem, setProblem] = useState<MonitoringProblem | null>(null);
  const [lastUpdated, setLastUpdated] = useState<number | null>(null);
  const [loading, setLoading] = useState(true);
  const [now, setNow] = useState(() => Date.now());
  const inFlight = useRef(false);
  const again = useRef(false);

  const refresh = useCallback(async (): Promise<void> => {
    if (inFlight.current) {
      again.current = true; // refresh once more when the running request ends (e.g. after a silence)
      return;
    }
    inFlight.current = true;
    setLoading(true);
    try {
      const next = await fetchDashboard(client, { window: chartWindow, limit, functionName });
      setDoc(next);
      setProblem(null);
      setLastUpdated(Date.now());
    } catch (err) {
      setProblem(
        err instanceof MonitoringProblem
          ? err
          : new MonitoringProblem("unreachable", `The monitoring backend is unreachable: ${err}`),
      );
    } finally {
      inFlight.current = false;
      setLoading(false);
      setNow(Date.now());
    }
    if (again.current) {
      again.current = false;
      await refresh();
    }
  }, [client, chartWindow, limit, functionName]);

  useEffect(() => {
    void refresh();
    const timer = setInterval(() => void refresh(), interval);
    // a second clock so "stale" shows even while a request hangs
    const tick = setInterval(() => setNow(Date.now()), Math.min(interval, 5_000));
    return () => {
      clearInterval(timer);
      clearInterval(tick);
    };
  }, [refresh, interval]);

  const silence = useCallback(async (req: SilenceRequest) => {
    await createSilence(client, req, functionName);
    await refresh();
  }, [client, functionName, refresh]);

  const expire = useCallback(async (id: number) => {
    await expireSilence(client, id, functionName);
    await refresh();
  }, [client, functionName, refresh]);

  return {
    doc,
    problem,
    lastUpdated,
    stale: isStale(lastUpdated, now, interval),
    loading,
    refresh,
    silence,
    expire,
  };
}
