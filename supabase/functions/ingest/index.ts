/**
 * ingest: where the app's own functions (Cloudflare Pages Functions through cloudflare/monitoring.ts,
 * Supabase Edge Functions through withMonitoring) send their invocation records and structured log
 * lines. Deployed with --no-verify-jwt: it checks its own key.
 *
 *   POST /functions/v1/ingest
 *   Authorization: Bearer <ingest key>           (pydeploy ingest-key rotate; never the service key)
 *   {"batchId": "<8-100 chars, the same on every retry>",
 *    "invocations": [{"function": "/api/send", "status": 200, "durationMs": 12.5,
 *                     "time": "2026-12-01T12:00:00Z", "requestId": "…", "region": "GRU"}],
 *    "logs": [{"timestamp": "…", "level": "ERROR", "service": "whatsapp", "action": "send_message",
 *              "status": "failed", "duration": 1234, "orderId": "123", "phone": "+55…", …}]}
 *
 * One statement per batch: monitoring.ingest(sha256(key), body), which checks the key (current, or
 * the previous one during a rotation's grace), every field, writes everything or nothing and answers
 * the status. Here only what must not reach the database is refused: a missing key (401), a body
 * larger than INGEST_MAX_BODY_BYTES (413, default 1 MiB) and a body that is not JSON (400).
 * Answers: 200 {"batchId", "duplicate", "invocations", "logs"} (duplicate: the batch id was
 * written before, nothing written again); 4xx {"error", "field"} naming the field at fault; 503
 * when the database is unreachable (retry later with the same batch id).
 */

import { db, isUnavailable, STATEMENT_TIMEOUT_MS, withTimeout } from "../_shared/db.ts";
import { bearerToken, corsHeaders, json, methodNotAllowed } from "../_shared/http.ts";
import { withMonitoring } from "../_shared/invocations.ts";
import { describeError, logger } from "../_shared/log.ts";

export const FUNCTION_NAME = "ingest";
/** Largest body read when INGEST_MAX_BODY_BYTES is not set (1 MiB: 1,000 records fit easily). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

const METHODS = ["POST"] as const;
const CORS = corsHeaders(METHODS);
const log = logger(FUNCTION_NAME);

function maxBodyBytes(): number {
  const raw = (Deno.env.get("INGEST_MAX_BODY_BYTES") ?? "").trim();
  const n = raw === "" ? DEFAULT_MAX_BODY_BYTES : Number(raw);
  return Number.isInteger(n) && n >= 1024 && n <= 16 * 1024 * 1024 ? n : DEFAULT_MAX_BODY_BYTES;
}

function refuse(status: number, field: string | null, error: string): Response {
  return json({ error, field }, status, CORS);
}

/** The body as text, or null when it is larger than `max` bytes (read no further than that). */
async function readCapped(req: Request, max: number): Promise<string | null> {
  if (!req.body) return "";
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

interface IngestResult {
  status: number;
  [key: string]: unknown;
}

async function respond(req: Request): Promise<Response> {
  if (!(METHODS as readonly string[]).includes(req.method)) {
    return methodNotAllowed(req.method, METHODS, CORS);
  }
  const key = bearerToken(req);
  if (!key) {
    return refuse(401, null, "no ingest key: send Authorization: Bearer <ingest key>");
  }
  const max = maxBodyBytes();
  if (Number(req.headers.get("Content-Length") ?? "0") > max) {
    return refuse(413, "body", `is larger than ${max} bytes: send smaller batches`);
  }
  const text = await readCapped(req, max);
  if (text === null) {
    return refuse(413, "body", `is larger than ${max} bytes: send smaller batches`);
  }
  try {
    JSON.parse(text);
  } catch {
    return refuse(
      400,
      "body",
      'is not JSON: send {"batchId": "...", "invocations": [...], "logs": [...]}',
    );
  }
  const keyHash = await sha256Hex(key);
  try {
    const sql = db();
    const query = sql<{ result: IngestResult }[]>`
      select monitoring.ingest(${keyHash}, ${text}::text::jsonb) as result`;
    const rows = await withTimeout(query, STATEMENT_TIMEOUT_MS + 500, () => query.cancel());
    const result = rows[0]?.result;
    if (!result || typeof result.status !== "number") {
      throw new Error("monitoring.ingest() returned no status");
    }
    const { status, key: which, ...body } = result;
    if (status >= 400) {
      log.warn({ action: "ingest", status: "refused", httpStatus: status, error: body.error });
    } else if (which === "previous") {
      log.warn({ action: "ingest", status: "previous_key", batchId: body.batchId });
    }
    return json(body, status, CORS);
  } catch (err) {
    const error = describeError(err);
    if (isUnavailable(err)) {
      log.error({ action: "ingest", status: "database_unreachable", error });
      return json(
        { error: `database unreachable: ${error}; retry with the same batchId` },
        503,
        CORS,
      );
    }
    log.error({ action: "ingest", status: "error", error });
    return json({ error: "ingest failed; see the function's logs" }, 500, CORS);
  }
}

/** The function: POST a batch, OPTIONS for CORS preflight. */
export const handler = withMonitoring(
  FUNCTION_NAME,
  {
    cors: CORS,
    recordTo: "database",
    action: "ingest",
    internalError: { error: "internal error; see the function's logs" },
  },
  respond,
);

// Serve when run as the entry point: `deno run` (import.meta.main) or Supabase's Edge Runtime,
// which defines EdgeRuntime. Imported by tests and the dev router, it only exports the handler.
if (import.meta.main || "EdgeRuntime" in globalThis) Deno.serve(handler);
