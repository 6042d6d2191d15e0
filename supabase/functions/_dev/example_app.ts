/**
 * An app's own Edge Function monitored with withMonitoring, as an app installs it (three lines:
 * copy _shared/, import, wrap), reporting through the ingest Edge Function
 * (MONITORING_INGEST_URL and MONITORING_INGEST_KEY; no database connection). The tests and
 * `make demo` run it; it is not deployed.
 *
 *   PORT=8000 MONITORING_INGEST_URL=http://127.0.0.1:54321/functions/v1/ingest \
 *   MONITORING_INGEST_KEY=... deno run --allow-net --allow-env _dev/example_app.ts
 *
 * Paths: /ok (200), /fail (502), /throw (a thrown error: 500), /slow?ms=N (200 after N ms).
 */

import { withMonitoring } from "../_shared/invocations.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function handler(req: Request): Promise<Response> {
  const url = new URL(req.url);
  switch (url.pathname.replace(/^.*\//, "/")) {
    case "/fail":
      return new Response("provider down", { status: 502 });
    case "/throw":
      throw new Error("boom: the handler threw");
    case "/slow":
      await sleep(Math.min(Number(url.searchParams.get("ms") ?? 100) || 0, 30_000));
      return new Response("slow");
    default:
      return new Response("ok");
  }
}

export const serve = withMonitoring("send-notification", handler);

if (import.meta.main) {
  const port = Number(Deno.env.get("PORT") ?? "8000");
  Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, serve);
}
