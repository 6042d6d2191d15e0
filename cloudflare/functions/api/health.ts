// The spec's /api/health: the database's health (through the health Edge Function) plus the Pages
// side's status and environment block (see ../_lib/health.ts).
export { onRequest } from "../_lib/health.ts";
