/**
 * monitoring-dashboard: the one JSON document the ProductionMonitoring component reads, and the
 * silences admins make or expire from it. `monitoring` stays private: this function checks the
 * caller and then calls monitoring.dashboard() / create_silence_as() / expire_silence_as() over
 * SUPABASE_DB_URL.
 *
 * Every request but OPTIONS needs `Authorization: Bearer <the signed-in user's access token>`:
 * a valid JWT (401 otherwise) of an admin (app_metadata.role = 'admin' by default; 403
 * otherwise; see _shared/auth.ts for the keys and MONITORING_ADMIN_CLAIM / _VALUE).
 *
 *   GET  ?window=24h|7d&limit=1..200                       -> 200 the document
 *   POST {"action": "silence", "matchers": {"alertname": "low_delivery_rate"},
 *         "duration": "2h", "comment": "carrier maintenance"} -> 201 the silence
 *   POST {"action": "expire", "id": 12}                    -> 200 the silence
 *
 * Errors are JSON {"error": code, "reason": text, "field"?: name}: 400 bad input (naming the
 * field), 401, 403, 404 (no such silence), 405, 413, 503 database unreachable. Silences record
 * the admin as "email (user id)" in created_by / expired_by. Each call is recorded in
 * monitoring.function_invocations.
 */

import { db, isUnavailable, STATEMENT_TIMEOUT_MS, withTimeout } from "../_shared/db.ts";
import { AuthError, requireAdmin } from "../_shared/auth.ts";
import { bearerToken, corsHeaders, json, methodNotAllowed } from "../_shared/http.ts";
import { withMonitoring } from "../_shared/invocations.ts";
import { describeError, logger } from "../_shared/log.ts";

export const FUNCTION_NAME = "monitoring-dashboard";
export const WINDOWS = ["24h", "7d"] as const;
export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;
export const MAX_BODY_BYTES = 16 * 1024;
/** Time the database gets for the document (it takes milliseconds; this bounds a bad day). */
export const BUDGET_MS = STATEMENT_TIMEOUT_MS + 500;

const METHODS = ["GET", "POST"] as const;
const CORS = corsHeaders(METHODS);
const log = logger(FUNCTION_NAME);

/** A request refused before the database is asked: status, reason and the field at fault. */
export class BadRequest extends Error {
  constructor(message: string, readonly field?: string, readonly status = 400) {
    super(message);
    this.name = "BadRequest";
  }
}

function shown(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : String(JSON.stringify(value));
  return text.length > 40 ? text.slice(0, 39) + "…" : text;
}

/** window and limit from the query string, validated. */
export function readQuery(url: URL): { window: string; limit: number } {
  for (const name of url.searchParams.keys()) {
    if (name !== "window" && name !== "limit") {
      throw new BadRequest(`unknown parameter ${shown(name)}; use window and limit`, name);
    }
  }
  const windows = url.searchParams.getAll("window");
  const limits = url.searchParams.getAll("limit");
  if (windows.length > 1) throw new BadRequest("window given more than once", "window");
  if (limits.length > 1) throw new BadRequest("limit given more than once", "limit");
  const window = windows[0] ?? "24h";
  if (!(WINDOWS as readonly string[]).includes(window)) {
    throw new BadRequest(`window must be 24h or 7d (got ${shown(window)})`, "window");
  }
  let limit = DEFAULT_LIMIT;
  if (limits.length === 1) {
    const raw = limits[0].trim();
    if (!/^[0-9]{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_LIMIT) {
      throw new BadRequest(
        `limit must be an integer from 1 to ${MAX_LIMIT} (got ${shown(limits[0])})`,
        "limit",
      );
    }
    limit = Number(raw);
  }
  return { window, limit };
}

/** A POST action, validated in shape (the database validates the values again). */
export type Action =
  | { action: "silence"; matchers: Record<string, string>; duration: string; comment: string }
  | { action: "expire"; id: number };

export function parseAction(body: unknown): Action {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new BadRequest('body must be a JSON object such as {"action": "expire", "id": 3}');
  }
  const b = body as Record<string, unknown>;
  if (b.action === "expire") {
    if (typeof b.id !== "number" || !Number.isSafeInteger(b.id) || b.id < 1) {
      throw new BadRequest(`id must be a positive integer (got ${shown(b.id)})`, "id");
    }
    return { action: "expire", id: b.id };
  }
  if (b.action !== "silence") {
    throw new BadRequest(`action must be "silence" or "expire" (got ${shown(b.action)})`, "action");
  }
  const m = b.matchers;
  if (m === null || typeof m !== "object" || Array.isArray(m)) {
    throw new BadRequest(
      'matchers must be an object of labels such as {"alertname": "low_delivery_rate"}',
      "matchers",
    );
  }
  const entries = Object.entries(m as Record<string, unknown>);
  if (entries.length < 1 || entries.length > 20) {
    throw new BadRequest("matchers must have 1 to 20 labels", "matchers");
  }
  for (const [name, value] of entries) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,99}$/.test(name)) {
      throw new BadRequest(`matcher name ${shown(name)} is not a label name`, "matchers");
    }
    if (typeof value !== "string" || value.length < 1 || value.length > 200) {
      throw new BadRequest(
        `matcher ${name} must be a text of 1 to 200 characters (got ${shown(value)})`,
        "matchers",
      );
    }
  }
  if (typeof b.duration !== "string" || !/^[1-9][0-9]{0,5}[mhd]$/.test(b.duration)) {
    throw new BadRequest(
      `duration must be a number and a unit m, h or d, such as "2h" (got ${shown(b.duration)})`,
      "duration",
    );
  }
  if (typeof b.comment !== "string" || b.comment.trim() === "" || b.comment.length > 500) {
    throw new BadRequest("comment must say why, in 1 to 500 characters", "comment");
  }
  return {
    action: "silence",
    matchers: Object.fromEntries(entries) as Record<string, string>,
    duration: b.duration,
    comment: b.comment,
  };
}

async function readJson(req: Request): Promise<unknown> {
  const declared = Number(req.headers.get("Content-Length") ?? "0");
  if (declared > MAX_BODY_BYTES) {
    throw new BadRequest(`body larger than ${MAX_BODY_BYTES} bytes`, undefined, 413);
  }
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) {
    throw new BadRequest(`body larger than ${MAX_BODY_BYTES} bytes`, undefined, 413);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest('body must be JSON such as {"action": "expire", "id": 3}');
  }
}

// The database's validation errors name the argument ("dashboard: p_window must…")
const FIELD_IN_MESSAGE = /^\w+: p_(\w+)/;

function fromDatabase(err: unknown): Response | null {
  const code = (err as { code?: unknown }).code;
  const message = describeError(err, 300);
  if (code === "22023" || code === "23514") {
    const field = FIELD_IN_MESSAGE.exec((err as Error).message ?? "")?.[1];
    const hint = (err as { hint?: unknown }).hint;
    return json(
      {
        error: "bad_request",
        reason: message,
        ...(field ? { field } : {}),
        ...(typeof hint === "string" ? { hint } : {}),
      },
      400,
      CORS,
    );
  }
  if (code === "P0002" || code === "02000") {
    return json({ error: "not_found", reason: message }, 404, CORS);
  }
  return null;
}

async function query<T>(run: (sql: ReturnType<typeof db>) => Promise<T> & { cancel(): void }) {
  const sql = db();
  const q = run(sql);
  return await withTimeout(q, BUDGET_MS, () => q.cancel());
}

async function respond(req: Request): Promise<Response> {
  if (!(METHODS as readonly string[]).includes(req.method)) {
    return methodNotAllowed(req.method, METHODS, CORS);
  }
  let actor: string;
  try {
    actor = (await requireAdmin(bearerToken(req))).actor;
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    if (err.status === 500) {
      log.error({ action: "authorize", status: "misconfigured", error: err.reason });
      return json({ error: "misconfigured", reason: err.reason }, 500, CORS);
    }
    log.warn({ action: "authorize", status: err.status === 401 ? "unauthorized" : "forbidden" });
    return json(
      { error: err.status === 401 ? "unauthorized" : "forbidden", reason: err.reason },
      err.status,
      CORS,
      err.status === 401 ? { "WWW-Authenticate": `Bearer realm="${FUNCTION_NAME}"` } : {},
    );
  }

  try {
    if (req.method === "GET") {
      const { window, limit } = readQuery(new URL(req.url));
      const rows = await query((sql) =>
        sql<{ doc: Record<string, unknown> }[]>`
          select monitoring.dashboard(${window}::text, ${limit}::integer) as doc`
      );
      return json(rows[0]?.doc ?? {}, 200, CORS);
    }
    const action = parseAction(await readJson(req));
    if (action.action === "silence") {
      const rows = await query((sql) =>
        sql<{ silence: Record<string, unknown> }[]>`
          select monitoring.create_silence_as(
            ${actor}::text, ${JSON.stringify(action.matchers)}::text::jsonb,
            ${action.duration}::text, ${action.comment}::text) as silence`
      );
      log.info({ action: "silence", status: "created", id: rows[0]?.silence?.id, actor });
      return json(rows[0]?.silence ?? {}, 201, CORS);
    }
    const rows = await query((sql) =>
      sql<{ silence: Record<string, unknown> }[]>`
        select monitoring.expire_silence_as(${actor}::text, ${action.id}::bigint) as silence`
    );
    log.info({ action: "expire_silence", status: "expired", id: action.id, actor });
    return json(rows[0]?.silence ?? {}, 200, CORS);
  } catch (err) {
    if (err instanceof BadRequest) {
      return json(
        { error: "bad_request", reason: err.message, ...(err.field ? { field: err.field } : {}) },
        err.status,
        CORS,
      );
    }
    const answered = fromDatabase(err);
    if (answered) return answered;
    const error = describeError(err);
    if (isUnavailable(err)) {
      log.error({ action: "dashboard", status: "database_unreachable", error });
      return json(
        { error: "database_unreachable", reason: `database unreachable: ${error}` },
        503,
        CORS,
      );
    }
    log.error({ action: "dashboard", status: "error", error });
    return json(
      { error: "internal", reason: "the dashboard failed; see the function's logs" },
      500,
      CORS,
    );
  }
}

/** The function: GET the document, POST a silence action, OPTIONS for CORS preflight. */
export const handler = withMonitoring(
  FUNCTION_NAME,
  {
    cors: CORS,
    recordTo: "database",
    action: "dashboard",
    internalError: { error: "internal", reason: "internal error; see the function's logs" },
  },
  respond,
);

// Serve when run as the entry point: `deno run` (import.meta.main) or Supabase's Edge Runtime,
// which defines EdgeRuntime. Imported by tests and the dev router, it only exports the handler.
if (import.meta.main || "EdgeRuntime" in globalThis) Deno.serve(handler);
