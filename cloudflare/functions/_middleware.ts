// Every request timed and recorded, thrown errors answered 500, batches shipped after the response
// (see _lib/monitoring.ts). Already have a middleware? export const onRequest = [monitoring(), yours];
import { monitoring } from "./_lib/monitoring.ts";

export const onRequest = monitoring({ service: "pages" });
