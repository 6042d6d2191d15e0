/**
 * check-error-rate: the spec's Edge Function. Counts WhatsApp errors logged in the last hour
 * with monitoring.check_error_rate(threshold), which also raises or resolves the
 * error_rate_webhook alert (delivered by the database's outbox), and answers exactly
 * {"errorCount": n, "threshold": t}.
 *
 * POST or GET with `Authorization: Bearer <SUPABASE_SERVICE_ROLE_KEY>` (compared in constant
 * time; 401 otherwise). The threshold comes from the JSON body {"threshold": n} or the query
 * ?threshold=n (not both), an integer from 0 to 1e9, default 50; anything else is a 400.
 * pg_cron calls it through net.http_post (monitoring.run_job('check-whatsapp-errors-edge')).
 */

import { db, isUnavailable, STATEMENT_TIMEOUT_MS, withTimeout } from "../_shared/db.ts";
import { corsHeaders, hasBearer, json, methodNotAllowed } from "../_shared/http.ts";
import { withMonitoring } from "../_shared/invocations.ts";
import { describeError, logger } from "../_shared/log.ts";

export const FUNCTION_NAME = "check-error-rate";
/** The spec's threshold: alert when more than 50 errors were logged in the last hour. */
export const DEFAULT_THRESHOLD = 50;
export const MAX_THRESHOLD = 1_000_000_000;
/** Largest request body read, in bytes. */
export const MAX_BODY_BYTES = 16 * 1024;

const METHODS = ["POST", "GET"] as const;
const CORS = corsHeaders(METHODS);
const log = logger(FUNCTION_NAME);
const THRESHOLD_RULE = `threshold must be an integer from 0 to ${MAX_THRESHOLD}`;

/** A request the function refuses, with the status and message to answer. */
export class BadRequest extends Error {
  constructor(message: string, readonly status = 400) {
    super(message);
    this.name = "BadRequest";
  }
}

function shown(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : String(JSON.stringify(value));
  return text.length > 40 ? text.slice(0, 39) + "…" : text;
}

/** A threshold from the query string: digits only (no sign, point or exponent), at most 1e9. */
export function parseQueryThreshold(raw: string): number {
  const text = raw.trim();
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) > MAX_THRESHOLD) {
    throw new BadRequest(`${THRESHOLD_RULE} (got ${shown(raw)})`);
  }
  return Number(text);
}

/** A threshold from a JSON body: a JSON number that is an integer from 0 to 1e9. */
export function parseBodyThreshold(value: unknown): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_THRESHOLD
  ) {
    throw new BadRequest(`${THRESHOLD_RULE} (got ${shown(value)})`);
  }
  return value;
}

async function readBody(req: Request): Promise<Record<string, unknown> | null> {
  if (req.method !== "POST" || req.body === null) return null;
  const declared = Number(req.headers.get("Content-Length") ?? "0");
  if (declared > MAX_BODY_BYTES) {
    throw new BadRequest(`body larger than ${MAX_BODY_BYTES} bytes`, 413);
  }
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) {
    throw new BadRequest(`body larger than ${MAX_BODY_BYTES} bytes`, 413);
  }
  if (text.trim() === "") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BadRequest('body must be JSON such as {"threshold": 50}');
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new BadRequest('body must be a JSON object such as {"threshold": 50}');
  }
  return parsed as Record<string, unknown>;
}

/** The threshold a request asks for (body or query, not both), else the spec's 50. */
export async function requestedThreshold(req: Request): Promise<number> {
  const values = new URL(req.url).searchParams.getAll("threshold");
  if (values.length > 1) throw new BadRequest("threshold given more than once in the query");
  const body = await readBody(req);
  const inBody = body !== null && Object.hasOwn(body, "threshold");
  if (inBody && values.length === 1) {
    throw new BadRequest("threshold given in both the body and the query; give it once");
  }
  if (inBody) return parseBodyThreshold(body.threshold);
  if (values.length === 1) return parseQueryThreshold(values[0]);
  return DEFAULT_THRESHOLD;
}

function serviceKey(): string {
  return (Deno.env.get("SUPABASE_SERVICE_ROLE_KEY") ?? "").trim();
}

async function respond(req: Request): Promise<Response> {
  if (!(METHODS as readonly string[]).includes(req.method)) {
    return methodNotAllowed(req.method, METHODS, CORS);
  }
  const key = serviceKey();
  if (!key) {
    log.error({ action: "check_error_rate", status: "misconfigured", error: "no service key" });
    return json({ error: "SUPABASE_SERVICE_ROLE_KEY is not set on the server" }, 500, CORS);
  }
  if (!(await hasBearer(req, key))) {
    log.warn({ action: "check_error_rate", status: "unauthorized" });
    return json(
      { error: "unauthorized: send Authorization: Bearer <service role key>" },
      401,
      CORS,
      { "WWW-Authenticate": 'Bearer realm="check-error-rate"' },
    );
  }

  let threshold: number;
  try {
    threshold = await requestedThreshold(req);
  } catch (err) {
    if (err instanceof BadRequest) return json({ error: err.message }, err.status, CORS);
    throw err;
  }

  try {
    const sql = db();
    const query = sql<{ result: { errorCount: number; threshold: number } }[]>`
      select monitoring.check_error_rate(${threshold}::integer) as result`;
    const rows = await withTimeout(query, STATEMENT_TIMEOUT_MS + 500, () => query.cancel());
    const result = rows[0]?.result;
    const body = { errorCount: Number(result?.errorCount), threshold: Number(result?.threshold) };
    if (!Number.isFinite(body.errorCount) || !Number.isFinite(body.threshold)) {
      throw new Error("monitoring.check_error_rate() returned an unexpected document");
    }
    if (body.errorCount > body.threshold) {
      log.warn({ action: "check_error_rate", status: "threshold_exceeded", ...body });
    } else {
      log.info({ action: "check_error_rate", status: "ok", ...body });
    }
    return json(body, 200, CORS);
  } catch (err) {
    const error = describeError(err);
    if ((err as { code?: unknown }).code === "22023") {
      return json({ error: `threshold rejected by the database: ${error}` }, 400, CORS);
    }
    if (isUnavailable(err)) {
      log.error({ action: "check_error_rate", status: "database_unreachable", error });
      return json({ error: `database unreachable: ${error}` }, 503, CORS);
    }
    log.error({ action: "check_error_rate", status: "error", error });
    return json({ error: "check_error_rate failed; see the function's logs" }, 500, CORS);
  }
}

/** The function: POST/GET to check, OPTIONS for CORS preflight (no key needed for that). */
export const handler = withMonitoring(
  FUNCTION_NAME,
  {
    cors: CORS,
    recordTo: "database",
    action: "check_error_rate",
    internalError: { error: "internal error; see the function's logs" },
  },
  respond,
);

// Serve when run as the entry point: `deno run` (import.meta.main) or Supabase's Edge Runtime,
// which defines EdgeRuntime. Imported by tests and the dev router, it only exports the handler.
if (import.meta.main || "EdgeRuntime" in globalThis) Deno.serve(handler);
