/** The few assertions the tests need (jsr:@std/assert is not reachable here). */

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

function canon(v: unknown): string {
  return JSON.stringify(
    v,
    (_, x) =>
      x && typeof x === "object" && !Array.isArray(x)
        ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b)))
        : x,
  );
}

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!Object.is(actual, expected) && canon(actual) !== canon(expected)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}expected ${canon(expected)}, got ${canon(actual)}`,
    );
  }
}

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  if (!re.test(actual)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}${JSON.stringify(actual)} does not match ${re}`,
    );
  }
}

export async function assertRejects(fn: () => Promise<unknown>, msg?: string): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new AssertionError(msg ?? "expected a rejection");
}
