// Test: the dashboard's data client: errors said plainly, inputs checked before sending.
import { describe, expect, it } from "vitest";
import { chartData } from "../src/chartData";
import {
  checkOptions,
  checkSilence,
  fetchDashboard,
  type FunctionsCaller,
  isStale,
  matchersFor,
  MonitoringProblem,
  toProblem,
} from "../src/monitoringClient";

function httpError(status: number, body: unknown): Error {
  const err = new Error("Edge Function returned a non-2xx status code") as Error & {
    context: Response;
  };
  err.name = "FunctionsHttpError";
  err.context = new Response(JSON.stringify(body), { status });
  return err;
}

function fake(result: { data?: unknown; error?: unknown }, calls: unknown[] = []): FunctionsCaller {
  return {
    functions: {
      invoke: (name: string, opts: unknown) => {
        calls.push([name, opts]);
        return Promise.resolve({ data: result.data ?? null, error: result.error ?? null });
      },
    },
  } as unknown as FunctionsCaller;
}

describe("toProblem", () => {
  it("403 is 'not authorised' with the function's reason", async () => {
    const p = await toProblem(httpError(403, { error: "forbidden", reason: "admins only" }));
    expect(p.kind).toBe("forbidden");
    expect(p.message).toBe("Not authorised: admins only");
  });
  it("401 asks to sign in", async () => {
    const p = await toProblem(httpError(401, { error: "unauthorized", reason: "expired" }));
    expect(p.kind).toBe("unauthorized");
  });
  it("503 and a failed fetch are 'unreachable'", async () => {
    expect((await toProblem(httpError(503, { reason: "database unreachable: x" }))).kind).toBe(
      "unreachable",
    );
    const fetchError = Object.assign(new Error("Failed to send"), { name: "FunctionsFetchError" });
    expect((await toProblem(fetchError)).kind).toBe("unreachable");
  });
  it("400 keeps the field", async () => {
    const p = await toProblem(httpError(400, { reason: "limit must be…", field: "limit" }));
    expect([p.kind, p.field]).toEqual(["bad_request", "limit"]);
  });
  it("a body that is not JSON still gives a message", async () => {
    const err = Object.assign(new Error("x"), {
      name: "FunctionsHttpError",
      context: new Response("<html>bad gateway</html>", { status: 502 }),
    });
    const p = await toProblem(err);
    expect(p.kind).toBe("unreachable");
  });
});

describe("inputs", () => {
  it("window and limit are checked before any request", () => {
    expect(checkOptions({})).toEqual({ window: "24h", limit: 50 });
    expect(() => checkOptions({ window: "30d" as "7d" })).toThrow(/window must be 24h or 7d/);
    for (const limit of [0, 201, 1.5, Number.NaN]) {
      expect(() => checkOptions({ limit })).toThrow(MonitoringProblem);
    }
  });
  it("a silence needs matchers, a duration like 2h and a reason", () => {
    const ok = { matchers: { alertname: "x" }, duration: "2h", comment: " why " };
    expect(checkSilence(ok).comment).toBe("why");
    expect(() => checkSilence({ ...ok, matchers: {} })).toThrow(/Choose an alert/);
    expect(() => checkSilence({ ...ok, duration: "2 hours" })).toThrow(/Duration/);
    expect(() => checkSilence({ ...ok, comment: "  " })).toThrow(/Say why/);
  });
  it("matchers are an alert's labels as text", () => {
    expect(matchersFor({ labels: { alertname: "a", n: 3, skip: null } })).toEqual({
      alertname: "a",
      n: "3",
    });
  });
});

describe("fetchDashboard", () => {
  it("asks the function with window and limit and returns the document", async () => {
    const calls: unknown[] = [];
    const doc = await fetchDashboard(fake({ data: { health: { status: "healthy" } } }, calls), {
      window: "7d",
      limit: 10,
    });
    expect(doc.health.status).toBe("healthy");
    expect(calls).toEqual([["monitoring-dashboard?window=7d&limit=10", { method: "GET" }]]);
  });
  it("turns an error into a MonitoringProblem", async () => {
    await expect(fetchDashboard(fake({ error: httpError(403, { reason: "no" }) }))).rejects
      .toMatchObject({ kind: "forbidden" });
  });
});

describe("staleness and chart", () => {
  it("stale after twice the interval", () => {
    expect(isStale(null, 10_000, 1_000)).toBe(false);
    expect(isStale(0, 2_000, 1_000)).toBe(false);
    expect(isStale(0, 2_001, 1_000)).toBe(true);
  });
  it("hours without messages have no rate", () => {
    const [xs, rate, errors, limit] = chartData([
      { hour: "2026-11-30T10:00:00+00:00", total: 0, delivery_rate: 100, errors: 2 },
      { hour: "2026-11-30T11:00:00+00:00", total: 10, delivery_rate: "95.50", errors: 0 },
    ], 90);
    expect(xs).toEqual([
      Date.parse("2026-11-30T10:00:00Z") / 1000,
      Date.parse("2026-11-30T11:00:00Z") / 1000,
    ]);
    expect(rate).toEqual([null, 95.5]);
    expect(errors).toEqual([2, 0]);
    expect(limit).toEqual([90, 90]);
  });
});
