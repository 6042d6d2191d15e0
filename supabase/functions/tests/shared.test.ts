// Test: the shared helpers (logger, phone masking, constant-time compare, bearer parsing) and the dev router.
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { adminDb, captureLogs, cleanup, requireDbUrl } from "./_helpers.ts";
import { bearerToken, hasBearer, timingSafeEqual } from "../_shared/http.ts";
import { describeError, log, logger, maskPhone } from "../_shared/log.ts";
import { DbTimeoutError, isUnavailable, withTimeout } from "../_shared/db.ts";
import { route } from "../_dev/serve.ts";

requireDbUrl();

Deno.test("log lines carry the spec's fields, a masked phone and the level", async () => {
  const { lines } = await captureLogs(() => {
    logger("whatsapp").info({
      action: "send_message",
      orderId: "123",
      phone: "+5511999999999",
      status: "success",
      duration: 1234.4,
    });
    logger("whatsapp").error({ action: "send_message", status: "failed", error: "boom" });
    log("DEBUG", "whatsapp", { action: "hidden by default" });
    return Promise.resolve();
  });
  assertEquals(lines.length, 2);
  const [info, error] = lines;
  assertEquals(Object.keys(info), [
    "timestamp",
    "level",
    "service",
    "action",
    "orderId",
    "phone",
    "status",
    "duration",
  ]);
  assertEquals(info.level, "INFO");
  assertEquals(info.service, "whatsapp");
  assertEquals(info.phone, "+55*******9999");
  assertEquals(info.duration, 1234);
  assertMatch(String(info.timestamp), /^\d{4}-\d\d-\d\dT/);
  assertEquals(error.level, "ERROR");
  assertEquals(error.error, "boom");
});

Deno.test("LOG_LEVEL=DEBUG shows DEBUG lines; fixed fields cannot be overridden", async () => {
  const before = Deno.env.get("LOG_LEVEL");
  Deno.env.set("LOG_LEVEL", "debug");
  try {
    const { lines } = await captureLogs(() => {
      log("DEBUG", "svc", { action: "detail", level: "INFO", service: "other" });
      return Promise.resolve();
    });
    assertEquals(lines.length, 1);
    assertEquals(lines[0].level, "DEBUG");
    assertEquals(lines[0].service, "svc");
  } finally {
    if (before === undefined) Deno.env.delete("LOG_LEVEL");
    else Deno.env.set("LOG_LEVEL", before);
  }
});

Deno.test("maskPhone agrees with monitoring.mask_phone", async () => {
  const phones = [
    "+5511999999999",
    "+55 11 99999-9999",
    "+1 415 555 0100",
    "+7 912 345 67 89",
    "+351 912 345 678",
    "+44 20 7946 0958",
    "11999999999",
    "1234",
    "+12345",
    "",
    "abc",
  ];
  const sql = adminDb();
  try {
    for (const p of phones) {
      const [{ masked }] = await sql`select monitoring.mask_phone(${p}::text) as masked`;
      assertEquals(maskPhone(p), masked, p);
    }
  } finally {
    await sql.end();
  }
});

Deno.test("timingSafeEqual and the bearer check", async () => {
  assert(await timingSafeEqual("abc", "abc"));
  assert(!(await timingSafeEqual("abc", "abd")));
  assert(!(await timingSafeEqual("abc", "abcd")));
  assert(!(await timingSafeEqual("", "a")));
  const req = (h?: string) =>
    new Request("http://x/", { headers: h === undefined ? {} : { Authorization: h } });
  assertEquals(bearerToken(req("Bearer k1")), "k1");
  assertEquals(bearerToken(req("bearer k1")), "k1");
  assertEquals(bearerToken(req("Bearer")), null);
  assertEquals(bearerToken(req("Basic k1")), null);
  assertEquals(bearerToken(req()), null);
  assert(await hasBearer(req("Bearer k1"), "k1"));
  assert(!(await hasBearer(req("Bearer k2"), "k1")));
  assert(!(await hasBearer(req(), "")), "an empty expected key never matches");
});

Deno.test("describeError: one short line, credentials removed", () => {
  const err = new Error(
    "failed to reach postgresql://postgres:hunter2@db.example:5432/postgres\n    at foo (x.ts:1:2)",
  );
  const text = describeError(err);
  assert(!text.includes("hunter2"));
  assert(!text.includes("\n"));
  assertMatch(text, /postgresql:\/\/\*\*\*@db\.example/);
  assert(describeError(new Error("x".repeat(1000))).length <= 200);
});

Deno.test("withTimeout rejects with a DbTimeoutError that counts as unavailable", async () => {
  let cancelled = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const never = new Promise((resolve) => (timer = setTimeout(resolve, 1000)));
  try {
    await withTimeout(never, 20, () => (cancelled = true));
    throw new Error("expected a timeout");
  } catch (err) {
    assert(err instanceof DbTimeoutError);
    assert(isUnavailable(err));
    assert(cancelled);
  } finally {
    clearTimeout(timer);
  }
  assertEquals(await withTimeout(Promise.resolve(5), 20), 5);
});

Deno.test("the dev router serves /functions/v1/<name> and 404s the rest", async () => {
  const pre = await route(
    new Request("http://x/functions/v1/check-error-rate", { method: "OPTIONS" }),
  );
  assertEquals(pre.status, 204);
  const sub = await route(new Request("http://x/functions/v1/health/sub", { method: "OPTIONS" }));
  assertEquals(sub.status, 204);
  const missing = await route(new Request("http://x/functions/v1/nope"));
  assertEquals(missing.status, 404);
  assertEquals((await missing.json()).code, "NOT_FOUND");
  const root = await route(new Request("http://x/"));
  assertEquals(root.status, 404);
  await root.body?.cancel();
  await cleanup();
});
