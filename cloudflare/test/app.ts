/**
 * The test app's own Pages Functions (what an app like the spec's has under functions/api/): each
 * answers in a way the tests need. Not shipped.
 */

import { logger, type PagesContext } from "../functions/_lib/monitoring.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function ms(url: URL, name: string, fallback: number): number {
  const n = Number(url.searchParams.get(name) ?? fallback);
  return Number.isFinite(n) && n >= 0 ? Math.min(n, 30_000) : fallback;
}

/** Route path -> handler, as Pages maps functions/api/<name>.ts to /api/<name>. */
export const routes: Record<string, (context: PagesContext) => Promise<Response>> = {
  "/api/ok": () => Promise.resolve(new Response("ok")),
  "/api/load": () => Promise.resolve(new Response("ok")),
  "/api/fail": () => Promise.resolve(new Response("provider down", { status: 502 })),
  "/api/throw": () => {
    throw new Error("boom: the handler threw");
  },
  "/api/slow": async (context) => {
    await sleep(ms(new URL(context.request.url), "ms", 100));
    return new Response("slow");
  },
  "/api/send": (context) => {
    const url = new URL(context.request.url);
    const ok = url.searchParams.get("ok") !== "0";
    logger[ok ? "info" : "error"]({
      service: "whatsapp",
      action: "send_message",
      orderId: url.searchParams.get("order") ?? "123",
      phone: "+5511999999999",
      status: ok ? "success" : "failed",
      duration: 1234,
      message: ok ? undefined : "invalid number +55 11 98888-7777",
    });
    return Promise.resolve(new Response(JSON.stringify({ sent: ok }), { status: ok ? 200 : 500 }));
  },
};
