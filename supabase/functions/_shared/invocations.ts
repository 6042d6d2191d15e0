/**
 * Each call of a function is logged in monitoring.function_invocations (through
 * monitoring.record_invocation), which feeds monitoring.function_stats and the health check's
 * services.functions. Recording is fire-and-forget: it never delays or fails the response.
 */

import { db, STATEMENT_TIMEOUT_MS, withTimeout } from "./db.ts";
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

/** Wait for all background work started so far (tests, graceful shutdown). */
export async function settle(): Promise<void> {
  while (pending.size > 0) await Promise.all([...pending]);
}

/** Record one invocation of `fn` in the background (see the module comment). */
export function recordInvocation(fn: string, statusCode: number, durationMs: number): void {
  const log = logger(fn);
  const duration = Math.max(0, Math.round(durationMs * 10) / 10);
  background(
    (async () => {
      try {
        const sql = db();
        const query = sql`
          select monitoring.record_invocation(${fn}::text, ${statusCode}::integer, ${duration}::numeric)`;
        await withTimeout(query, STATEMENT_TIMEOUT_MS + 500, () => query.cancel());
      } catch (err) {
        log.warn({ action: "record_invocation", status: "failed", error: describeError(err) });
      }
    })(),
  );
}
