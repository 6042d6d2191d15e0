/**
 * The Pages routing the tests run in workerd (Miniflare): what `wrangler pages` builds from a
 * functions/ folder, reduced to what the tests use. functions/_middleware.ts's onRequest runs
 * first (context.next() calls the route), then the route of the app (./app.ts) or
 * functions/api/health.ts; anything else is a 404 "static asset". /__monitoring/stats and
 * /__monitoring/reset (outside the middleware) give the tests the isolate's counters.
 */

import { onRequest as middleware } from "../functions/_middleware.ts";
import { onRequest as health } from "../functions/api/health.ts";
import { type PagesContext, reset, stats } from "../functions/_lib/monitoring.ts";
import { routes } from "./app.ts";

interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

type Handler = (context: PagesContext) => Promise<Response>;

const table: Record<string, Handler> = { ...routes, "/api/health": health };

export default {
  fetch(request: Request, env: Record<string, unknown>, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/__monitoring/stats") {
      return Promise.resolve(Response.json(stats()));
    }
    if (url.pathname === "/__monitoring/reset") {
      reset();
      return Promise.resolve(Response.json(stats()));
    }
    const chain: Handler[] = [
      middleware,
      (context) => {
        const route = table[url.pathname];
        if (route) return route(context);
        return Promise.resolve(new Response("not found", { status: 404 }));
      },
    ];
    const data: Record<string, unknown> = {};
    const run = (i: number, req: Request): Promise<Response> =>
      chain[i]({
        request: req,
        env,
        params: {},
        data,
        functionPath: url.pathname,
        waitUntil: (p) => ctx.waitUntil(p),
        next: (input?: Request | string, init?: RequestInit) =>
          run(i + 1, input === undefined ? req : new Request(input, init)),
      });
    return run(0, request);
  },
};
