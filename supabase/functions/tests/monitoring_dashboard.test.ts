// Test: the monitoring-dashboard function against a real database (SUPABASE_DB_URL), with tokens
// signed as Supabase Auth signs them (HS256 with the JWT secret; ES256 through a JWKS).
import { exportJWK, generateKeyPair, SignJWT } from "npm:jose@6.2.18";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { adminDb, dbTest, type Json, request, requireDbUrl, withEnv } from "./_helpers.ts";
import { handler } from "../monitoring-dashboard/index.ts";

requireDbUrl();
const SECRET = "test-jwt-secret-with-at-least-32-characters";
const ENV = {
  SUPABASE_JWT_SECRET: SECRET,
  SUPABASE_JWKS: undefined,
  MONITORING_ADMIN_CLAIM: undefined,
  MONITORING_ADMIN_VALUE: undefined,
};

async function token(
  claims: Record<string, unknown>,
  opts: { secret?: string; exp?: string | number } = {},
): Promise<string> {
  return await new SignJWT({ role: "authenticated", aud: "authenticated", ...claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(String(claims.sub ?? "00000000-0000-0000-0000-00000000a001"))
    .setIssuedAt()
    .setExpirationTime(opts.exp ?? "1h")
    .sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

const adminClaims = { email: "ops@example.com", app_metadata: { role: "admin" } };

async function call(
  path: string,
  bearer: string | null,
  init: RequestInit = {},
  env: Record<string, string | undefined> = {},
): Promise<{ res: Response; body: Json }> {
  const headers = new Headers(init.headers);
  if (bearer !== null) headers.set("Authorization", `Bearer ${bearer}`);
  return await withEnv({ ...ENV, ...env }, async () => {
    const res = await handler(request(path, { ...init, headers }));
    const text = await res.text();
    return { res, body: text ? JSON.parse(text) : null };
  });
}

function post(body: unknown): RequestInit {
  return {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
}

dbTest("no token, a forged one and an expired one are 401 with a JSON reason", async () => {
  let r = await call("monitoring-dashboard", null);
  assertEquals(r.res.status, 401);
  assertEquals(r.body.error, "unauthorized");
  assertMatch(r.body.reason, /no token/);
  assertMatch(r.res.headers.get("WWW-Authenticate") ?? "", /^Bearer/);
  r = await call("monitoring-dashboard", await token(adminClaims, { secret: "x".repeat(40) }));
  assertEquals(r.res.status, 401);
  assertMatch(r.body.reason, /signature/);
  r = await call("monitoring-dashboard", await token(adminClaims, { exp: 1000 }));
  assertEquals(r.res.status, 401);
  assertMatch(r.body.reason, /expired/);
  r = await call("monitoring-dashboard", "not-a-jwt");
  assertEquals(r.res.status, 401);
  assertMatch(r.body.reason, /not a valid JWT/);
});

dbTest("a signed-in user who is not an admin is 403 'not authorised'", async () => {
  for (
    const claims of [{}, { app_metadata: { role: "editor" } }, { user_metadata: { role: "admin" } }]
  ) {
    const r = await call("monitoring-dashboard", await token(claims));
    assertEquals(r.res.status, 403, JSON.stringify(claims));
    assertEquals(r.body.error, "forbidden");
    assertMatch(
      r.body.reason,
      /not authorised: admins only \(app_metadata\.role must be "admin"\)/,
    );
  }
});

dbTest("an admin gets the document: health, the views' rows, the chart window", async () => {
  const sql = adminDb();
  try {
    // rows leave the windows as time passes: compare with the view read just before and after
    let r: { res: Response; body: Json } | undefined;
    let view: Json;
    for (let attempt = 0; attempt < 5; attempt++) {
      const before = await sql`select * from monitoring.delivery_stats order by window_name`;
      r = await call("monitoring-dashboard?window=7d&limit=5", await token(adminClaims));
      const after = await sql`select * from monitoring.delivery_stats order by window_name`;
      view = after;
      if (JSON.stringify(before) === JSON.stringify(after)) break;
    }
    assertEquals(r!.res.status, 200);
    assertEquals(r!.res.headers.get("Cache-Control"), "no-store");
    const doc = r!.body;
    assertEquals(doc.window, "7d");
    assertEquals(doc.limit, 5);
    for (
      const key of ["health", "delivery", "hourly", "queue", "latency", "functions", "sessions"]
    ) {
      assert(key in doc, `missing ${key}`);
    }
    for (const row of view) {
      const got = doc.delivery.find((d: Json) => d.window_name === row.window_name);
      for (
        const col of ["total", "sent", "failed", "pending", "delivered", "read", "delivery_rate"]
      ) {
        assertEquals(Number(got[col]), Number(row[col]), `${row.window_name} ${col}`);
      }
    }
    assertEquals(doc.hourly.length, 168);
    assert(doc.recentErrors.length <= 5);
  } finally {
    await sql.end();
  }
});

dbTest("the admin claim and value are configurable", async () => {
  const env = { MONITORING_ADMIN_CLAIM: "app_metadata.roles", MONITORING_ADMIN_VALUE: "ops" };
  let r = await call("monitoring-dashboard", await token(adminClaims), {}, env);
  assertEquals(r.res.status, 403);
  r = await call(
    "monitoring-dashboard",
    await token({ app_metadata: { roles: ["viewer", "ops"] } }),
    {},
    env,
  );
  assertEquals(r.res.status, 200);
  r = await call("monitoring-dashboard", await token(adminClaims), {}, {
    MONITORING_ADMIN_CLAIM: "app metadata",
  });
  assertEquals(r.res.status, 500);
  assertMatch(r.body.reason, /MONITORING_ADMIN_CLAIM/);
});

dbTest("ES256 tokens verify through SUPABASE_JWKS (the new signing keys)", async () => {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const jwt = await new SignJWT({ role: "authenticated", ...adminClaims })
    .setProtectedHeader({ alg: "ES256", kid: "k1" })
    .setSubject("00000000-0000-0000-0000-00000000a002")
    .setExpirationTime("1h")
    .sign(privateKey);
  const env = { SUPABASE_JWKS: JSON.stringify({ keys: [jwk] }), SUPABASE_JWT_SECRET: undefined };
  let r = await call("monitoring-dashboard", jwt, {}, env);
  assertEquals(r.res.status, 200);
  // an HS256 token is refused when the project has no legacy secret
  r = await call("monitoring-dashboard", await token(adminClaims), {}, env);
  assertEquals(r.res.status, 401);
  // no key at all: a clear 500, not a silent pass
  r = await call("monitoring-dashboard", jwt, {}, { SUPABASE_JWT_SECRET: undefined });
  assertEquals(r.res.status, 500);
  assertMatch(r.body.reason, /SUPABASE_JWKS or SUPABASE_JWT_SECRET/);
});

dbTest("bad window and limit are 400 naming the field", async () => {
  const jwt = await token(adminClaims);
  for (
    const [query, field] of [
      ["window=30d", "window"],
      ["window=", "window"],
      ["limit=0", "limit"],
      ["limit=201", "limit"],
      ["limit=1e2", "limit"],
      ["limit=5&limit=6", "limit"],
      ["colour=red", "colour"],
    ]
  ) {
    const r = await call(`monitoring-dashboard?${query}`, jwt);
    assertEquals(r.res.status, 400, query);
    assertEquals(r.body.field, field, query);
    assertEquals(r.body.error, "bad_request");
  }
});

dbTest("silencing records who did it; expiring too; bad input changes nothing", async () => {
  const sql = adminDb();
  try {
    const jwt = await token({ ...adminClaims, sub: "00000000-0000-0000-0000-00000000a003" });
    const [{ n: before }] = await sql`select count(*)::int as n from monitoring.silences`;
    for (
      const [body, field] of [
        [{ action: "silence", matchers: {}, duration: "2h", comment: "x" }, "matchers"],
        [{ action: "silence", matchers: { "a b": "x" }, duration: "2h", comment: "x" }, "matchers"],
        [
          { action: "silence", matchers: { alertname: "x" }, duration: "2w", comment: "x" },
          "duration",
        ],
        [
          { action: "silence", matchers: { alertname: "x" }, duration: "31d", comment: "x" },
          "duration",
        ],
        [
          { action: "silence", matchers: { alertname: "x" }, duration: "1h", comment: " " },
          "comment",
        ],
        [{ action: "mute" }, "action"],
        [{ action: "expire", id: -1 }, "id"],
      ] as const
    ) {
      const r = await call("monitoring-dashboard", jwt, post(body));
      assertEquals(r.res.status, 400, JSON.stringify([body, r.body]));
      assertEquals(r.body.field, field, JSON.stringify(body));
    }
    const [{ n: after }] = await sql`select count(*)::int as n from monitoring.silences`;
    assertEquals(after, before);

    const made = await call(
      "monitoring-dashboard",
      jwt,
      post({
        action: "silence",
        matchers: { alertname: "low_delivery_rate" },
        duration: "2h",
        comment: "carrier maintenance",
      }),
    );
    assertEquals(made.res.status, 201, JSON.stringify(made.body));
    const [row] = await sql`select * from monitoring.silences where id = ${made.body.id}`;
    assertEquals(row.created_by, "ops@example.com (00000000-0000-0000-0000-00000000a003)");
    assertEquals(row.comment, "carrier maintenance");
    assertEquals(Math.round((row.ends_at - row.starts_at) / 60000), 120);

    const gone = await call(
      "monitoring-dashboard",
      jwt,
      post({ action: "expire", id: Number(row.id) }),
    );
    assertEquals(gone.res.status, 200);
    const [done] = await sql`select * from monitoring.silences where id = ${Number(row.id)}`;
    assertEquals(done.expired_by, "ops@example.com (00000000-0000-0000-0000-00000000a003)");
    assert(done.ends_at <= new Date(), "ended");
    const again = await call(
      "monitoring-dashboard",
      jwt,
      post({ action: "expire", id: Number(row.id) }),
    );
    assertEquals(again.res.status, 404);
    await sql`delete from monitoring.silences where id = ${Number(row.id)}`;
  } finally {
    await sql.end();
  }
});

dbTest("a non-admin cannot silence", async () => {
  const r = await call(
    "monitoring-dashboard",
    await token({}),
    post({ action: "silence", matchers: { alertname: "x" }, duration: "1h", comment: "x" }),
  );
  assertEquals(r.res.status, 403);
});
