/**
 * The database client: postgres.js over SUPABASE_DB_URL (a default secret of hosted Edge
 * Functions), a small pool and short timeouts so that a slow or unreachable database makes the
 * functions answer quickly with a clear status instead of hanging.
 */

import postgres from "npm:postgres@3.4.9";

export type Sql = postgres.Sql;

/** Server-side limit for one statement (health must answer within 2 s). */
export const STATEMENT_TIMEOUT_MS = 1500;
/** Seconds to wait for a TCP connection and the Postgres handshake. */
export const CONNECT_TIMEOUT_S = 2;
/** Connections per function instance: each request runs one or two short statements. */
export const POOL_MAX = 2;

/** SUPABASE_DB_URL is missing: the function is not configured. */
export class DbConfigError extends Error {
  override name = "DbConfigError";
}

/** The database did not answer in time (see withTimeout). */
export class DbTimeoutError extends Error {
  override name = "DbTimeoutError";
  code = "TIMEOUT";
}

let current: { url: string; sql: Sql } | undefined;

/**
 * The shared client for SUPABASE_DB_URL. Connections open lazily on the first query; a changed
 * SUPABASE_DB_URL (tests) gets a new client and the old one is closed.
 */
export function db(): Sql {
  const url = Deno.env.get("SUPABASE_DB_URL")?.trim();
  if (!url) {
    throw new DbConfigError(
      "SUPABASE_DB_URL is not set (hosted Edge Functions get it by default; locally pass it)",
    );
  }
  if (current?.url === url) return current.sql;
  if (current) void current.sql.end({ timeout: 1 }).catch(() => {});
  const sql = postgres(url, {
    max: POOL_MAX,
    connect_timeout: CONNECT_TIMEOUT_S,
    idle_timeout: 20,
    max_lifetime: 60 * 10,
    // works behind Supabase's transaction-mode pooler (no named prepared statements)
    prepare: false,
    // array types are not needed here; skipping them saves a round trip per connection
    fetch_types: false,
    connection: {
      application_name: "edge-functions",
      statement_timeout: STATEMENT_TIMEOUT_MS,
    },
    onnotice: () => {},
  });
  current = { url, sql };
  return sql;
}

/** Close the pool (tests, shutdown). */
export async function closeDb(): Promise<void> {
  const c = current;
  current = undefined;
  if (c) await c.sql.end({ timeout: 1 });
}

/**
 * `work` or a DbTimeoutError after `ms`, whichever comes first. `onTimeout` runs when the timer
 * wins (e.g. to cancel the query); the statement_timeout stops it on the server in any case.
 */
export function withTimeout<T>(
  work: Promise<T>,
  ms: number,
  onTimeout?: () => void,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        onTimeout?.();
      } catch {
        // cancelling is best effort
      }
      reject(new DbTimeoutError(`the database did not answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

// Errors meaning "the database cannot be used right now" rather than "this statement is wrong"
const UNAVAILABLE_CODES = new Set([
  "TIMEOUT",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "57014", // query_canceled (statement_timeout)
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "28P01", // invalid_password
  "28000", // invalid_authorization_specification
  "3D000", // invalid_catalog_name (no such database)
]);

/** Whether `err` means the database is unreachable, overloaded or refusing us. */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof DbConfigError || err instanceof DbTimeoutError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) return true;
  // Deno's node:net reports refused connections as errors carrying the OS error name
  const text = err instanceof Error ? err.message : String(err);
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|connection refused|os error 111/i.test(text);
}
