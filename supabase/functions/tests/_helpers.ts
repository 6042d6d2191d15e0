/**
 * Helpers for the Deno tests. They run the handlers in-process against a real database:
 * SUPABASE_DB_URL must point at one with supabase/migrations applied (the local engine:
 * `pydeploy up` prints it; pytest passes its own).
 */

import postgres from "npm:postgres@3.4.9";
import { closeDb } from "../_shared/db.ts";
import { settle } from "../_shared/invocations.ts";
import { type Level, setSink } from "../_shared/log.ts";

/** SUPABASE_DB_URL, or a clear failure when it is not set. */
export function requireDbUrl(): string {
  const url = Deno.env.get("SUPABASE_DB_URL")?.trim();
  if (!url) {
    throw new Error(
      "SUPABASE_DB_URL is not set: these tests run the functions against a real database. " +
        "Start the local engine (`.venv/bin/pydeploy up`) and run " +
        'SUPABASE_DB_URL="$(.venv/bin/pydeploy url)" deno task test',
    );
  }
  return url;
}

/** A separate connection for setting up and checking data (committed, so handlers see it). */
export function adminDb(): postgres.Sql {
  return postgres(requireDbUrl(), { max: 1, onnotice: () => {}, fetch_types: false });
}

/** Run `fn` with env vars set (undefined: deleted), restoring them afterwards. */
export async function withEnv<T>(
  vars: Record<string, string | undefined>,
  fn: () => Promise<T>,
): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = Deno.env.get(k);
    if (v === undefined) Deno.env.delete(k);
    else Deno.env.set(k, v);
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

/** Captured log lines (parsed) while `fn` runs; nothing reaches the console. */
export async function captureLogs<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; lines: Array<Record<string, unknown> & { level: Level }> }> {
  const lines: Array<Record<string, unknown> & { level: Level }> = [];
  const previous = setSink((_, line) => lines.push(JSON.parse(line)));
  try {
    return { result: await fn(), lines };
  } finally {
    setSink(previous);
  }
}

/** Wait for background work (invocation records) and close the pool, so no socket leaks. */
export async function cleanup(): Promise<void> {
  await settle();
  await closeDb();
}

/** A test that uses the database: its pool is closed afterwards whatever happens. */
export function dbTest(name: string, fn: () => Promise<void>): void {
  Deno.test(name, async () => {
    try {
      await captureLogs(fn);
    } finally {
      await cleanup();
    }
  });
}

export function request(path: string, init: RequestInit = {}): Request {
  return new Request(`http://functions.test/functions/v1/${path}`, init);
}

/** A parsed JSON body in tests. */
// deno-lint-ignore no-explicit-any
export type Json = any;
