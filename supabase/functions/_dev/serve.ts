/**
 * Dev router: serves every function on one port the way Supabase's Edge Runtime does, at
 * /functions/v1/<name> (also /functions/v1/<name>/<anything>), so supabase-js / supabase-py's
 * `functions.invoke("<name>")` against SUPABASE_URL=http://HOST:PORT reaches it.
 *
 *   PORT=54321 SUPABASE_DB_URL=postgresql://… deno run --allow-net --allow-env --allow-read _dev/serve.ts
 *
 * `pydeploy functions serve` runs this with the environment set. Not deployed.
 */

import { handler as checkErrorRate } from "../check-error-rate/index.ts";
import { handler as health } from "../health/index.ts";
import { handler as ingest } from "../ingest/index.ts";
import { handler as monitoringDashboard } from "../monitoring-dashboard/index.ts";
import { corsHeaders, json } from "../_shared/http.ts";
import { logger } from "../_shared/log.ts";

export const FUNCTIONS: Record<string, (req: Request) => Promise<Response>> = {
  "health": health,
  "check-error-rate": checkErrorRate,
  "monitoring-dashboard": monitoringDashboard,
  "ingest": ingest,
};

const PREFIX = "/functions/v1/";
const log = logger("dev-router");

/** Route a request to its function by the first path segment after /functions/v1/. */
export function route(req: Request): Promise<Response> {
  const path = new URL(req.url).pathname;
  const name = path.startsWith(PREFIX) ? path.slice(PREFIX.length).split("/")[0] : "";
  const fn = FUNCTIONS[name];
  if (fn) return fn(req);
  return Promise.resolve(
    json(
      {
        code: "NOT_FOUND",
        message: "Requested function was not found",
        functions: Object.keys(FUNCTIONS).map((n) => PREFIX + n),
      },
      404,
      corsHeaders(["GET", "POST"]),
    ),
  );
}

if (import.meta.main) {
  const hostname = Deno.env.get("HOST") ?? "127.0.0.1";
  const port = Number(Deno.env.get("PORT") ?? "54321");
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be a number from 0 to 65535 (got ${Deno.env.get("PORT")})`);
  }
  Deno.serve({
    hostname,
    port,
    onListen: ({ hostname, port }) => {
      const base = `http://${hostname}:${port}${PREFIX}`;
      log.info({
        action: "listen",
        status: "ready",
        urls: Object.keys(FUNCTIONS).map((n) => base + n),
      });
    },
  }, route);
}
