/**
 * Monitoring for a Cloudflare Pages project: a middleware that times every request and ships one
 * invocation record per request, and a `log` helper for the spec's structured log lines, both in
 * batches to the ingest Edge Function (supabase/functions/ingest), which feeds
 * monitoring.function_stats, the function_errors / function_latency / function_availability rules
 * and monitoring.app_logs.
 *
 * Install: functions/_middleware.ts holds `export const onRequest = monitoring();`
 * Settings (Pages environment variables): MONITORING_INGEST_URL
 * (https://<ref>.supabase.co/functions/v1/ingest) and MONITORING_INGEST_KEY (a secret, from
 * `pydeploy ingest-key rotate`). Optional: LOG_LEVEL (ERROR, WARN, INFO or DEBUG; default INFO),
 * MONITORING_MAX_BUFFER (records held while the endpoint is down; default the maxBuffer option).
 *
 * Guarantees:
 * - the user's response is never delayed or failed by monitoring: records are buffered in the
 *   isolate and shipped after the response with context.waitUntil; a thrown error becomes a 500
 *   (recorded as 500) with a JSON body, never a stack;
 * - every request is recorded (no sampling): exact counts while the endpoint answers;
 * - the endpoint down (network error, timeout, 5xx, 429): the batch is kept and retried with the
 *   same batchId after a backoff (1 s doubling to 30 s; retries are idempotent), new records wait
 *   in a buffer of at most maxBuffer records; past that the oldest are dropped and counted
 *   (stats().dropped), and the next batch that goes through carries a WARN line saying how many;
 * - a batch the endpoint refuses (4xx other than 408/429: bad key, bad field) is dropped and
 *   counted in stats().rejected, with one console error naming the reason.
 */

/** The Pages Functions context (the parts used here). */
export interface PagesContext<Env = Record<string, unknown>> {
  request: Request;
  env: Env;
  params?: Record<string, string | string[]>;
  data?: Record<string, unknown>;
  next(input?: Request | string, init?: RequestInit): Promise<Response>;
  waitUntil(promise: Promise<unknown>): void;
  functionPath?: string;
}

export type Level = "ERROR" | "WARN" | "INFO" | "DEBUG";

const RANK: Record<Level, number> = { ERROR: 0, WARN: 1, INFO: 2, DEBUG: 3 };

/** One log line's fields besides timestamp and level: the spec's format. */
export interface LogFields {
  /** what was done, e.g. "send_message" */
  action: string;
  /** the component (default: the middleware's `service` option, "pages") */
  service?: string;
  /** outcome, e.g. "success", "failed" */
  status?: string;
  /** how long it took, in ms */
  duration?: number;
  orderId?: string | number;
  /** a phone number: masked in the console; the database masks what it stores */
  phone?: string;
  /** anything else (scalars only) */
  [key: string]: unknown;
}

/** The middleware's options (all optional). */
export interface MonitoringOptions {
  /** `service` of log lines that do not name one (default "pages") */
  service?: string;
  /** the function name a request is recorded under (default: routeName(url.pathname)) */
  route?: (request: Request, url: URL) => string;
  /** record this request? (default: every request) */
  include?: (request: Request, url: URL) => boolean;
  /** ms records wait before a batch is sent (default 1000) */
  flushMs?: number;
  /** records per batch at most (default 500; the endpoint takes up to 1000) */
  maxBatch?: number;
  /** records held at most while the endpoint is down (default 5000); older ones are dropped */
  maxBuffer?: number;
  /** ms a POST to the endpoint may take (default 3000) */
  timeoutMs?: number;
}

/** What this isolate has done so far (tests, debugging). */
export interface MonitoringStats {
  recorded: number;
  logged: number;
  shipped: number;
  dropped: number;
  rejected: number;
  failures: number;
  buffered: number;
  batches: number;
}

interface Invocation {
  function: string;
  status: number;
  durationMs: number;
  time: string;
  requestId?: string;
  region?: string;
}

type Line = Record<string, unknown>;

interface Batch {
  batchId: string;
  invocations: Invocation[];
  logs: Line[];
}

interface Endpoint {
  url: string;
  key: string;
}

const state = {
  invocations: [] as Invocation[],
  logs: [] as Line[],
  retry: null as Batch | null,
  flushing: false,
  timer: false,
  downUntil: 0,
  backoffMs: 0,
  droppedUnreported: 0,
  warned: new Set<string>(),
  threshold: RANK.INFO,
  service: "pages",
  stats: {
    recorded: 0,
    logged: 0,
    shipped: 0,
    dropped: 0,
    rejected: 0,
    failures: 0,
    batches: 0,
  },
};

const MAX_BACKOFF_MS = 30_000;

/** The counters of this isolate. */
export function stats(): MonitoringStats {
  const buffered = state.invocations.length + state.logs.length + appRecords(state.retry);
  return { ...state.stats, buffered };
}

// the WARN lines that report drops: sent in batches, not counted as the app's records
const reports = new WeakSet<Line>();

/** The app's own records in a batch (not the drop reports). */
function appRecords(batch: Batch | null): number {
  if (!batch) return 0;
  return batch.invocations.length + batch.logs.filter((l) => !reports.has(l)).length;
}

/** Forget everything buffered and counted (tests). */
export function reset(): void {
  state.invocations = [];
  state.logs = [];
  state.retry = null;
  state.downUntil = 0;
  state.backoffMs = 0;
  state.droppedUnreported = 0;
  state.warned.clear();
  for (const k of Object.keys(state.stats) as (keyof typeof state.stats)[]) state.stats[k] = 0;
}

// E.164 country codes with two digits; 1 and 7 have one, all others three (as monitoring.mask_phone)
const CC2 = new Set(
  (
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 " +
    "64 65 66 81 82 84 86 90 91 92 93 94 95 98"
  ).split(" "),
);

/** Mask a phone number as monitoring.mask_phone does: "+55 11 99999-9999" -> "+55*******9999". */
export function maskPhone(phone: string): string {
  const digits = phone.replace(/[^0-9]/g, "");
  const len = digits.length;
  if (len <= 4) return "*".repeat(len);
  if (phone.trimStart().startsWith("+")) {
    let cc = digits[0] === "1" || digits[0] === "7" ? 1 : CC2.has(digits.slice(0, 2)) ? 2 : 3;
    if (len <= cc + 4) cc = 0;
    return "+" + digits.slice(0, cc) + "*".repeat(len - cc - 4) + digits.slice(-4);
  }
  return "*".repeat(len - 4) + digits.slice(-4);
}

/**
 * The default route name: the path with ids replaced, so that /api/orders/123 and /api/orders/456
 * are one function ("/api/orders/:id"): numbers, UUIDs and long hex or base64-like segments.
 */
export function routeName(pathname: string): string {
  const parts = pathname.split("/").map((seg) =>
    /^\d+$/.test(seg) ||
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(seg) ||
      /^[0-9a-f]{16,}$/i.test(seg) || (seg.length >= 20 && /\d/.test(seg))
      ? ":id"
      : seg
  );
  const name = parts.join("/") || "/";
  return name.length > 200 ? name.slice(0, 200) : name;
}

function consoleWrite(level: Level, line: string): void {
  const write = level === "ERROR" ? console.error : level === "WARN" ? console.warn : console.log;
  write(line);
}

function warnOnce(key: string, message: string): void {
  if (state.warned.has(key)) return;
  state.warned.add(key);
  consoleWrite(
    "ERROR",
    JSON.stringify({
      timestamp: new Date().toISOString(),
      level: "ERROR",
      service: "monitoring",
      action: "ship_batch",
      status: key,
      error: message,
    }),
  );
}

/**
 * Write one log line in the spec's format: to the console (phone masked) and to the next batch.
 * Lines below LOG_LEVEL (default INFO) are dropped.
 */
export function log(level: Level, fields: LogFields): void {
  if (RANK[level] > state.threshold) return;
  const { action, service, status, duration, orderId, phone, ...rest } = fields;
  const line: Line = {
    timestamp: new Date().toISOString(),
    level,
    service: service ?? state.service,
    action,
  };
  if (orderId !== undefined) line.orderId = orderId;
  if (phone !== undefined) line.phone = phone;
  if (status !== undefined) line.status = status;
  if (duration !== undefined) line.duration = Math.max(0, Math.round(duration));
  for (const [key, value] of Object.entries(rest)) {
    if (key in line || value === undefined) continue;
    line[key] = value !== null && typeof value === "object" ? JSON.stringify(value) : value;
  }
  const shown = phone !== undefined ? { ...line, phone: maskPhone(String(phone)) } : line;
  consoleWrite(level, JSON.stringify(shown));
  state.logs.push(line);
  state.stats.logged++;
  enforceCap(Infinity);
}

/** `log` by level: logger.error({action: "send_message", orderId, phone, status: "failed"}). */
export const logger = {
  error: (f: LogFields): void => log("ERROR", f),
  warn: (f: LogFields): void => log("WARN", f),
  info: (f: LogFields): void => log("INFO", f),
  debug: (f: LogFields): void => log("DEBUG", f),
};

let maxBufferNow = 5000;

/** Drop the oldest records past the buffer's cap, counting them. */
function enforceCap(max: number): void {
  const cap = Math.min(max, maxBufferNow);
  let over = state.invocations.length + state.logs.length - cap;
  if (over <= 0) return;
  const fromLogs = Math.min(over, state.logs.length);
  state.logs.splice(0, fromLogs);
  over -= fromLogs;
  if (over > 0) state.invocations.splice(0, over);
  const n = fromLogs + Math.max(0, over);
  state.stats.dropped += n;
  state.droppedUnreported += n;
}

function endpoint(env: Record<string, unknown>): Endpoint | null {
  const url = typeof env.MONITORING_INGEST_URL === "string" ? env.MONITORING_INGEST_URL.trim() : "";
  const key = typeof env.MONITORING_INGEST_KEY === "string" ? env.MONITORING_INGEST_KEY.trim() : "";
  return url && key ? { url, key } : null;
}

function takeBatch(maxBatch: number): Batch | null {
  if (state.retry) return state.retry;
  if (state.invocations.length + state.logs.length === 0 && state.droppedUnreported === 0) {
    return null;
  }
  const logs: Line[] = [];
  if (state.droppedUnreported > 0) {
    const report: Line = {
      timestamp: new Date().toISOString(),
      level: "WARN",
      service: "monitoring",
      action: "ship_batch",
      status: "dropped",
      dropped: state.droppedUnreported,
    };
    reports.add(report);
    logs.push(report);
    state.droppedUnreported = 0;
  }
  const invocations = state.invocations.splice(0, Math.max(0, maxBatch - logs.length));
  logs.push(...state.logs.splice(0, Math.max(0, maxBatch - logs.length - invocations.length)));
  return { batchId: crypto.randomUUID(), invocations, logs };
}

/** Send batches until the buffer is empty, the endpoint fails, or it is backing off. */
async function flush(
  ep: Endpoint,
  opts: Required<Pick<MonitoringOptions, "maxBatch" | "timeoutMs">>,
) {
  if (state.flushing) return;
  state.flushing = true;
  try {
    while (Date.now() >= state.downUntil) {
      const batch = takeBatch(opts.maxBatch);
      if (!batch) return;
      // held until the endpoint takes it: counted as buffered, sent again (same batchId) if not
      state.retry = batch;
      const size = appRecords(batch);
      let status = 0;
      let detail = "";
      try {
        const res = await fetch(ep.url, {
          method: "POST",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${ep.key}` },
          body: JSON.stringify(batch),
          signal: AbortSignal.timeout(opts.timeoutMs),
        });
        status = res.status;
        detail = (await res.text()).slice(0, 300);
      } catch (err) {
        detail = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
      if (status >= 200 && status < 300) {
        state.retry = null;
        state.backoffMs = 0;
        state.stats.shipped += size;
        state.stats.batches++;
        continue;
      }
      if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        // refused for good (key, field): retrying the same batch cannot help
        state.retry = null;
        state.stats.rejected += size;
        warnOnce(
          `rejected_${status}`,
          `the ingest endpoint refused a batch (${status}): ${detail}`,
        );
        continue;
      }
      // down: the batch stays in state.retry for a retry with the same batchId; back off
      state.stats.failures++;
      state.backoffMs = Math.min(MAX_BACKOFF_MS, state.backoffMs ? state.backoffMs * 2 : 1000);
      state.downUntil = Date.now() + state.backoffMs;
      warnOnce("unreachable", `the ingest endpoint is unreachable (${status || detail}); retrying`);
      return;
    }
  } finally {
    state.flushing = false;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The middleware: `export const onRequest = monitoring();` in functions/_middleware.ts (or put it
 * first in an array of middlewares).
 */
export function monitoring(
  options: MonitoringOptions = {},
): (context: PagesContext) => Promise<Response> {
  const flushMs = options.flushMs ?? 1000;
  const maxBatch = Math.min(options.maxBatch ?? 500, 1000);
  const timeoutMs = options.timeoutMs ?? 3000;
  const route = options.route ?? ((_req: Request, url: URL) => routeName(url.pathname));
  state.service = options.service ?? "pages";
  maxBufferNow = options.maxBuffer ?? 5000;

  return async (context: PagesContext): Promise<Response> => {
    const started = Date.now();
    const request = context.request;
    const env = (context.env ?? {}) as Record<string, unknown>;
    const wanted = typeof env.LOG_LEVEL === "string" ? env.LOG_LEVEL.toUpperCase() : "";
    state.threshold = wanted in RANK ? RANK[wanted as Level] : RANK.INFO;
    const cap = Number(env.MONITORING_MAX_BUFFER ?? NaN);
    maxBufferNow = Number.isInteger(cap) && cap > 0 ? cap : options.maxBuffer ?? 5000;
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return await context.next();
    }
    let response: Response;
    try {
      response = await context.next();
    } catch (err) {
      log("ERROR", {
        action: "request",
        status: "exception",
        route: route(request, url),
        error: err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 500) : String(err),
      });
      response = new Response(JSON.stringify({ error: "internal error" }), {
        status: 500,
        headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
      });
    }
    try {
      if (options.include && !options.include(request, url)) return response;
      const cf = (request as Request & { cf?: { colo?: unknown } }).cf;
      const record: Invocation = {
        function: route(request, url),
        status: response.status,
        durationMs: Math.max(0, Date.now() - started),
        time: new Date(started).toISOString(),
      };
      const ray = request.headers.get("cf-ray");
      if (ray) record.requestId = ray.slice(0, 200);
      if (typeof cf?.colo === "string") record.region = cf.colo.slice(0, 50);
      state.invocations.push(record);
      state.stats.recorded++;
      enforceCap(Infinity);

      const ep = endpoint(env);
      if (!ep) {
        warnOnce("not_configured", "set MONITORING_INGEST_URL and MONITORING_INGEST_KEY");
        state.stats.dropped += state.invocations.length + state.logs.length;
        state.invocations = [];
        state.logs = [];
        return response;
      }
      const buffered = state.invocations.length + state.logs.length;
      if (buffered >= maxBatch && !state.flushing && Date.now() >= state.downUntil) {
        context.waitUntil(flush(ep, { maxBatch, timeoutMs }));
      } else if (!state.timer) {
        // one timer per isolate, kept alive by the request that set it
        state.timer = true;
        context.waitUntil(
          sleep(Math.max(flushMs, state.downUntil - Date.now()))
            .then(() => {
              state.timer = false;
              return flush(ep, { maxBatch, timeoutMs });
            })
            .catch(() => {
              state.timer = false;
            }),
        );
      }
    } catch {
      // monitoring never fails the response
    }
    return response;
  };
}
