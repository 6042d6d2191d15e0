/**
 * Each call of a function is logged in monitoring.function_invocations (through
 * monitoring.record_invocation), which feeds monitoring.function_stats and the health check's
 * services.functions. Recording is fire-and-forget: it never delays or fails the response.
 * Records are buffered for up to FLUSH_MS and written in one statement, so that a flood of calls
 * (e.g. anonymous /health) costs the database one statement per second, not one per call.
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

interface Invocation {
  f: string;
  s: number;
  d: number;
  t: string;
}

const buffer: Invocation[] = [];
let scheduled: (() => void) | undefined;

/** Write the buffered records in one statement (monitoring.record_invocation per row). */
async function flush(): Promise<void> {
  const rows = buffer.splice(0, buffer.length);
  if (rows.length === 0) return;
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
export function recordInvocation(fn: string, statusCode: number, durationMs: number): void {
  const duration = Math.max(0, Math.round(durationMs * 10) / 10);
  buffer.push({ f: fn, s: statusCode, d: duration, t: new Date().toISOString() });
  schedule(buffer.length >= MAX_BATCH);
}

/** How a function built with withMonitoring() answers what its responder does not. */
export interface MonitoringOptions {
  /** the CORS headers of its preflight and error answers */
  cors: Record<string, string>;
  /** the `action` of its log lines */
  action: string;
  /** the JSON body of the 500 a thrown error becomes (never the error itself) */
  internalError: Record<string, unknown>;
}

/**
 * An Edge Function handler around `respond`: a CORS preflight answered, anything thrown logged
 * and answered 500 with `internalError`, and every answer timed and recorded for
 * monitoring.function_stats (fire-and-forget: recording never delays or fails the response).
 */
export function withMonitoring(
  functionName: string,
  opts: MonitoringOptions,
  respond: (req: Request) => Promise<Response>,
): (req: Request) => Promise<Response> {
  const log = logger(functionName);
  return async (req: Request): Promise<Response> => {
    const started = performance.now();
    if (req.method === "OPTIONS") return preflight(opts.cors);
    let res: Response;
    try {
      res = await respond(req);
    } catch (err) {
      log.error({ action: opts.action, status: "error", error: describeError(err) });
      res = json(opts.internalError, 500, opts.cors);
    }
    recordInvocation(functionName, res.status, performance.now() - started);
    return res;
  };
}
