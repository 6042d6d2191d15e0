/**
 * Who is calling: the service role key, or a signed-in admin (a Supabase Auth JWT whose
 * app_metadata.role is the admin role), or anyone else. Used by health to decide between the
 * full document and the public one.
 *
 * Admin JWTs are checked locally (HS256 with the project's JWT secret, expiry enforced), so no
 * call to Auth is needed: set HEALTH_JWT_SECRET (`supabase secrets set HEALTH_JWT_SECRET=…`, the
 * project's JWT secret; SUPABASE_JWT_SECRET is read where the runtime provides it) and, to use
 * another role than `admin`, HEALTH_ADMIN_ROLE.
 */

import { bearerToken, timingSafeEqual } from "./http.ts";

export const DEFAULT_ADMIN_ROLE = "admin";
const encoder = new TextEncoder();

function env(name: string): string {
  try {
    return (Deno.env.get(name) ?? "").trim();
  } catch {
    return "";
  }
}

function base64urlDecode(part: string): Uint8Array<ArrayBuffer> {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function base64urlJson(part: string): Record<string, unknown> | null {
  try {
    const value = JSON.parse(new TextDecoder().decode(base64urlDecode(part)));
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/** The claims of an HS256 JWT signed with `secret` and not expired, else null. */
export async function verifyHs256(
  token: string,
  secret: string,
  nowSeconds = Date.now() / 1000,
): Promise<Record<string, unknown> | null> {
  const parts = token.split(".");
  if (parts.length !== 3 || !secret) return null;
  const header = base64urlJson(parts[0]);
  if (!header || header.alg !== "HS256") return null;
  let signature: Uint8Array<ArrayBuffer>;
  try {
    signature = base64urlDecode(parts[2]);
  } catch {
    return null;
  }
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const ok = await crypto.subtle.verify(
    "HMAC",
    key,
    signature,
    encoder.encode(`${parts[0]}.${parts[1]}`),
  );
  if (!ok) return null;
  const claims = base64urlJson(parts[1]);
  if (!claims) return null;
  if (typeof claims.exp !== "number" || claims.exp <= nowSeconds) return null;
  if (typeof claims.nbf === "number" && claims.nbf > nowSeconds) return null;
  return claims;
}

/** Whether the request carries the service role key or an admin's JWT. */
export async function isPrivileged(req: Request): Promise<boolean> {
  const token = bearerToken(req);
  if (!token) return false;
  const serviceKey = env("SUPABASE_SERVICE_ROLE_KEY");
  if (serviceKey && (await timingSafeEqual(token, serviceKey))) return true;
  const secret = env("HEALTH_JWT_SECRET") || env("SUPABASE_JWT_SECRET");
  if (!secret) return false;
  const claims = await verifyHs256(token, secret);
  const meta = claims?.app_metadata as { role?: unknown } | undefined;
  const adminRole = env("HEALTH_ADMIN_ROLE") || DEFAULT_ADMIN_ROLE;
  return typeof meta?.role === "string" && meta.role === adminRole;
}
