/** The chart's columns, apart from uPlot (which needs a DOM) so that they can be unit-tested. */

import { num, type Row } from "./monitoringClient";

/** x (seconds), delivery rate, errors, threshold: uPlot's aligned data. */
export type ChartColumns = [number[], (number | null)[], (number | null)[], (number | null)[]];

/** uPlot's columns from hourly_stats rows (oldest first): x in seconds, rate, errors. */
export function chartData(hourly: Row[], threshold?: number | null): ChartColumns {
  const xs: number[] = [];
  const rate: (number | null)[] = [];
  const errors: (number | null)[] = [];
  const limit: (number | null)[] = [];
  for (const row of hourly) {
    const t = Date.parse(String(row.hour));
    if (!Number.isFinite(t)) continue;
    xs.push(t / 1000);
    // an hour without messages has no rate to show (the view says 100)
    rate.push((num(row.total) ?? 0) > 0 ? num(row.delivery_rate) : null);
    errors.push(num(row.errors) ?? 0);
    limit.push(threshold ?? null);
  }
  return [xs, rate, errors, limit];
}
