/**
 * The spec's /api/health as a Pages Function (functions/api/health.ts):
 *
 *   export { onRequest } from "../_lib/health.ts";
 *
 * It asks the health Edge Function (SUPABASE_URL/functions/v1/health, which runs the database's
 * monitoring.health()) and adds the Pages side: the functions answering (this one runs) and the
 * spec's `environment` block for the Pages project's own settings. Same split as the Edge
 * Function:
 * - the caller's Authorization header is passed on; with the service role key or an admin's JWT
 *   the Edge Function answers the full document, and so does this one (plus
 *   services.functions.pages, environment = the Pages settings, edgeEnvironment = the Edge
 *   Function's);
 * - anyone else gets the spec's shape only: status, timestamp, services.functions.status,
 *   services.whatsapp {status, connectionState, lastConnected} and environment {configured}.
 * 200 when healthy or degraded, 503 when unhealthy or when the Edge Function cannot be reached
 * within HEALTH_TIMEOUT_MS (default 2500 ms).
 */

import type { PagesContext } from "./monitoring.ts";

/** The spec's environment check for the Pages project (booleans only, never values). */
export interface Environment {
  hasSupabaseUrl: boolean;
  hasSupabaseKey: boolean;
  hasWhatsAppKey: boolean;
  hasWhatsAppSession: boolean;
}

const DEFAULT_TIMEOUT_MS = 2500;

function present(env: Record<string, unknown>, name: string): boolean {
  const v = env[name];
  return typeof v === "string" && v.trim() !== "";
}

/** Which of the settings the app needs are present in the Pages project. */
export function environment(env: Record<string, unknown>): Environment {
  return {
    hasSupabaseUrl: present(env, "SUPABASE_URL"),
    hasSupabaseKey: present(env, "SUPABASE_ANON_KEY") || present(env, "SUPABASE_SERVICE_ROLE_KEY"),
    hasWhatsAppKey: present(env, "WHATSAPP_API_KEY"),
    hasWhatsAppSession: present(env, "WHATSAPP_SESSION"),
  };
}

function isoNow(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

type Doc = Record<string, unknown>;

function obj(v: unknown): Doc {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Doc : {};
}

function pick(value: unknown, keys: string[]): Doc {
  const src = obj(value);
  return Object.fromEntries(keys.map((k) => [k, k in src ? src[k] : null]));
}

function answer(body: Doc): Response {
  return new Response(JSON.stringify(body), {
    status: body.status === "unhealthy" ? 503 : 200,
    headers: {
      "Content-Type": "application/json",
      "Cache-Control": "no-store",
      "Access-Control-Allow-Origin": "*",
    },
  });
}

/** Ask the health Edge Function: its document, or why it could not be had. */
async function edgeHealth(
  request: Request,
  env: Record<string, unknown>,
): Promise<{ doc: Doc | null; error: string | null }> {
  const base = typeof env.SUPABASE_URL === "string"
    ? env.SUPABASE_URL.trim().replace(/\/+$/, "")
    : "";
  if (!base) return { doc: null, error: "SUPABASE_URL is not set in the Pages project" };
  const headers: Record<string, string> = { Accept: "application/json" };
  const auth = request.headers.get("Authorization");
  if (auth) headers.Authorization = auth;
  if (present(env, "SUPABASE_ANON_KEY")) headers.apikey = String(env.SUPABASE_ANON_KEY).trim();
  const raw = Number(env.HEALTH_TIMEOUT_MS ?? DEFAULT_TIMEOUT_MS);
  const timeout = Number.isFinite(raw) && raw > 0 ? Math.min(raw, 10_000) : DEFAULT_TIMEOUT_MS;
  try {
    const res = await fetch(`${base}/functions/v1/health`, {
      headers,
      signal: AbortSignal.timeout(timeout),
    });
    const text = await res.text();
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return { doc: null, error: `the health Edge Function answered ${res.status} without JSON` };
    }
    if (typeof obj(doc).status !== "string") {
      return {
        doc: null,
        error: `the health Edge Function answered ${res.status} without a status`,
      };
    }
    return { doc: doc as Doc, error: null };
  } catch (err) {
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return { doc: null, error: `the health Edge Function did not answer: ${why.slice(0, 200)}` };
  }
}

/** The /api/health handler (GET and HEAD; OPTIONS answered for CORS). */
export async function onRequest(context: PagesContext): Promise<Response> {
  const request = context.request;
  if (request.method === "OPTIONS") {
    return new Response(null, {
      status: 204,
      headers: {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": "authorization, apikey, content-type",
      },
    });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response(
      JSON.stringify({ error: `method ${request.method} not allowed; use GET` }),
      {
        status: 405,
        headers: { "Content-Type": "application/json", Allow: "GET, HEAD, OPTIONS" },
      },
    );
  }
  const env = (context.env ?? {}) as Record<string, unknown>;
  const pagesEnv = environment(env);
  const { doc, error } = await edgeHealth(request, env);
  const edge = doc ?? {
    status: "unhealthy",
    timestamp: isoNow(),
    services: {
      functions: { status: "operational" },
      whatsapp: { status: "unknown", connectionState: null, lastConnected: null },
    },
    environment: {},
  };
  const services = obj(edge.services);
  // full document: what the Edge Function gives only to the service key or an admin
  const privileged = doc !== null && "database" in doc;
  if (!privileged) {
    const edgeEnv = obj(edge.environment);
    const edgeConfigured = doc === null ? false : edgeEnv.configured === true;
    return answer({
      status: edge.status,
      timestamp: edge.timestamp,
      services: {
        functions: pick(services.functions, ["status"]),
        whatsapp: pick(services.whatsapp, ["status", "connectionState", "lastConnected"]),
      },
      environment: {
        configured: edgeConfigured && Object.values(pagesEnv).every((v) => v === true),
      },
    });
  }
  const { status, timestamp, environment: edgeEnvironment, ...rest } = edge;
  const reasons = Array.isArray(rest.reasons) ? rest.reasons : [];
  return answer({
    status,
    timestamp,
    ...rest,
    services: {
      ...services,
      functions: { ...obj(services.functions), pages: { status: "operational" } },
    },
    reasons: error ? [...reasons, error] : reasons,
    environment: pagesEnv,
    edgeEnvironment,
  });
}
