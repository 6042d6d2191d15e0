// Test: the health function against a real database (SUPABASE_DB_URL).
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import {
  adminDb,
  captureLogs,
  cleanup,
  dbTest,
  type Json,
  request,
  requireDbUrl,
  withEnv,
} from "./_helpers.ts";
import { handler, HEALTH_BUDGET_MS } from "../health/index.ts";

const DB_URL = requireDbUrl();
const SPEC_KEYS = ["status", "timestamp", "services", "environment"];

async function get(init: RequestInit = {}): Promise<{ res: Response; body: Json }> {
  const res = await handler(request("health", init));
  const text = await res.text();
  return { res, body: text ? JSON.parse(text) : null };
}

dbTest("GET answers monitoring.health() plus environment, 503 only when unhealthy", async () => {
  const sql = adminDb();
  try {
    const [{ health }] = await sql`select monitoring.health() as health`;
    const { res, body } = await get();
    for (const key of SPEC_KEYS) assert(key in body, `missing ${key}`);
    assertEquals(body.status, health.status);
    assertEquals(res.status, health.status === "unhealthy" ? 503 : 200);
    assertEquals(Object.keys(body).slice(0, 3), ["status", "timestamp", "services"]);
    assertMatch(body.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    for (const key of ["status", "connectionState", "lastConnected"]) {
      assert(key in body.services.whatsapp, `services.whatsapp.${key}`);
    }
    assert("status" in body.services.functions);
    assert("database" in body && "scheduler" in body);
    assertEquals(res.headers.get("Content-Type"), "application/json");
    assertEquals(res.headers.get("Cache-Control"), "no-store");
    assertEquals(res.headers.get("Access-Control-Allow-Origin"), "*");
  } finally {
    await sql.end();
  }
});

dbTest("environment reports presence only, never values", async () => {
  const secret = "whatsapp-secret-value-123";
  await withEnv({
    SUPABASE_URL: "http://127.0.0.1:1",
    SUPABASE_SERVICE_ROLE_KEY: undefined,
    SUPABASE_ANON_KEY: "anon",
    WHATSAPP_API_KEY: secret,
    WHATSAPP_SESSION: "",
  }, async () => {
    const { res, body } = await get();
    assertEquals(body.environment, {
      hasSupabaseUrl: true,
      hasSupabaseKey: true,
      hasWhatsAppKey: true,
      hasWhatsAppSession: false,
    });
    assert(!JSON.stringify(body).includes(secret));
    assert(res.status === 200 || res.status === 503);
  });
});

dbTest("each call is recorded in monitoring.function_invocations", async () => {
  const sql = adminDb();
  try {
    const [{ max }] =
      await sql`select coalesce(max(id), 0)::int as max from monitoring.function_invocations`;
    const { res } = await get();
    await cleanup(); // waits for the fire-and-forget record
    const rows = await sql`
      select function_name, status_code, duration_ms::float8 as ms
      from monitoring.function_invocations where id > ${max} and function_name = 'health'`;
    assertEquals(rows.length, 1);
    assertEquals(rows[0].status_code, res.status);
    assert(rows[0].ms >= 0);
  } finally {
    await sql.end();
  }
});

Deno.test("OPTIONS is a CORS preflight; other methods get 405", async () => {
  const pre = await handler(request("health", { method: "OPTIONS" }));
  assertEquals(pre.status, 204);
  assertEquals(pre.headers.get("Access-Control-Allow-Origin"), "*");
  assertMatch(pre.headers.get("Access-Control-Allow-Methods") ?? "", /\bGET\b/);
  assertMatch(pre.headers.get("Access-Control-Allow-Headers") ?? "", /authorization/);
  await captureLogs(async () => {
    const res = await handler(request("health", { method: "DELETE" }));
    assertEquals(res.status, 405);
    assertMatch(res.headers.get("Allow") ?? "", /GET/);
    await res.body?.cancel();
  });
  await cleanup();
});

Deno.test("an unreachable database gives 503 with a short JSON reason, fast", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  await withEnv({
    SUPABASE_DB_URL: `postgresql://postgres:pw-not-shown@127.0.0.1:${port}/postgres`,
  }, async () => {
    const { result, lines } = await captureLogs(async () => {
      const t0 = performance.now();
      const out = await get();
      const ms = performance.now() - t0;
      await cleanup(); // the invocation record fails too, quietly (a WARN line)
      return { ...out, ms };
    });
    const { res, body, ms } = result;
    assertEquals(res.status, 503);
    assert(ms < 2000, `took ${ms} ms`);
    assertEquals(body.status, "unhealthy");
    assertEquals(body.database.status, "unreachable");
    assertEquals(body.services.functions.status, "operational");
    assert(typeof body.database.error === "string" && body.database.error.length < 300);
    assert(!/\n|\bat \S+:\d+/.test(body.database.error), "no stack trace");
    assert(!JSON.stringify(body).includes("pw-not-shown"));
    assert("environment" in body);
    assert(lines.some((l) => l.level === "ERROR" && l.service === "health"));
  });
  assertEquals(DB_URL, Deno.env.get("SUPABASE_DB_URL"));
});

Deno.test("a database that never answers still gets an answer within the budget", async () => {
  // accepts TCP connections and never speaks: the handshake hangs
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch {
      // closed
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    await withEnv(
      { SUPABASE_DB_URL: `postgresql://postgres:pw@127.0.0.1:${port}/postgres` },
      async () => {
        const { result } = await captureLogs(async () => {
          const t0 = performance.now();
          const out = await get();
          return { ...out, ms: performance.now() - t0 };
        });
        assertEquals(result.res.status, 503);
        assert(result.ms < 2000, `took ${result.ms} ms`);
        assert(result.ms >= HEALTH_BUDGET_MS - 50, `answered before the budget: ${result.ms} ms`);
        assertEquals(result.body.database.status, "unreachable");
        await captureLogs(cleanup);
      },
    );
  } finally {
    listener.close();
    for (const c of held) {
      try {
        c.close();
      } catch {
        // already closed by the client
      }
    }
    await accepting;
  }
});

Deno.test("a database without the monitoring schema gives 503 saying it answered with an error", async () => {
  const url = new URL(DB_URL);
  url.pathname = "/template1"; // exists everywhere, never migrated
  await withEnv({ SUPABASE_DB_URL: url.toString() }, async () => {
    const { result } = await captureLogs(async () => {
      const out = await get();
      await cleanup();
      return out;
    });
    assertEquals(result.res.status, 503);
    assertEquals(result.body.status, "unhealthy");
    assertEquals(result.body.database.status, "error");
    assertMatch(result.body.database.error, /monitoring/);
    assertEquals(result.body.reasons, [`database error: ${result.body.database.error}`]);
  });
});
