// Test: the health function against a real database (SUPABASE_DB_URL).
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
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
import { clearCache, handler, HEALTH_BUDGET_MS, publicBody } from "../health/index.ts";
import { verifyToken } from "../_shared/auth.ts";

const DB_URL = requireDbUrl();
const SPEC_KEYS = ["status", "timestamp", "services", "environment"];
const JWT_SECRET = "test-jwt-secret-" + crypto.randomUUID();

function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
}

/** A Supabase-Auth-like HS256 JWT with the given claims (exp one hour ahead unless given). */
async function jwt(claims: Record<string, unknown>, secret = JWT_SECRET): Promise<string> {
  const enc = new TextEncoder();
  const head = b64url(enc.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const body = b64url(
    enc.encode(
      JSON.stringify({ sub: "user-1", exp: Math.floor(Date.now() / 1000) + 3600, ...claims }),
    ),
  );
  const key = await crypto.subtle.importKey(
    "raw",
    enc.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(`${head}.${body}`)));
  return `${head}.${body}.${b64url(sig)}`;
}

const adminJwt = () => jwt({ role: "authenticated", app_metadata: { role: "admin" } });

/** GET health as an admin (the full document), or anonymously with `anonymous`. */
async function get(
  init: RequestInit = {},
  anonymous = false,
): Promise<{ res: Response; body: Json }> {
  const headers = new Headers(init.headers);
  if (!anonymous && !headers.has("Authorization")) {
    headers.set("Authorization", `Bearer ${await adminJwt()}`);
  }
  // the project's JWT secret only while health runs: other test files check what happens without one
  const res = await withEnv({ JWT_SECRET }, () => handler(request("health", { ...init, headers })));
  const text = await res.text();
  return { res, body: text ? JSON.parse(text) : null };
}

dbTest(
  "anonymous callers get only the spec's document: no version, size, rule or setting",
  async () => {
    clearCache();
    const { res, body } = await get({}, true);
    const full = await get();
    assertEquals(res.status, full.res.status);
    assertEquals(Object.keys(body), SPEC_KEYS);
    assertEquals(Object.keys(body.services), ["functions", "whatsapp"]);
    assertEquals(Object.keys(body.services.functions), ["status"]);
    assertEquals(Object.keys(body.services.whatsapp), [
      "status",
      "connectionState",
      "lastConnected",
    ]);
    assertEquals(Object.keys(body.environment), ["configured"]);
    assertEquals(body.status, full.body.status);
    const text = JSON.stringify(body);
    assert(
      !/PostgreSQL|Debian|\b1[5-9]\.\d+|version|size|maxConnections|watermark|startedAt/i.test(
        text,
      ),
      text,
    );
    assert(
      "version" in full.body.database && "sizeBytes" in full.body.database,
      "the full one has them",
    );
    assertEquals(publicBody(full.body).services, body.services);
  },
);

dbTest("the anonymous answer is cached for HEALTH_CACHE_SECONDS; an admin's is fresh", async () => {
  await withEnv({ HEALTH_CACHE_SECONDS: "30" }, async () => {
    clearCache();
    const first = await get({}, true);
    await new Promise((r) => setTimeout(r, 1100)); // timestamps are to the second
    const second = await get({}, true);
    assertEquals(second.body.timestamp, first.body.timestamp, "served from the cache");
    const admin = await get();
    assert(admin.body.timestamp > first.body.timestamp, "an admin gets a fresh check");
    clearCache();
  });
});

dbTest(
  "the service role key, or an admin JWT, gets the full document; other tokens do not",
  async () => {
    clearCache();
    const key = "service-key-" + crypto.randomUUID();
    await withEnv(
      { SUPABASE_SERVICE_ROLE_KEY: key, MONITORING_ADMIN_VALUE: undefined },
      async () => {
        const full = async (token: string) =>
          "database" in (await get({ headers: { Authorization: `Bearer ${token}` } })).body;
        assert(await full(key), "service role key");
        assert(await full(await adminJwt()), "admin JWT");
        assert(!(await full(key + "x")), "another key");
        assert(!(await full(await jwt({ app_metadata: { role: "viewer" } }))), "not an admin");
        assert(
          !(await full(await jwt({ role: "admin" }))),
          "role outside app_metadata (user-editable claims)",
        );
        assert(
          !(await full(await jwt({ app_metadata: { role: "admin" } }, "another-secret"))),
          "bad signature",
        );
        assert(
          !(await full(
            await jwt({ app_metadata: { role: "admin" }, exp: Math.floor(Date.now() / 1000) - 1 }),
          )),
          "expired",
        );
        await withEnv({ MONITORING_ADMIN_VALUE: "ops" }, async () => {
          assert(await full(await jwt({ app_metadata: { role: "ops" } })), "configured admin role");
          assert(!(await full(await adminJwt())), "admin is no longer the admin role");
        });
      },
    );
  },
);

Deno.test("verifyToken refuses alg none and malformed tokens", async () => {
  const none = `${b64url(new TextEncoder().encode('{"alg":"none"}'))}.${
    b64url(new TextEncoder().encode('{"sub":"u","exp":9999999999}'))
  }.`;
  for (const bad of [none, "a.b", "!!.??.**"]) {
    await withEnv({ JWT_SECRET }, () => assertRejects(() => verifyToken(bad)));
  }
  const token = await adminJwt();
  assert((await withEnv({ JWT_SECRET }, () => verifyToken(token))).sub === "user-1");
});

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
