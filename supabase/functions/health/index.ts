/**
 * health: the spec's /api/health as a Supabase Edge Function.
 *
 * GET answers monitoring.health() (status, timestamp, services.functions, services.whatsapp,
 * database, scheduler, alerts, delivery, reasons) plus the spec's `environment` block (whether
 * each setting is present, never its value). 200 when healthy or degraded; 503 when unhealthy
 * or when the database cannot be reached in time, with a JSON body saying so (never a stack).
 * The database gets HEALTH_BUDGET_MS, so the whole answer comes within 2 s. No cache keeps it;
 * any origin may read it. Each call is recorded in monitoring.function_invocations.
 */

import { db, isUnavailable, withTimeout } from "../_shared/db.ts";
import { corsHeaders, json, methodNotAllowed, preflight } from "../_shared/http.ts";
import { recordInvocation } from "../_shared/invocations.ts";
import { describeError, logger } from "../_shared/log.ts";

export const FUNCTION_NAME = "health";
/** Time the database gets before health answers 503 on its own (the response stays under 2 s). */
export const HEALTH_BUDGET_MS = 1500;

const METHODS = ["GET", "HEAD"] as const;
const CORS = corsHeaders(METHODS);
const log = logger(FUNCTION_NAME);

/** The spec's environment check: which settings are present (booleans only). */
export interface Environment {
  hasSupabaseUrl: boolean;
  hasSupabaseKey: boolean;
  hasWhatsAppKey: boolean;
  hasWhatsAppSession: boolean;
}

function present(name: string): boolean {
  try {
    return (Deno.env.get(name) ?? "").trim() !== "";
  } catch {
    return false; // no permission to read it: report it as absent
  }
}

/** Which of the settings the system needs are present; never their values. */
export function environment(): Environment {
  return {
    hasSupabaseUrl: present("SUPABASE_URL"),
    hasSupabaseKey: present("SUPABASE_SERVICE_ROLE_KEY") || present("SUPABASE_ANON_KEY"),
    hasWhatsAppKey: present("WHATSAPP_API_KEY"),
    hasWhatsAppSession: present("WHATSAPP_SESSION"),
  };
}

/** ISO 8601 in UTC to the second, as monitoring.health() formats its timestamp. */
function isoNow(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * The body when the database cannot give the health document: unhealthy, saying why in one
 * short line. `unreachable`: no connection or no answer in time; `error`: it answered with an
 * error (e.g. the migrations are missing).
 */
export function failureBody(
  error: string,
  env: Environment,
  kind: "unreachable" | "error" = "unreachable",
): Record<string, unknown> {
  return {
    status: "unhealthy",
    timestamp: isoNow(),
    services: {
      functions: { status: "operational" },
      whatsapp: { status: "unknown", connectionState: null, lastConnected: null },
    },
    database: { status: kind, level: "unhealthy", error },
    reasons: [`database ${kind}: ${error}`],
    environment: env,
  };
}

async function check(): Promise<{ status: number; body: Record<string, unknown> }> {
  const env = environment();
  try {
    const sql = db();
    const query = sql<{ health: Record<string, unknown> }[]>`select monitoring.health() as health`;
    const rows = await withTimeout(query, HEALTH_BUDGET_MS, () => query.cancel());
    const health = rows[0]?.health;
    if (!health || typeof health !== "object") {
      throw new Error("monitoring.health() returned no row");
    }
    const status = health.status === "unhealthy" ? 503 : 200;
    // the spec's keys first (jsonb does not keep key order), then the database's extra sections
    const { status: s, timestamp, services, ...rest } = health;
    return { status, body: { status: s, timestamp, services, ...rest, environment: env } };
  } catch (err) {
    const error = describeError(err);
    if (!isUnavailable(err)) {
      log.error({ action: "health_check", status: "database_error", error });
      return { status: 503, body: failureBody(error, env, "error") };
    }
    log.error({ action: "health_check", status: "database_unreachable", error });
    return { status: 503, body: failureBody(error, env) };
  }
}

/** The function: GET (or HEAD) for the health document, OPTIONS for CORS preflight. */
export async function handler(req: Request): Promise<Response> {
  const started = performance.now();
  if (req.method === "OPTIONS") return preflight(CORS);
  if (!(METHODS as readonly string[]).includes(req.method)) {
    const res = methodNotAllowed(req.method, METHODS, CORS);
    recordInvocation(FUNCTION_NAME, res.status, performance.now() - started);
    return res;
  }
  let status: number;
  let body: Record<string, unknown>;
  try {
    ({ status, body } = await check());
  } catch (err) {
    // check() answers every failure itself; this is the last guard against a stack trace
    const error = describeError(err);
    log.error({ action: "health_check", status: "error", error });
    status = 503;
    body = failureBody(error, environment(), "error");
  }
  const duration = performance.now() - started;
  const level = body.status === "healthy" ? "info" : "warn";
  log[level]({ action: "health_check", status: String(body.status), duration, httpStatus: status });
  recordInvocation(FUNCTION_NAME, status, duration);
  return json(body, status, CORS);
}

// Serve when run as the entry point: `deno run` (import.meta.main) or Supabase's Edge Runtime,
// which defines EdgeRuntime. Imported by tests and the dev router, it only exports the handler.
if (import.meta.main || "EdgeRuntime" in globalThis) Deno.serve(handler);
