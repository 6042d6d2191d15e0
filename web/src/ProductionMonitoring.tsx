/**
 * ProductionMonitoring: the spec's monitoring dashboard for an admin area.
 *
 *   <ProductionMonitoring client={supabase} />            // the app's own supabase-js client
 *
 * It reads one JSON document from the `monitoring-dashboard` Edge Function with the signed-in
 * user's session (admins only: the function checks the JWT), refreshes it every 30 s (set
 * `refreshIntervalMs`), shows when it was last updated and says plainly when the data is stale,
 * the backend unreachable or the user not authorised. Every value from the data is rendered as
 * text (React escapes it); nothing is inserted as HTML.
 */

import { type FormEvent, type ReactNode, useState } from "react";
import { DeliveryChart } from "./DeliveryChart";
import {
  type Alert,
  type ChartWindow,
  type FunctionsCaller,
  matchersFor,
  MonitoringProblem,
  num,
  type Row,
  type Silence,
  SILENCE_DURATIONS,
  windowRow,
} from "./monitoringClient";
import { useMonitoring } from "./useMonitoring";

export interface ProductionMonitoringProps {
  /** The app's supabase-js client (its session's access token authorises the calls). */
  client: FunctionsCaller;
  /** Refresh interval in ms (default 30 000). */
  refreshIntervalMs?: number;
  /** The chart's first window (default 24h); the page has a 24 h / 7 d switch. */
  initialWindow?: ChartWindow;
  /** The Edge Function's name (default monitoring-dashboard). */
  functionName?: string;
  /** Rows of recent errors, dead letters and silences (default 50, at most 200). */
  limit?: number;
}

// -- formatting -------------------------------------------------------------------------------

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function fmtInt(v: unknown): string {
  const n = num(v);
  return n === null ? "–" : integer.format(n);
}

function fmtNum(v: unknown, digits = 2, unit = ""): string {
  const n = num(v);
  return n === null ? "–" : `${n.toFixed(digits)}${unit}`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** Local date and time to the second, e.g. 2026-11-30 14:05:09. */
export function fmtTime(v: unknown): string {
  if (v === null || v === undefined || v === "") return "–";
  const d = new Date(typeof v === "number" ? v : String(v));
  if (Number.isNaN(d.getTime())) return String(v);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "42 s ago", "5 min ago", "3 h ago". */
export function fmtAgo(ms: number | null, now: number): string {
  if (ms === null) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function label(key: string): string {
  return key.replace(/_/g, " ");
}

// -- small parts ------------------------------------------------------------------------------

const STATUS_STYLE: Record<string, string> = {
  healthy: "bg-green-100 text-green-800 border-green-300",
  degraded: "bg-amber-100 text-amber-900 border-amber-300",
  unhealthy: "bg-red-100 text-red-800 border-red-300",
};

function Badge({ status, testId }: { status: string; testId?: string }) {
  const style = STATUS_STYLE[status] ?? "bg-slate-100 text-slate-700 border-slate-300";
  return (
    <span
      data-testid={testId}
      className={`inline-flex items-center rounded-full border px-3 py-1 text-sm font-semibold uppercase tracking-wide ${style}`}
    >
      {status}
    </span>
  );
}

function Card({ title, children, testId, className = "" }: {
  title: string;
  children: ReactNode;
  testId?: string;
  className?: string;
}) {
  return (
    <section
      data-testid={testId}
      className={`min-w-0 rounded-lg border border-slate-200 bg-white p-4 shadow-sm ${className}`}
    >
      <h2 className="mb-3 text-sm font-semibold uppercase tracking-wide text-slate-500">{title}</h2>
      {children}
    </section>
  );
}

function Stat({ name, value, testId, tone = "" }: {
  name: string;
  value: string;
  testId?: string;
  tone?: string;
}) {
  return (
    <div className="min-w-0">
      <div className="text-xs text-slate-500">{name}</div>
      <div
        data-testid={testId}
        className={`text-xl font-semibold tabular-nums whitespace-nowrap ${tone}`}
      >
        {value}
      </div>
    </div>
  );
}

function Table({ columns, rows, empty, testId }: {
  columns: Array<{ key: string; title: string; render?: (row: Row) => ReactNode }>;
  rows: Row[];
  empty: string;
  testId?: string;
}) {
  if (rows.length === 0) {
    return <p data-testid={testId} className="text-sm text-slate-500">{empty}</p>;
  }
  return (
    <div className="overflow-x-auto">
      <table data-testid={testId} className="w-full text-left text-sm">
        <thead>
          <tr className="border-b border-slate-200 text-xs uppercase text-slate-500">
            {columns.map((c) => <th key={c.key} className="px-2 py-1 font-medium">{c.title}</th>)}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, i) => (
            <tr key={String(row.id ?? i)} className="border-b border-slate-100 align-top">
              {columns.map((c) => (
                <td key={c.key} className="px-2 py-1 break-words">
                  {c.render ? c.render(row) : String(row[c.key] ?? "–")}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// -- sections ---------------------------------------------------------------------------------

// delivery_stats columns shown by name; any other numeric column (e.g. receipt figures added
// later) is listed under "receipts" as it comes
const KNOWN_DELIVERY = new Set([
  "window_name",
  "window_start",
  "total",
  "accepted",
  "sent",
  "failed",
  "pending",
  "processing",
  "delivery_rate",
]);

function Totals({ day }: { day: Row | undefined }) {
  if (!day) return <p className="text-sm text-slate-500">No statistics yet.</p>;
  const rate = num(day.delivery_rate);
  const extra = Object.entries(day).filter(([k, v]) => !KNOWN_DELIVERY.has(k) && num(v) !== null);
  return (
    <div>
      <div className="grid grid-cols-2 gap-3 sm:grid-cols-3">
        <Stat name="total" value={fmtInt(day.total)} testId="stat-total" />
        <Stat
          name="delivered (accepted)"
          value={fmtInt(day.accepted ?? day.sent)}
          testId="stat-accepted"
          tone="text-green-700"
        />
        <Stat name="sent, no receipt yet" value={fmtInt(day.sent)} testId="stat-sent" />
        <Stat name="failed" value={fmtInt(day.failed)} testId="stat-failed" tone="text-red-700" />
        <Stat name="pending" value={fmtInt(day.pending)} testId="stat-pending" />
        <Stat
          name="delivery rate"
          value={fmtNum(day.delivery_rate, 2, " %")}
          testId="stat-delivery-rate"
          tone={rate !== null && rate < 90 ? "text-red-700" : "text-green-700"}
        />
      </div>
      {extra.length > 0 && (
        <div className="mt-3 border-t border-slate-100 pt-2">
          <div className="mb-1 text-xs uppercase text-slate-500">receipts</div>
          <div className="grid grid-cols-2 gap-3 sm:grid-cols-3">
            {extra.map(([k, v]) => (
              <Stat
                key={k}
                name={label(k)}
                value={Number.isInteger(num(v)) ? fmtInt(v) : fmtNum(v)}
                testId={`stat-${k}`}
              />
            ))}
          </div>
        </div>
      )}
    </div>
  );
}

function SilenceForm({ alert, onSilence }: {
  alert: Alert;
  onSilence: (matchers: Record<string, string>, duration: string, comment: string) => Promise<void>;
}) {
  const [open, setOpen] = useState(false);
  const [duration, setDuration] = useState<string>("2h");
  const [comment, setComment] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!open) {
    return (
      <button
        type="button"
        className="rounded border border-slate-300 px-2 py-1 text-xs font-medium hover:bg-slate-50"
        onClick={() => setOpen(true)}
      >
        Silence…
      </button>
    );
  }
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSilence(matchersFor(alert), duration, comment);
      setOpen(false);
      setComment("");
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} className="mt-2 flex flex-wrap items-end gap-2" aria-label="silence">
      <label className="text-xs">
        <span className="block text-slate-500">for</span>
        <select
          name="duration"
          value={duration}
          onChange={(e) =>
            setDuration(e.target.value)}
          className="rounded border border-slate-300 px-1 py-1"
        >
          {SILENCE_DURATIONS.map((d) => <option key={d} value={d}>{d}</option>)}
        </select>
      </label>
      <label className="min-w-0 flex-1 text-xs">
        <span className="block text-slate-500">why</span>
        <input
          name="comment"
          value={comment}
          maxLength={500}
          required
          onChange={(e) =>
            setComment(e.target.value)}
          placeholder="carrier maintenance, ticket OPS-12"
          className="w-full rounded border border-slate-300 px-2 py-1"
        />
      </label>
      <button
        type="submit"
        disabled={busy}
        className="rounded bg-slate-800 px-3 py-1 text-xs font-semibold text-white disabled:opacity-50"
      >
        Silence
      </button>
      <button
        type="button"
        className="px-2 py-1 text-xs"
        onClick={() =>
          setOpen(false)}
      >
        Cancel
      </button>
      {error && <p role="alert" className="w-full text-xs text-red-700">{error}</p>}
    </form>
  );
}

function Alerts({ alerts, onSilence }: {
  alerts: Alert[];
  onSilence: (matchers: Record<string, string>, duration: string, comment: string) => Promise<void>;
}) {
  if (alerts.length === 0) {
    return <p className="text-sm text-green-700">No alert is firing or pending.</p>;
  }
  return (
    <ul className="space-y-3">
      {alerts.map((a) => (
        <li
          key={a.fingerprint}
          data-testid={`alert-${a.rule_name}`}
          className={`rounded border-l-4 p-3 ${
            a.severity === "critical" ? "border-red-500 bg-red-50" : "border-amber-400 bg-amber-50"
          }`}
        >
          <div className="flex flex-wrap items-center gap-2">
            <span className="font-semibold">{a.rule_name}</span>
            <span className="rounded bg-white px-1.5 text-xs uppercase">{a.severity}</span>
            <span className="rounded bg-white px-1.5 text-xs uppercase">{a.state}</span>
            {a.silenced_by !== null && (
              <span className="rounded bg-slate-200 px-1.5 text-xs">
                silenced (#{a.silenced_by})
              </span>
            )}
            <span className="text-xs text-slate-500">
              since {fmtTime(a.firing_since ?? a.started_at)}
            </span>
          </div>
          <p className="mt-1 text-sm break-words">{a.message ?? ""}</p>
          {a.runbook?.length > 0 && (
            <details className="mt-1 text-sm">
              <summary className="cursor-pointer text-slate-600">runbook</summary>
              <ol className="ml-5 list-decimal">
                {a.runbook.map((step, i) => <li key={i}>{step}</li>)}
              </ol>
            </details>
          )}
          {a.silenced_by === null && <SilenceForm alert={a} onSilence={onSilence} />}
        </li>
      ))}
    </ul>
  );
}

function Silences({ silences, onExpire }: {
  silences: Silence[];
  onExpire: (id: number) => Promise<void>;
}) {
  const [error, setError] = useState<string | null>(null);
  const expire = async (id: number) => {
    setError(null);
    try {
      await onExpire(id);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <div>
      <Table
        testId="silences"
        empty="No silence in the last 24 hours."
        rows={silences}
        columns={[
          { key: "id", title: "#" },
          {
            key: "matchers",
            title: "matches",
            render: (r) =>
              ((r as Silence).matchers ?? []).map((m) => `${m.name}=${m.value}`).join(", "),
          },
          { key: "comment", title: "why" },
          { key: "created_by", title: "by" },
          { key: "state", title: "state" },
          { key: "ends_at", title: "ends", render: (r) => fmtTime(r.ends_at) },
          {
            key: "actions",
            title: "",
            render: (r) =>
              (r as Silence).state === "expired"
                ? (r.expired_by ? `expired by ${String(r.expired_by)}` : "")
                : (
                  <button
                    type="button"
                    className="rounded border border-slate-300 px-2 py-0.5 text-xs hover:bg-slate-50"
                    onClick={() => void expire(Number(r.id))}
                  >
                    Expire
                  </button>
                ),
          },
        ]}
      />
      {error && <p role="alert" className="mt-1 text-xs text-red-700">{error}</p>}
    </div>
  );
}

function ProblemBox({ problem }: { problem: MonitoringProblem }) {
  const title = problem.kind === "forbidden"
    ? "Not authorised"
    : problem.kind === "unauthorized"
    ? "Sign in required"
    : problem.kind === "unreachable"
    ? "Monitoring backend unreachable"
    : "Monitoring unavailable";
  return (
    <div
      role="alert"
      data-testid="problem"
      data-kind={problem.kind}
      className="rounded-lg border border-red-300 bg-red-50 p-4 text-red-900"
    >
      <p className="font-semibold">{title}</p>
      <p className="mt-1 text-sm break-words">{problem.message}</p>
    </div>
  );
}

// -- the component ----------------------------------------------------------------------------

export function ProductionMonitoring({
  client,
  refreshIntervalMs,
  initialWindow = "24h",
  functionName,
  limit,
}: ProductionMonitoringProps) {
  const [chartWindow, setChartWindow] = useState<ChartWindow>(initialWindow);
  const m = useMonitoring(client, { refreshIntervalMs, window: chartWindow, functionName, limit });
  const { doc, problem } = m;
  const now = Date.now();

  const header = (
    <div className="mb-4 flex flex-wrap items-center gap-3">
      {doc && !(problem && (problem.kind === "forbidden" || problem.kind === "unauthorized")) && (
        <Badge status={String(doc.health.status)} testId="health-badge" />
      )}
      <span data-testid="last-updated" className="text-sm text-slate-600">
        Last updated{" "}
        {m.lastUpdated ? `${fmtTime(m.lastUpdated)} (${fmtAgo(m.lastUpdated, now)})` : "never"}
      </span>
      {m.stale && (
        <span
          data-testid="stale"
          className="rounded bg-amber-200 px-2 py-0.5 text-xs font-semibold text-amber-900"
        >
          STALE
        </span>
      )}
      <span className="ml-auto flex items-center gap-2">
        <button
          type="button"
          onClick={() => void m.refresh()}
          className="rounded border border-slate-300 bg-white px-3 py-1 text-sm hover:bg-slate-50"
        >
          {m.loading ? "Refreshing…" : "Refresh"}
        </button>
      </span>
    </div>
  );

  if (problem && (problem.kind === "forbidden" || problem.kind === "unauthorized")) {
    return (
      <div data-testid="production-monitoring">
        {header}
        <ProblemBox problem={problem} />
      </div>
    );
  }

  if (!doc) {
    return (
      <div data-testid="production-monitoring">
        {header}
        {problem
          ? <ProblemBox problem={problem} />
          : <p className="text-slate-500">Loading monitoring data…</p>}
      </div>
    );
  }

  const health = doc.health;
  const wa = health.services?.whatsapp ?? {};
  const day = windowRow(doc.delivery, "24h");
  const hour = windowRow(doc.delivery, "1h");
  const threshold = num(doc.rules?.low_delivery_rate?.threshold);
  const onSilence = (matchers: Record<string, string>, duration: string, comment: string) =>
    m.silence({ matchers, duration, comment });

  return (
    <div data-testid="production-monitoring" className="space-y-4">
      {header}
      {problem && (
        <div
          role="alert"
          data-testid="banner-problem"
          data-kind={problem.kind}
          className="rounded-lg border border-amber-300 bg-amber-50 p-3 text-sm text-amber-900"
        >
          <span className="font-semibold">
            {problem.kind === "unreachable" ? "Backend unreachable. " : "Refresh failed. "}
          </span>
          {problem.message} Showing the data of {fmtTime(m.lastUpdated)}; retrying on its own.
        </div>
      )}

      {(health.reasons ?? []).length > 0 && (
        <Card title="why" testId="health-reasons">
          <ul className="list-disc pl-5 text-sm">
            {(health.reasons ?? []).map((r, i) => <li key={i}>{r}</li>)}
          </ul>
        </Card>
      )}

      <div className="grid grid-cols-1 gap-4 md:grid-cols-2 2xl:grid-cols-4" data-testid="cards">
        <Card title="WhatsApp" testId="card-whatsapp">
          <div className="space-y-2">
            <Badge
              status={String(wa.status ?? "unknown")}
              testId="whatsapp-status"
            />
            <Stat name="connection state" value={String(wa.connectionState ?? "–")} />
            <Stat name="last connected" value={fmtTime(wa.lastConnected)} />
            <Stat name="minutes down" value={fmtNum(wa.downMinutes, 1)} testId="minutes-down" />
          </div>
        </Card>
        <Card title="last 24 hours" testId="card-totals">
          <Totals day={day} />
          {hour && (
            <p className="mt-2 text-xs text-slate-500">
              last hour: {fmtInt(hour.total)} messages, {fmtNum(hour.delivery_rate, 2, " %")}{" "}
              delivered
            </p>
          )}
        </Card>
        <Card title="queue" testId="card-queue">
          <Table
            empty="No queue data."
            rows={doc.queue}
            columns={[
              { key: "window_name", title: "window" },
              {
                key: "backlog_pending",
                title: "pending",
                render: (r) => fmtInt(r.backlog_pending),
              },
              {
                key: "oldest_pending_age_seconds",
                title: "oldest s",
                render: (r) => fmtNum(r.oldest_pending_age_seconds, 0),
              },
              {
                key: "avg_queue_seconds",
                title: "avg s",
                render: (r) => fmtNum(r.avg_queue_seconds, 1),
              },
              {
                key: "p95_queue_seconds",
                title: "p95 s",
                render: (r) => fmtNum(r.p95_queue_seconds, 1),
              },
            ]}
          />
        </Card>
        <Card title="delivery time (s)" testId="card-latency">
          <Table
            empty="No delivery yet."
            rows={doc.latency}
            columns={[
              { key: "window_name", title: "window" },
              { key: "p50_seconds", title: "p50", render: (r) => fmtNum(r.p50_seconds, 1) },
              { key: "p95_seconds", title: "p95", render: (r) => fmtNum(r.p95_seconds, 1) },
              { key: "p99_seconds", title: "p99", render: (r) => fmtNum(r.p99_seconds, 1) },
              { key: "avg_seconds", title: "avg", render: (r) => fmtNum(r.avg_seconds, 1) },
            ]}
          />
        </Card>
      </div>

      <Card title="delivery rate and errors per hour" testId="card-chart">
        <div className="mb-2 flex gap-1" role="group" aria-label="chart window">
          {(["24h", "7d"] as const).map((w) => (
            <button
              key={w}
              type="button"
              aria-pressed={chartWindow === w}
              onClick={() => setChartWindow(w)}
              className={`rounded px-2 py-0.5 text-xs font-semibold ${
                chartWindow === w ? "bg-slate-800 text-white" : "border border-slate-300"
              }`}
            >
              {w === "24h" ? "24 h" : "7 d"}
            </button>
          ))}
        </div>
        <DeliveryChart hourly={doc.hourly} threshold={threshold} />
      </Card>

      <div className="grid grid-cols-1 gap-4 2xl:grid-cols-2">
        <Card title="alerts firing or pending" testId="card-alerts">
          <Alerts alerts={doc.alerts} onSilence={onSilence} />
        </Card>
        <Card title="silences" testId="card-silences">
          <Silences silences={doc.silences} onExpire={m.expire} />
        </Card>
      </div>

      <div className="grid grid-cols-1 gap-4 lg:grid-cols-2">
        <Card title="recent errors" testId="card-errors">
          <div className="max-h-[32rem] overflow-y-auto">
            <Table
              testId="recent-errors"
              empty="No error logged."
              rows={doc.recentErrors}
              columns={[
                { key: "created_at", title: "when", render: (r) => fmtTime(r.created_at) },
                { key: "error_type", title: "type" },
                { key: "error_message", title: "message" },
              ]}
            />
          </div>
        </Card>
        <div className="space-y-4">
          <Card title="edge functions" testId="card-functions">
            <Table
              empty="No invocation recorded."
              rows={doc.functions}
              columns={[
                { key: "function_name", title: "function" },
                { key: "window_name", title: "window" },
                { key: "invocations", title: "calls", render: (r) => fmtInt(r.invocations) },
                { key: "errors", title: "errors", render: (r) => fmtInt(r.errors) },
                { key: "error_rate", title: "error %", render: (r) => fmtNum(r.error_rate) },
                { key: "avg_ms", title: "avg ms", render: (r) => fmtNum(r.avg_ms, 0) },
                { key: "p95_ms", title: "p95 ms", render: (r) => fmtNum(r.p95_ms, 0) },
              ]}
            />
          </Card>
          <Card
            title={`dead letters (${fmtInt(doc.deadLetters.count)})`}
            testId="card-dead-letters"
          >
            <Table
              empty="No dead-lettered notification."
              rows={doc.deadLetters.rows}
              columns={[
                { key: "dead_at", title: "when", render: (r) => fmtTime(r.dead_at) },
                { key: "channel", title: "channel" },
                { key: "rule_name", title: "alert" },
                { key: "attempts", title: "tries" },
                { key: "last_error", title: "last error" },
              ]}
            />
          </Card>
        </div>
      </div>
      <p className="text-xs text-slate-400">
        Document built in {fmtNum(doc.buildMs, 1)} ms at{" "}
        {fmtTime(doc.generatedAt)}; refreshes on its own.
      </p>
    </div>
  );
}

export default ProductionMonitoring;
