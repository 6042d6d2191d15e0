/**
 * Each call of a function is logged in monitoring.function_invocations, which feeds
 * monitoring.function_stats, the function_errors / function_latency / function_availability rules
 * and the health check's services.functions. Recording is fire-and-forget: it never delays or
 * fails the response. Records are buffered for up to FLUSH_MS and written in one go, so that a
 * flood of calls (e.g. anonymous /health) costs one statement (or one POST) per second.
 *
 * Where the records go (recordingTarget()):
 * - MONITORING_INGEST_URL and MONITORING_INGEST_KEY set: POSTed as one batch to the ingest Edge
 *   Function (an app's function that has no database connection, or should not use it);
 *   a batch the endpoint does not take within INGEST_TIMEOUT_MS is dropped and counted
 *   (droppedRecords()), never retried in the foreground;
 * - else SUPABASE_DB_URL (a default secret of hosted Edge Functions): monitoring.record_invocation
 *   over the database connection (our own functions);
 * - neither: nothing is recorded (one warning per instance).
 *
 * An app's Edge Function in three lines (copy supabase/functions/_shared/ next to it):
 *   import { withMonitoring } from "../_shared/invocations.ts";
 *   const handler = async (req: Request) => new Response("ok");
 *   Deno.serve(withMonitoring("send-notification", handler));
 */

import { db, STATEMENT_TIMEOUT_MS, withTimeout } from "./db.ts";
import { json, preflight } from "./http.ts";
import { describeError, logger } from "./log.ts";

const pending = new Set<Promise<unknown>>();

interface EdgeRuntimeGlobal {
  EdgeRuntime?: { waitUntil?: (p: Promise<unknown>) => void };
}

/**
 * Run `work` after the response: kept alive with EdgeRuntime.waitUntil on Supabase's runtime
 * (which may otherwise stop the worker once the response is sent) and tracked for settle().
 */
export function background(work: Promise<unknown>): void {
  const p = work.catch(() => {}).finally(() => pending.delete(p));
  pending.add(p);
  try {
    (globalThis as EdgeRuntimeGlobal).EdgeRuntime?.waitUntil?.(p);
  } catch {
    // waitUntil is an optimisation; the promise runs either way
  }
}

/** Records wait at most this long, so that a flood of calls costs one statement per period. */
export const FLUSH_MS = 1000;
/** A batch is written at once when it reaches this size. */
export const MAX_BATCH = 500;

/** How long a POST to the ingest endpoint may take before its batch is dropped. */
export const INGEST_TIMEOUT_MS = 3000;

interface Invocation {
  f: string;
  s: number;
  d: number;
  t: string;
  /** "database": never through the ingest endpoint (our own functions, see MonitoringOptions.recordTo) */
  via: RecordTo;
}

/** How a function's records travel: "auto" (recordingTarget()) or always "database". */
export type RecordTo = "auto" | "database";

/** Where the records go (see the module comment). */
export type RecordingTarget =
  | { kind: "ingest"; url: string; key: string }
  | { kind: "db" }
  | { kind: "none" };

function env(name: string): string {
  try {
    return (Deno.env.get(name) ?? "").trim();
  } catch {
    return "";
  }
}

/** The ingest endpoint when MONITORING_INGEST_URL and _KEY are set, else the database if any. */
export function recordingTarget(): RecordingTarget {
  const url = env("MONITORING_INGEST_URL");
  const key = env("MONITORING_INGEST_KEY");
  if (url && key) return { kind: "ingest", url, key };
  if (env("SUPABASE_DB_URL")) return { kind: "db" };
  return { kind: "none" };
}

const buffer: Invocation[] = [];
let scheduled: (() => void) | undefined;
let dropped = 0;
let warnedNone = false;

/** Records this instance could not deliver to the ingest endpoint (dropped, never retried). */
export function droppedRecords(): number {
  return dropped;
}

/** POST the records as one batch to the ingest endpoint; on any failure drop and count them. */
async function postBatch(rows: Invocation[], url: string, key: string): Promise<void> {
  const batch = {
    batchId: crypto.randomUUID(),
    invocations: rows.map((r) => ({ function: r.f, status: r.s, durationMs: r.d, time: r.t })),
  };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), INGEST_TIMEOUT_MS);
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify(batch),
      signal: controller.signal,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`ingest answered ${res.status}: ${text.slice(0, 200)}`);
  } catch (err) {
    dropped += rows.length;
    logger(rows[0].f).warn({
      action: "ingest_invocations",
      status: "dropped",
      records: rows.length,
      droppedTotal: dropped,
      error: describeError(err),
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Write the buffered records: POSTed to the ingest endpoint, or one statement to the database. */
async function flush(): Promise<void> {
  const all = buffer.splice(0, buffer.length);
  if (all.length === 0) return;
  const target = recordingTarget();
  if (target.kind === "ingest") {
    const posted = all.filter((r) => r.via === "auto");
    const direct = all.filter((r) => r.via === "database");
    await Promise.all([
      posted.length ? postBatch(posted, target.url, target.key) : Promise.resolve(),
      direct.length ? writeRows(direct) : Promise.resolve(),
    ]);
    return;
  }
  if (target.kind === "none") {
    const rows = all;
    if (!warnedNone) {
      warnedNone = true;
      logger(rows[0].f).warn({
        action: "record_invocation",
        status: "not_configured",
        error: "set MONITORING_INGEST_URL and MONITORING_INGEST_KEY (or SUPABASE_DB_URL)",
      });
    }
    return;
  }
  await writeRows(all);
}

/** Write records with monitoring.record_invocation, in one statement; a failure is logged. */
async function writeRows(rows: Invocation[]): Promise<void> {
  if (!env("SUPABASE_DB_URL")) {
    dropped += rows.length;
    return;
  }
  try {
    const sql = db();
    const query = sql`
      select count(monitoring.record_invocation(r.f, r.s, r.d, r.t))
      from jsonb_to_recordset(${JSON.stringify(rows)}::text::jsonb)
        as r (f text, s integer, d numeric, t timestamptz)`;
    await withTimeout(query, STATEMENT_TIMEOUT_MS + 500, () => query.cancel());
  } catch (err) {
    logger(rows[0].f).warn({
      action: "record_invocation",
      status: "failed",
      records: rows.length,
      error: describeError(err),
    });
  }
}

/** Flush after FLUSH_MS (or at once when `now`); one pending flush at a time. */
function schedule(now: boolean): void {
  if (scheduled) {
    if (now) scheduled();
    return;
  }
  let release!: () => void;
  const due = new Promise<void>((resolve) => (release = resolve));
  const timer = setTimeout(() => release(), now ? 0 : FLUSH_MS);
  scheduled = () => {
    clearTimeout(timer);
    release();
  };
  background(due.then(() => {
    scheduled = undefined;
    return flush();
  }));
}

/** Wait for all background work started so far, writing buffered records now (tests, shutdown). */
export async function settle(): Promise<void> {
  if (buffer.length > 0) schedule(true);
  while (pending.size > 0) await Promise.all([...pending]);
}

/** Record one invocation of `fn`: buffered, written in the background (see the module comment). */
export function recordInvocation(
  fn: string,
  statusCode: number,
  durationMs: number,
  via: RecordTo = "auto",
): void {
  const duration = Math.max(0, Math.round(durationMs * 10) / 10);
  buffer.push({ f: fn, s: statusCode, d: duration, t: new Date().toISOString(), via });
  schedule(buffer.length >= MAX_BATCH);
}

/** How a function built with withMonitoring() answers what its responder does not. */
export interface MonitoringOptions {
  /** the CORS headers of its preflight and error answers (none: OPTIONS goes to the responder) */
  cors?: Record<string, string>;
  /** the `action` of its log lines (default "request") */
  action?: string;
  /** the JSON body of the 500 a thrown error becomes (never the error itself) */
  internalError?: Record<string, unknown>;
  /**
   * "database": record through SUPABASE_DB_URL even when MONITORING_INGEST_URL is set (Supabase
   * secrets are project-wide). Our own functions use it: the ingest function must never report
   * its own calls to itself. Default "auto" (see recordingTarget()).
   */
  recordTo?: RecordTo;
}

type Responder = (req: Request) => Response | Promise<Response>;

/**
 * An Edge Function handler around `respond`: a CORS preflight answered, anything thrown logged
 * and answered 500 with `internalError`, and every answer timed and recorded for
 * monitoring.function_stats (fire-and-forget: recording never delays or fails the response).
 */
export function withMonitoring(
  functionName: string,
  optsOrRespond: MonitoringOptions | Responder,
  maybeRespond?: Responder,
): (req: Request) => Promise<Response> {
  const opts: MonitoringOptions = typeof optsOrRespond === "function" ? {} : optsOrRespond;
  const respond = typeof optsOrRespond === "function" ? optsOrRespond : maybeRespond;
  if (!respond) throw new TypeError("withMonitoring(name, [options,] handler): handler is missing");
  const cors = opts.cors ?? {};
  const action = opts.action ?? "request";
  const internalError = opts.internalError ?? { error: "internal error" };
  const log = logger(functionName);
  return async (req: Request): Promise<Response> => {
    const started = performance.now();
    if (req.method === "OPTIONS" && opts.cors) return preflight(opts.cors);
    let res: Response;
    try {
      res = await respond(req);
    } catch (err) {
      log.error({ action, status: "error", error: describeError(err) });
      res = json(internalError, 500, cors);
    }
    recordInvocation(
      functionName,
      res.status,
      performance.now() - started,
      opts.recordTo ?? "auto",
    );
    return res;
  };
}
