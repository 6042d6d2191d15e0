// Test: the check-error-rate function against a real database (SUPABASE_DB_URL).
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
import {
  DEFAULT_THRESHOLD,
  handler,
  parseBodyThreshold,
  parseQueryThreshold,
} from "../check-error-rate/index.ts";

requireDbUrl();
const KEY = "test-service-role-key-" + crypto.randomUUID();
const AUTH = { Authorization: `Bearer ${KEY}` };
const NO_ALERT = 1_000_000_000; // a threshold no test count reaches (no alert is raised)

async function call(
  path: string,
  init: RequestInit = {},
): Promise<{ res: Response; body: Json }> {
  const res = await withEnv({ SUPABASE_SERVICE_ROLE_KEY: KEY }, () => handler(request(path, init)));
  const text = await res.text();
  return { res, body: text ? JSON.parse(text) : null };
}

function post(body: unknown, headers: Record<string, string> = AUTH): RequestInit {
  return {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
}

dbTest("401 without a key, with a wrong key, a prefix of it, or another scheme", async () => {
  const cases: Array<Record<string, string>> = [
    {},
    { Authorization: "Bearer wrong" },
    { Authorization: `Bearer ${KEY.slice(0, -1)}` },
    { Authorization: `Bearer ${KEY}x` },
    { Authorization: `Basic ${KEY}` },
    { Authorization: KEY },
    { Authorization: "Bearer " },
  ];
  for (const headers of cases) {
    const { res, body } = await call("check-error-rate", post({ threshold: 1 }, headers));
    assertEquals(res.status, 401, JSON.stringify(headers));
    assert(typeof body.error === "string");
    assertEquals(res.headers.get("Access-Control-Allow-Origin"), "*");
  }
});

dbTest("500 naming the missing setting when no service key is configured", async () => {
  const res = await withEnv(
    { SUPABASE_SERVICE_ROLE_KEY: undefined },
    () => handler(request("check-error-rate", post({}, { Authorization: "Bearer " }))),
  );
  assertEquals(res.status, 500);
  assertMatch((await res.json()).error, /SUPABASE_SERVICE_ROLE_KEY/);
});

dbTest(
  "errorCount equals the error rows of the last hour; threshold from body or query",
  async () => {
    const sql = adminDb();
    const tag = "deno-test-" + crypto.randomUUID();
    try {
      await sql`
      insert into public.whatsapp_error_logs (error_type, error_message, created_at)
      select ${tag}, 'test row', now() - make_interval(mins => m)
      from unnest(array[1, 10, 30, 50, 120, 180]::int[]) as m`;
      // the count reads the minute rollups plus the rows after their watermark: backdated rows
      // count once their minutes are recomputed (the refresh job does that every minute)
      await sql`select monitoring.refresh_rollups(p_full => true)`;
      const [{ n }] = await sql`
      select count(*)::int as n from public.whatsapp_error_logs
      where created_at > now() - interval '1 hour'`;

      const viaBody = await call("check-error-rate", post({ threshold: NO_ALERT }));
      assertEquals(viaBody.res.status, 200);
      assertEquals(viaBody.body, { errorCount: n, threshold: NO_ALERT });
      assertEquals(Object.keys(viaBody.body), ["errorCount", "threshold"]);

      const viaQuery = await call(`check-error-rate?threshold=${NO_ALERT - 1}`, { headers: AUTH });
      assertEquals(viaQuery.body, { errorCount: n, threshold: NO_ALERT - 1 });
      assert(n >= 4, "the 4 rows of the last hour count");
    } finally {
      await sql`delete from public.whatsapp_error_logs where error_type = ${tag}`;
      await sql`select monitoring.refresh_rollups(p_full => true)`;
      await sql.end();
    }
  },
);

dbTest("no threshold given: the spec's 50", async () => {
  const { res, body } = await call("check-error-rate", { method: "POST", headers: AUTH });
  assertEquals(res.status, 200);
  assertEquals(body.threshold, DEFAULT_THRESHOLD);
  const empty = await call("check-error-rate", post({}));
  assertEquals(empty.body.threshold, DEFAULT_THRESHOLD);
});

dbTest("400 on bad thresholds, in the body and in the query", async () => {
  const badBodies: unknown[] = [
    { threshold: -1 },
    { threshold: 1.5 },
    { threshold: "10" },
    { threshold: "abc" },
    { threshold: null },
    { threshold: 1e10 },
    { threshold: true },
    "not json",
    "[1, 2]",
    "42",
  ];
  for (const b of badBodies) {
    const { res, body } = await call("check-error-rate", post(b));
    assertEquals(res.status, 400, JSON.stringify(b));
    assert(typeof body.error === "string" && body.error.length > 0);
  }
  for (const q of ["-1", "abc", "1.5", "1e3", "", "+5", "0x10", "2000000000", "99999999999"]) {
    const { res, body } = await call(
      `check-error-rate?threshold=${encodeURIComponent(q)}`,
      { headers: AUTH },
    );
    assertEquals(res.status, 400, q);
    assertMatch(body.error, /^threshold must be/);
  }
  const twice = await call("check-error-rate?threshold=1&threshold=2", { headers: AUTH });
  assertEquals(twice.res.status, 400);
  const both = await call("check-error-rate?threshold=1", post({ threshold: 1 }));
  assertEquals(both.res.status, 400);
});

dbTest("each call is recorded, with its status", async () => {
  const sql = adminDb();
  try {
    const [{ max }] = await sql`
      select coalesce(max(id), 0)::int as max from monitoring.function_invocations`;
    await call("check-error-rate", post({ threshold: NO_ALERT }));
    await call("check-error-rate", post({ threshold: -1 }));
    await call("check-error-rate", post({}, {}));
    await cleanup();
    const rows = await sql`
      select status_code from monitoring.function_invocations
      where id > ${max} and function_name = 'check-error-rate' order by id`;
    // recorded in the background, so in any order
    assertEquals(rows.map((r) => r.status_code).sort(), [200, 400, 401]);
  } finally {
    await sql.end();
  }
});

Deno.test("OPTIONS preflight needs no key; PUT is 405", async () => {
  const pre = await handler(request("check-error-rate", { method: "OPTIONS" }));
  assertEquals(pre.status, 204);
  assertMatch(pre.headers.get("Access-Control-Allow-Methods") ?? "", /POST/);
  assertMatch(pre.headers.get("Access-Control-Allow-Headers") ?? "", /authorization/);
  await captureLogs(async () => {
    const { res } = await call("check-error-rate", { method: "PUT", headers: AUTH });
    assertEquals(res.status, 405);
  });
  await cleanup();
});

Deno.test("threshold parsers", () => {
  assertEquals(parseQueryThreshold("0"), 0);
  assertEquals(parseQueryThreshold(" 50 "), 50);
  assertEquals(parseQueryThreshold("1000000000"), 1_000_000_000);
  assertEquals(parseBodyThreshold(0), 0);
  assertEquals(parseBodyThreshold(7), 7);
  for (const bad of ["-0", "1000000001", "٣", "1_0"]) {
    let threw = false;
    try {
      parseQueryThreshold(bad);
    } catch {
      threw = true;
    }
    assert(threw, bad);
  }
  for (const bad of [-1, 0.5, NaN, Infinity, 1_000_000_001, "1", null, undefined, {}]) {
    let threw = false;
    try {
      parseBodyThreshold(bad);
    } catch {
      threw = true;
    }
    assert(threw, String(bad));
  }
});
