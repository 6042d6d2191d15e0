/**
 * The caller's JWT, verified as Supabase Auth issues it, and the admin check.
 *
 * Keys, in this order (at least one must be set):
 * - SUPABASE_JWKS: the project's JSON Web Key Set (a default secret of hosted Edge Functions
 *   with the new JWT signing keys; ES256/RS256/EdDSA tokens);
 * - SUPABASE_JWT_SECRET (else JWT_SECRET): the legacy shared secret (HS256 tokens), which is
 *   also what `pydeploy functions serve` / `pydeploy dashboard` and the tests sign with.
 *
 * Used by monitoring-dashboard (requireAdmin) and health (isPrivileged: the service role key or an
 * admin gets the full document).
 *
 * An admin is a user whose claim at MONITORING_ADMIN_CLAIM (a dotted path, default
 * `app_metadata.role`, the Supabase convention: app_metadata is writable only with the service
 * key, never by the user) equals MONITORING_ADMIN_VALUE (default `admin`), or is an array that
 * contains it.
 */

import {
  createLocalJWKSet,
  decodeProtectedHeader,
  type JWTPayload,
  jwtVerify,
} from "npm:jose@6.2.18";
import { bearerToken, timingSafeEqual } from "./http.ts";

/** Why a request is refused: 401 (who are you?) or 403 (not allowed), with a reason to show. */
export class AuthError extends Error {
  constructor(readonly status: 401 | 403 | 500, readonly reason: string) {
    super(reason);
    this.name = "AuthError";
  }
}

/** The verified caller. */
export interface Caller {
  /** the user id (sub) */
  sub: string;
  /** e-mail, when the token carries one */
  email: string | null;
  /** "email (sub)" or the sub alone: what silences record as created_by / expired_by */
  actor: string;
  claims: JWTPayload;
}

/** The admin rule: which claim, which value. */
export interface AdminRule {
  claim: string;
  value: string;
}

export const DEFAULT_ADMIN_CLAIM = "app_metadata.role";
export const DEFAULT_ADMIN_VALUE = "admin";

function env(name: string): string {
  try {
    return (Deno.env.get(name) ?? "").trim();
  } catch {
    return "";
  }
}

/** The admin rule from MONITORING_ADMIN_CLAIM / MONITORING_ADMIN_VALUE (validated). */
export function adminRule(): AdminRule {
  const claim = env("MONITORING_ADMIN_CLAIM") || DEFAULT_ADMIN_CLAIM;
  const value = env("MONITORING_ADMIN_VALUE") || DEFAULT_ADMIN_VALUE;
  if (!/^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/.test(claim)) {
    throw new AuthError(
      500,
      `MONITORING_ADMIN_CLAIM must be a dotted claim path such as app_metadata.role (got ${
        JSON.stringify(claim.slice(0, 60))
      })`,
    );
  }
  return { claim, value };
}

/** The value at a dotted path of the claims, or undefined. */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  let node: unknown = claims;
  for (const part of path.split(".")) {
    if (node === null || typeof node !== "object" || Array.isArray(node)) return undefined;
    if (!Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** Whether the claims make their holder an admin under `rule`. */
export function isAdmin(claims: Record<string, unknown>, rule: AdminRule): boolean {
  const found = claimAt(claims, rule.claim);
  if (typeof found === "string") return found === rule.value;
  if (Array.isArray(found)) return found.some((v) => v === rule.value);
  return false;
}

type Key = Parameters<typeof jwtVerify>[1];

let cachedJwks: { text: string; key: ReturnType<typeof createLocalJWKSet> } | undefined;

function keys(): { jwks?: ReturnType<typeof createLocalJWKSet>; secret?: Uint8Array } {
  const out: { jwks?: ReturnType<typeof createLocalJWKSet>; secret?: Uint8Array } = {};
  const jwksText = env("SUPABASE_JWKS");
  if (jwksText) {
    if (cachedJwks?.text !== jwksText) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(jwksText);
      } catch {
        throw new AuthError(500, 'SUPABASE_JWKS is not JSON (it must be {"keys": [...]})');
      }
      const set = Array.isArray(parsed) ? { keys: parsed } : parsed;
      try {
        cachedJwks = {
          text: jwksText,
          key: createLocalJWKSet(set as Parameters<typeof createLocalJWKSet>[0]),
        };
      } catch (err) {
        throw new AuthError(500, `SUPABASE_JWKS is not a key set: ${(err as Error).message}`);
      }
    }
    out.jwks = cachedJwks.key;
  }
  const secret = env("SUPABASE_JWT_SECRET") || env("JWT_SECRET");
  if (secret) out.secret = new TextEncoder().encode(secret);
  return out;
}

function describeJwtError(err: unknown): string {
  const code = (err as { code?: string }).code ?? "";
  switch (code) {
    case "ERR_JWT_EXPIRED":
      return "the token has expired: sign in again";
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "the token's signature is not valid for this project";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "the token was signed with a key this project does not know";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return `the token's claims are not valid (${(err as Error).message})`;
    case "ERR_JOSE_ALG_NOT_ALLOWED":
    case "ERR_JOSE_NOT_SUPPORTED":
      return "the token's algorithm is not accepted";
    default:
      return "the token is not a valid JWT";
  }
}

/** The bearer token's verified claims; AuthError(401) when absent, malformed, expired or forged. */
export async function verifyToken(token: string | null): Promise<JWTPayload> {
  if (!token) {
    throw new AuthError(401, "no token: sign in and send Authorization: Bearer <access token>");
  }
  const { jwks, secret } = keys();
  if (!jwks && !secret) {
    throw new AuthError(
      500,
      "the function has no key to verify tokens: set SUPABASE_JWKS or SUPABASE_JWT_SECRET",
    );
  }
  let header: { alg?: string };
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new AuthError(401, "the token is not a valid JWT");
  }
  const symmetric = header.alg === "HS256";
  const key: Key | undefined = symmetric ? secret : jwks;
  if (!key) {
    throw new AuthError(
      401,
      symmetric
        ? "HS256 tokens are not accepted here (no SUPABASE_JWT_SECRET)"
        : `${String(header.alg)} tokens are not accepted here (no SUPABASE_JWKS)`,
    );
  }
  try {
    const { payload } = await jwtVerify(token, key as Parameters<typeof jwtVerify>[1], {
      algorithms: symmetric ? ["HS256"] : ["ES256", "RS256", "EdDSA"],
      requiredClaims: ["sub", "exp"],
    });
    return payload;
  } catch (err) {
    throw new AuthError(401, describeJwtError(err));
  }
}

/** The verified admin behind `token`: AuthError 401 (bad token) or 403 (not an admin). */
export async function requireAdmin(token: string | null): Promise<Caller> {
  const rule = adminRule();
  const claims = await verifyToken(token);
  if (!isAdmin(claims as Record<string, unknown>, rule)) {
    throw new AuthError(
      403,
      `not authorised: admins only (${rule.claim} must be ${JSON.stringify(rule.value)})`,
    );
  }
  const sub = String(claims.sub);
  const email = typeof claims.email === "string" && claims.email ? claims.email : null;
  return { sub, email, actor: email ? `${email} (${sub})` : sub, claims };
}

/**
 * Whether the request may see more than the public answer: it carries the service role key, or
 * the JWT of an admin (verified as above, the same admin rule as the dashboard). Anything else,
 * a bad or expired token included, is a public caller; health uses this to choose between the
 * full document and the spec's public one.
 */
export async function isPrivileged(req: Request): Promise<boolean> {
  const token = bearerToken(req);
  if (!token) return false;
  const serviceKey = env("SUPABASE_SERVICE_ROLE_KEY");
  if (serviceKey && (await timingSafeEqual(token, serviceKey))) return true;
  try {
    const claims = await verifyToken(token);
    return isAdmin(claims as Record<string, unknown>, adminRule());
  } catch {
    return false;
  }
}
