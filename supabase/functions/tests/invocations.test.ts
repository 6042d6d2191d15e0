// Test: withMonitoring(name, handler) — the three-line form an app's Edge Function uses — times
// every answer, turns a throw into a 500 and, with MONITORING_INGEST_URL/_KEY set, posts the records
// as one batch in the ingest format (no database); an endpoint that refuses them costs nothing.
import { assert, assertEquals } from "./_assert.ts";
import { adminDb, captureLogs, withEnv } from "./_helpers.ts";
import { droppedRecords, recordingTarget, settle, withMonitoring } from "../_shared/invocations.ts";

Deno.test("withMonitoring posts a batch to the ingest endpoint when one is configured", async () => {
  const received: { auth: string | null; body: Record<string, unknown> }[] = [];
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    async (req) => {
      received.push({ auth: req.headers.get("Authorization"), body: await req.json() });
      return Response.json({ duplicate: false });
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}/functions/v1/ingest`;
  try {
    await withEnv({ MONITORING_INGEST_URL: url, MONITORING_INGEST_KEY: "k-123" }, async () => {
      assertEquals(recordingTarget().kind, "ingest");
      const fn = withMonitoring("app-fn", (req: Request) => {
        if (new URL(req.url).pathname === "/throw") throw new Error("boom");
        return new Response("ok", { status: new URL(req.url).pathname === "/fail" ? 502 : 200 });
      });
      const { lines } = await captureLogs(async () => {
        assertEquals((await fn(new Request("http://x/ok"))).status, 200);
        assertEquals((await fn(new Request("http://x/fail"))).status, 502);
        const thrown = await fn(new Request("http://x/throw"));
        assertEquals(thrown.status, 500);
        assertEquals(await thrown.json(), { error: "internal error" });
        await settle();
      });
      assertEquals(lines.filter((l) => l.level === "ERROR").length, 1);
    });
    assertEquals(received.length, 1);
    assertEquals(received[0].auth, "Bearer k-123");
    const batch = received[0].body as { batchId: string; invocations: Record<string, unknown>[] };
    assert(batch.batchId.length >= 8);
    assertEquals(batch.invocations.map((r) => [r.function, r.status]), [
      ["app-fn", 200],
      ["app-fn", 502],
      ["app-fn", 500],
    ]);
    assert(
      batch.invocations.every((r) =>
        typeof r.time === "string" && typeof r.durationMs === "number"
      ),
    );
  } finally {
    ac.abort();
    await server.finished;
  }
});

Deno.test("withMonitoring drops and counts records the ingest endpoint does not take", async () => {
  const before = droppedRecords();
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => Response.json({ error: "down" }, { status: 503 }),
  );
  try {
    await withEnv({
      MONITORING_INGEST_URL: `http://127.0.0.1:${server.addr.port}/functions/v1/ingest`,
      MONITORING_INGEST_KEY: "k",
    }, async () => {
      const fn = withMonitoring("app-fn", () => new Response("ok"));
      const { lines } = await captureLogs(async () => {
        assertEquals((await fn(new Request("http://x/"))).status, 200);
        assertEquals((await fn(new Request("http://x/"))).status, 200);
        await settle();
      });
      assert(lines.some((l) => l.status === "dropped" && l.records === 2));
    });
    assertEquals(droppedRecords() - before, 2);
  } finally {
    ac.abort();
    await server.finished;
  }
});

Deno.test("recordTo: database keeps our own functions off the ingest endpoint (no self-loop)", async () => {
  let posts = 0;
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    () => {
      posts++;
      return Response.json({});
    },
  );
  const name = `own-fn-${crypto.randomUUID()}`;
  const admin = adminDb();
  try {
    await withEnv({
      MONITORING_INGEST_URL: `http://127.0.0.1:${server.addr.port}/functions/v1/ingest`,
      MONITORING_INGEST_KEY: "k",
    }, async () => {
      const fn = withMonitoring(name, { recordTo: "database" }, () => new Response("ok"));
      assertEquals((await fn(new Request("http://x/"))).status, 200);
      await settle();
    });
    assertEquals(posts, 0);
    const rows = await admin`
      select count(*)::int as n from monitoring.function_invocations where function_name = ${name}`;
    assertEquals(rows[0].n, 1);
  } finally {
    await admin.end();
    ac.abort();
    await server.finished;
  }
});
