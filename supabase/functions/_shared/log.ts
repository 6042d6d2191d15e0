/**
 * Structured logging as the spec's "Logging Best Practices" asks: one JSON object per line with
 * timestamp, level, service, action, status, duration (ms) and, for a notification, its orderId
 * and the phone number masked. Levels: ERROR (failed operations), WARN (degraded, retries),
 * INFO (normal operations), DEBUG (details; shown when LOG_LEVEL=DEBUG).
 */

export type Level = "ERROR" | "WARN" | "INFO" | "DEBUG";

const RANK: Record<Level, number> = { ERROR: 0, WARN: 1, INFO: 2, DEBUG: 3 };

/** The fields of one log line besides timestamp, level and service. */
export interface LogFields {
  /** what was done, e.g. "health_check", "send_message" */
  action: string;
  /** outcome, e.g. "success", "failed", "healthy" */
  status?: string;
  /** how long it took, in ms */
  duration?: number;
  /** the notification's order id, where one is involved */
  orderId?: string;
  /** a phone number: always logged masked (see maskPhone) */
  phone?: string;
  /** anything else worth a field (never secrets) */
  [key: string]: unknown;
}

/** Where lines go; tests replace it to capture them. */
export type Sink = (level: Level, line: string) => void;

const consoleSink: Sink = (level, line) => {
  // the one place that writes to the console: everything else logs through here
  // deno-lint-ignore no-console
  const write = level === "ERROR" ? console.error : level === "WARN" ? console.warn : console.log;
  write(line);
};

let sink: Sink = consoleSink;

/** Replace the sink (tests); returns the previous one. */
export function setSink(next: Sink): Sink {
  const previous = sink;
  sink = next;
  return previous;
}

function threshold(): number {
  let wanted: string | undefined;
  try {
    wanted = Deno.env.get("LOG_LEVEL")?.toUpperCase();
  } catch {
    wanted = undefined; // no env permission: use the default
  }
  return wanted && wanted in RANK ? RANK[wanted as Level] : RANK.INFO;
}

// E.164 country codes with two digits; 1 and 7 have one, all others three (as monitoring.mask_phone)
const CC2 = new Set(
  (
    "20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61 62 63 " +
    "64 65 66 81 82 84 86 90 91 92 93 94 95 98"
  ).split(" "),
);

/**
 * Mask a phone number exactly as the database's monitoring.mask_phone does: keep a leading +,
 * the E.164 country code and the last 4 digits; every other digit becomes *, separators are
 * dropped: "+55 11 99999-9999" -> "+55*******9999". Without + only the last 4 digits stay.
 */
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

/** A logger bound to one service (the Edge Function's name). */
export interface Logger {
  error(fields: LogFields): void;
  warn(fields: LogFields): void;
  info(fields: LogFields): void;
  debug(fields: LogFields): void;
}

/** Write one line at `level` for `service` (dropped when below LOG_LEVEL, default INFO). */
export function log(level: Level, service: string, fields: LogFields): void {
  if (RANK[level] > threshold()) return;
  const { action, status, duration, orderId, phone, ...rest } = fields;
  const line: Record<string, unknown> = {
    timestamp: new Date().toISOString(),
    level,
    service,
    action,
  };
  if (orderId !== undefined) line.orderId = orderId;
  if (phone !== undefined) line.phone = maskPhone(String(phone));
  if (status !== undefined) line.status = status;
  if (duration !== undefined) line.duration = Math.round(duration);
  for (const [key, value] of Object.entries(rest)) {
    if (!(key in line) && value !== undefined) line[key] = value;
  }
  sink(level, JSON.stringify(line));
}

/** A logger whose lines all carry `service`. */
export function logger(service: string): Logger {
  return {
    error: (f) => log("ERROR", service, f),
    warn: (f) => log("WARN", service, f),
    info: (f) => log("INFO", service, f),
    debug: (f) => log("DEBUG", service, f),
  };
}

/** A short, single-line description of an error for logs and responses (never a stack). */
export function describeError(err: unknown, max = 200): string {
  let text: string;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    text = err.message || err.name;
    if (typeof code === "string" && code && !text.includes(code)) text = `${code}: ${text}`;
  } else {
    text = String(err);
  }
  // first line only, credentials in any URL removed, bounded length
  text = (text.split("\n")[0] ?? "").replace(/(\w+:\/\/)[^@\s/]*@/g, "$1***@").trim();
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}
