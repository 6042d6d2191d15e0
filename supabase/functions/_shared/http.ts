/** HTTP helpers shared by the functions: CORS, JSON responses and the bearer-key check. */

/** Headers browsers may send (supabase-js and supabase-py send authorization, apikey and x-client-info). */
export const ALLOWED_HEADERS = "authorization, x-client-info, apikey, content-type";

/** CORS headers for a function answering `methods` (OPTIONS is always added). */
export function corsHeaders(methods: readonly string[]): Record<string, string> {
  return {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": [...methods, "OPTIONS"].join(", "),
    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
    "Access-Control-Max-Age": "86400",
  };
}

/** A JSON response that no cache keeps, with the given CORS headers. */
export function json(
  body: unknown,
  status: number,
  cors: Record<string, string>,
  extra: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      ...cors,
      "Content-Type": "application/json",
      "Cache-Control": "no-store",
      ...extra,
    },
  });
}

/** The answer to a CORS preflight (OPTIONS): no body, no authentication needed. */
export function preflight(cors: Record<string, string>): Response {
  return new Response(null, { status: 204, headers: { ...cors, "Cache-Control": "no-store" } });
}

/** 405 naming the methods that are allowed. */
export function methodNotAllowed(
  method: string,
  methods: readonly string[],
  cors: Record<string, string>,
): Response {
  const allow = [...methods, "OPTIONS"].join(", ");
  return json({ error: `method ${method} not allowed; use ${allow}` }, 405, cors, { Allow: allow });
}

const encoder = new TextEncoder();

/**
 * Compare two strings in constant time: both are hashed with SHA-256 and the digests compared
 * byte by byte without an early exit, so neither the position of the first difference nor the
 * length of the expected value shows in the timing.
 */
export async function timingSafeEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  const x = new Uint8Array(da);
  const y = new Uint8Array(db);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(req: Request): string | null {
  const header = req.headers.get("Authorization");
  if (!header) return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match ? match[1] : null;
}

/** Whether the request carries `Authorization: Bearer <expected>` (compared in constant time). */
export async function hasBearer(req: Request, expected: string): Promise<boolean> {
  const token = bearerToken(req);
  // an absent token is still compared, so the time taken does not tell absent from wrong
  const same = await timingSafeEqual(token ?? "", expected);
  return token !== null && expected.length > 0 && same;
}
