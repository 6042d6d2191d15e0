/**
 * health: the spec's /api/health as a Supabase Edge Function, deployed with --no-verify-jwt so that
 * uptime checkers can reach it.
 *
 * Two answers, the same status codes (200 healthy or degraded; 503 unhealthy or database
 * unreachable, with a JSON body, never a stack):
 * - callers with the service role key or an admin's JWT (see _shared/auth.ts) get the full
 *   document: monitoring.health() (status, timestamp, services, database, scheduler, alerts,
 *   delivery, reasons) plus the spec's `environment` block (which settings are present);
 * - everyone else gets only the spec's shape (publicBody): status, timestamp, services.functions
 *   .status, services.whatsapp {status, connectionState, lastConnected} and environment
 *   {configured}: nothing that names a version, a size, a rule, a setting or the outbox. That
 *   answer is cached for HEALTH_CACHE_SECONDS (default 5; one database check at a time), so a
 *   flood of anonymous calls costs the database one health() per period (docs/edge-functions.md).
 * The database gets HEALTH_BUDGET_MS, so the whole answer comes within 2 s. Each call is recorded
 * in monitoring.function_invocations by withMonitoring (batched, see _shared/invocations.ts).
 */

import { db, isUnavailable, withTimeout } from "../_shared/db.ts";
import { isPrivileged } from "../_shared/auth.ts";
import { corsHeaders, json, methodNotAllowed } from "../_shared/http.ts";
import { withMonitoring } from "../_shared/invocations.ts";
import { describeError, logger } from "../_shared/log.ts";

export const FUNCTION_NAME = "health";
/** Time the database gets before health answers 503 on its own (the response stays under 2 s). */
export const HEALTH_BUDGET_MS = 1500;

/** Seconds an anonymous answer is reused when HEALTH_CACHE_SECONDS is not set. */
export const DEFAULT_CACHE_SECONDS = 5;

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

/** check(), with a last guard against a stack trace (check() answers every failure itself). */
async function guardedCheck(): Promise<{ status: number; body: Record<string, unknown> }> {
  try {
    return await check();
  } catch (err) {
    const error = describeError(err);
    log.error({ action: "health_check", status: "error", error });
    return { status: 503, body: failureBody(error, environment(), "error") };
  }
}

function pick(value: unknown, keys: string[]): Record<string, unknown> {
  const src = value && typeof value === "object" ? value as Record<string, unknown> : {};
  return Object.fromEntries(keys.map((k) => [k, k in src ? src[k] : null]));
}

/**
 * The anonymous answer: the spec's document and nothing more. `environment` says only whether
 * every setting the system needs is present (`configured`), not which one is missing.
 */
export function publicBody(full: Record<string, unknown>): Record<string, unknown> {
  const services = (full.services ?? {}) as Record<string, unknown>;
  const env = (full.environment ?? {}) as Record<string, unknown>;
  const values = Object.values(env);
  return {
    status: full.status,
    timestamp: full.timestamp,
    services: {
      functions: pick(services.functions, ["status"]),
      whatsapp: pick(services.whatsapp, ["status", "connectionState", "lastConnected"]),
    },
    environment: { configured: values.length > 0 && values.every((v) => v === true) },
  };
}

function cacheSeconds(): number {
  const raw = (Deno.env.get("HEALTH_CACHE_SECONDS") ?? "").trim();
  const n = raw === "" ? DEFAULT_CACHE_SECONDS : Number(raw);
  return Number.isFinite(n) && n >= 0 ? Math.min(n, 300) : DEFAULT_CACHE_SECONDS;
}

type Answer = { status: number; body: Record<string, unknown> };
let cached: { answer: Answer; until: number } | undefined;
let inFlight: Promise<Answer> | undefined;

/** The anonymous answer, computed at most once per cache period (and once at a time). */
async function publicAnswer(): Promise<Answer> {
  const now = performance.now();
  if (cached && now < cached.until) return cached.answer;
  if (!inFlight) {
    inFlight = guardedCheck().then(({ status, body }) => {
      const answer = { status, body: publicBody(body) };
      cached = { answer, until: performance.now() + cacheSeconds() * 1000 };
      return answer;
    }).finally(() => {
      inFlight = undefined;
    });
  }
  return await inFlight;
}

/** Forget the cached anonymous answer (tests). */
export function clearCache(): void {
  cached = undefined;
}

async function respond(req: Request): Promise<Response> {
  const started = performance.now();
  if (!(METHODS as readonly string[]).includes(req.method)) {
    return methodNotAllowed(req.method, METHODS, CORS);
  }
  const full = await isPrivileged(req);
  const { status, body } = full ? await guardedCheck() : await publicAnswer();
  const duration = performance.now() - started;
  const level = body.status === "healthy" ? "info" : "warn";
  log[level]({
    action: "health_check",
    status: String(body.status),
    duration,
    httpStatus: status,
    view: full ? "full" : "public",
  });
  return json(body, status, CORS);
}

/**
 * The function: GET (or HEAD) for the health document, OPTIONS for CORS preflight; every answer
 * timed and recorded by withMonitoring (a thrown error becomes a 503 document, never a stack).
 */
export const handler = withMonitoring(
  FUNCTION_NAME,
  {
    cors: CORS,
    recordTo: "database",
    action: "health_check",
    internalError: { status: "unhealthy", error: "internal error; see the function's logs" },
  },
  respond,
);

// Serve when run as the entry point: `deno run` (import.meta.main) or Supabase's Edge Runtime,
// which defines EdgeRuntime. Imported by tests and the dev router, it only exports the handler.
if (import.meta.main || "EdgeRuntime" in globalThis) Deno.serve(handler);
