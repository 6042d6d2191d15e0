// Serve the test Pages app (pages_router.ts) in workerd through Miniflare on 127.0.0.1:PORT.
//   node cloudflare/test/serve.mjs PORT   (bindings from the environment: MONITORING_INGEST_URL,
//   MONITORING_INGEST_KEY, SUPABASE_URL, SUPABASE_ANON_KEY, WHATSAPP_API_KEY, WHATSAPP_SESSION, LOG_LEVEL)
// Prints "READY <url>" once it answers; stops on SIGTERM or SIGINT. Fully offline.
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const port = Number(process.argv[2] ?? 8788);
const out = await build({
  entryPoints: [here + "pages_router.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "neutral",
  write: false,
  logLevel: "error",
});
const bindings = {};
for (
  const name of [
    "MONITORING_INGEST_URL",
    "MONITORING_INGEST_KEY",
    "SUPABASE_URL",
    "SUPABASE_ANON_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "WHATSAPP_API_KEY",
    "WHATSAPP_SESSION",
    "LOG_LEVEL",
    "HEALTH_TIMEOUT_MS",
    "MONITORING_MAX_BUFFER",
  ]
) {
  if (process.env[name] !== undefined) bindings[name] = process.env[name];
}
const mf = new Miniflare({
  modules: true,
  script: out.outputFiles[0].text,
  compatibilityDate: "2024-09-23",
  bindings,
  host: "127.0.0.1",
  port,
  // the request.cf a Cloudflare data centre adds (Miniflare would otherwise download it)
  cf: { colo: "GRU", country: "BR" },
});
const url = await mf.ready;
console.log(`READY ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
