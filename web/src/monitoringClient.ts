/**
 * The dashboard's data client: calls the `monitoring-dashboard` Edge Function through the app's
 * own supabase-js client (so the signed-in user's access token goes with every call), and turns
 * every failure into a {kind, message} a person can read.
 */

import type { SupabaseClient } from "@supabase/supabase-js";

export const DEFAULT_FUNCTION = "monitoring-dashboard";
export type ChartWindow = "24h" | "7d";
export const WINDOWS: readonly ChartWindow[] = ["24h", "7d"];
/** Silence durations offered on the page (the function accepts 1m to 30d). */
export const SILENCE_DURATIONS = ["30m", "1h", "2h", "4h", "8h", "1d", "3d", "7d"] as const;

/** A row of a view: the document passes view rows through as they are (new columns included). */
export type Row = Record<string, unknown>;

export interface HealthDoc {
  status: "healthy" | "degraded" | "unhealthy" | string;
  timestamp: string;
  reasons?: string[];
  services?: {
    whatsapp?: {
      status?: string;
      connectionState?: string | null;
      lastConnected?: string | null;
      downMinutes?: number | null;
    };
    functions?: Row;
  };
  [key: string]: unknown;
}

export interface Alert extends Row {
  rule_name: string;
  severity: string;
  state: "pending" | "firing";
  message: string | null;
  labels: Record<string, unknown>;
  fingerprint: string;
  started_at: string;
  firing_since: string | null;
  silenced_by: number | null;
  runbook: string[];
}

export interface Silence extends Row {
  id: number;
  starts_at: string;
  ends_at: string;
  matchers: Array<{ name: string; value: string; isRegex?: boolean; isEqual?: boolean }>;
  comment: string;
  created_by: string;
  expired_by?: string | null;
  state: "active" | "pending" | "expired";
}

/** What monitoring.dashboard() answers. */
export interface DashboardDoc {
  version: number;
  generatedAt: string;
  window: ChartWindow;
  limit: number;
  buildMs?: number;
  health: HealthDoc;
  delivery: Row[];
  hourly: Row[];
  queue: Row[];
  latency: Row[];
  functions: Row[];
  sessions: Row[];
  recentErrors: Row[];
  alerts: Alert[];
  rules: Record<string, { threshold: number; comparator: string; severity: string }>;
  silences: Silence[];
  deadLetters: { count: number; rows: Row[] };
}

export type ProblemKind =
  | "unauthorized"
  | "forbidden"
  | "unreachable"
  | "bad_request"
  | "not_found"
  | "error";

/** A failure, said plainly. */
export class MonitoringProblem extends Error {
  constructor(readonly kind: ProblemKind, message: string, readonly field?: string) {
    super(message);
    this.name = "MonitoringProblem";
  }
}

interface ErrorBody {
  error?: string;
  reason?: string;
  field?: string;
}

/** Read the JSON body of a failed response (the function always sends {error, reason}). */
async function errorBody(context: unknown): Promise<ErrorBody> {
  if (context && typeof (context as Response).json === "function") {
    try {
      const body = await (context as Response).clone().json();
      if (body && typeof body === "object") return body as ErrorBody;
    } catch {
      // not JSON: a proxy or gateway answered
    }
  }
  return {};
}

/** Turn what supabase-js returned as `error` into a MonitoringProblem. */
export async function toProblem(error: unknown): Promise<MonitoringProblem> {
  const name = (error as { name?: string })?.name ?? "";
  const context = (error as { context?: unknown })?.context;
  if (name === "FunctionsFetchError" || name === "FunctionsRelayError") {
    return new MonitoringProblem(
      "unreachable",
      "The monitoring backend is unreachable (no answer from the Edge Function).",
    );
  }
  const status = (context as Response | undefined)?.status ?? 0;
  const body = await errorBody(context);
  const reason = body.reason ?? (error instanceof Error ? error.message : String(error));
  if (status === 401) {
    return new MonitoringProblem("unauthorized", `Not signed in or session expired: ${reason}`);
  }
  if (status === 403) return new MonitoringProblem("forbidden", `Not authorised: ${reason}`);
  if (status === 400 || status === 413) {
    return new MonitoringProblem("bad_request", reason, body.field);
  }
  if (status === 404) return new MonitoringProblem("not_found", reason);
  if (status === 503 || status === 502 || status === 504 || status === 0) {
    return new MonitoringProblem(
      "unreachable",
      `The monitoring database is unreachable: ${reason}`,
    );
  }
  return new MonitoringProblem("error", `The monitoring backend failed (${status}): ${reason}`);
}

/** The part of supabase-js the client uses (so tests can pass a fake). */
export type FunctionsCaller = Pick<SupabaseClient, "functions">;

export interface FetchOptions {
  window?: ChartWindow;
  limit?: number;
  functionName?: string;
}

/** Validate the options the page sends; throws MonitoringProblem("bad_request") naming the field. */
export function checkOptions(options: FetchOptions): { window: ChartWindow; limit: number } {
  const window = options.window ?? "24h";
  if (!WINDOWS.includes(window)) {
    throw new MonitoringProblem(
      "bad_request",
      `window must be 24h or 7d (got ${window})`,
      "window",
    );
  }
  const limit = options.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
    throw new MonitoringProblem(
      "bad_request",
      `limit must be an integer from 1 to 200 (got ${limit})`,
      "limit",
    );
  }
  return { window, limit };
}

/** The dashboard document (GET). */
export async function fetchDashboard(
  client: FunctionsCaller,
  options: FetchOptions = {},
): Promise<DashboardDoc> {
  const { window, limit } = checkOptions(options);
  const name = options.functionName ?? DEFAULT_FUNCTION;
  let result: { data: unknown; error: unknown };
  try {
    result = await client.functions.invoke(`${name}?window=${window}&limit=${limit}`, {
      method: "GET",
    });
  } catch (err) {
    throw await toProblem(err);
  }
  if (result.error) throw await toProblem(result.error);
  const doc = result.data as DashboardDoc | null;
  if (!doc || typeof doc !== "object" || !doc.health) {
    throw new MonitoringProblem("error", "The monitoring backend answered without a document.");
  }
  return doc;
}

export interface SilenceRequest {
  matchers: Record<string, string>;
  duration: string;
  comment: string;
}

/** Check a silence before sending it; throws MonitoringProblem("bad_request") naming the field. */
export function checkSilence(req: SilenceRequest): SilenceRequest {
  const entries = Object.entries(req.matchers);
  if (entries.length < 1 || entries.length > 20) {
    throw new MonitoringProblem("bad_request", "Choose an alert to silence.", "matchers");
  }
  if (!/^[1-9][0-9]{0,5}[mhd]$/.test(req.duration)) {
    throw new MonitoringProblem(
      "bad_request",
      "Duration must be a number and m, h or d, such as 2h.",
      "duration",
    );
  }
  const comment = req.comment.trim();
  if (comment === "" || comment.length > 500) {
    throw new MonitoringProblem(
      "bad_request",
      "Say why you silence it (1 to 500 characters).",
      "comment",
    );
  }
  return { ...req, comment };
}

/** Equality matchers for one alert: its labels, as text. */
export function matchersFor(alert: Pick<Alert, "labels">): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(alert.labels ?? {})) {
    if (v !== null && v !== undefined) out[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return out;
}

async function post(
  client: FunctionsCaller,
  body: Record<string, unknown>,
  functionName = DEFAULT_FUNCTION,
): Promise<Silence> {
  let result: { data: unknown; error: unknown };
  try {
    result = await client.functions.invoke(functionName, { method: "POST", body });
  } catch (err) {
    throw await toProblem(err);
  }
  if (result.error) throw await toProblem(result.error);
  return result.data as Silence;
}

/** Create a silence (recorded with the signed-in admin as created_by). */
export async function createSilence(
  client: FunctionsCaller,
  req: SilenceRequest,
  functionName?: string,
): Promise<Silence> {
  const ok = checkSilence(req);
  return await post(client, { action: "silence", ...ok }, functionName);
}

/** Expire a silence now (recorded with the signed-in admin as expired_by). */
export async function expireSilence(
  client: FunctionsCaller,
  id: number,
  functionName?: string,
): Promise<Silence> {
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new MonitoringProblem("bad_request", `id must be a positive integer (got ${id})`, "id");
  }
  return await post(client, { action: "expire", id }, functionName);
}

/** A number from a view column (numeric columns may arrive as numbers or strings). */
export function num(value: unknown): number | null {
  if (value === null || value === undefined || value === "") return null;
  const n = typeof value === "number" ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

/** The row of `rows` whose window_name is `name`. */
export function windowRow(rows: Row[] | undefined, name: string): Row | undefined {
  return rows?.find((r) => r.window_name === name);
}

/** Whether data last fetched at `lastSuccess` is stale at `now` (older than twice the interval). */
export function isStale(lastSuccess: number | null, now: number, intervalMs: number): boolean {
  return lastSuccess !== null && now - lastSuccess > 2 * intervalMs;
}
