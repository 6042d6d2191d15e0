/**
 * Delivery rate (% accepted by WhatsApp, line, left axis) and errors (bars, right axis) per UTC hour, drawn with
 * uPlot on a canvas that follows its container's width. The low_delivery_rate threshold is drawn
 * as a dashed line when given.
 */

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { chartData } from "./chartData";
import type { Row } from "./monitoringClient";

export interface DeliveryChartProps {
  hourly: Row[];
  /** the delivery-rate alert threshold (%), drawn as a dashed line */
  threshold?: number | null;
  height?: number;
}

export function DeliveryChart({ hourly, threshold, height = 260 }: DeliveryChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(240, el.clientWidth);
    const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
    const opts: uPlot.Options = {
      width,
      height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true },
        rate: { range: [0, 100] },
        errors: { range: (_u, _min, max) => [0, Math.max(5, max)] },
      },
      axes: [
        { stroke: "#475569" },
        { scale: "rate", label: "delivery rate %", stroke: "#15803d", size: 50 },
        {
          scale: "errors",
          label: "errors",
          side: 1,
          stroke: "#b91c1c",
          grid: { show: false },
          size: 50,
        },
      ],
      series: [
        {},
        { label: "delivery rate %", scale: "rate", stroke: "#16a34a", width: 2, spanGaps: false },
        {
          label: "errors",
          scale: "errors",
          stroke: "#dc2626",
          fill: "rgba(220,38,38,0.25)",
          paths: bars,
        },
        {
          label: "alert below",
          scale: "rate",
          stroke: "#f59e0b",
          dash: [6, 4],
          width: 1,
          points: { show: false },
        },
      ],
    };
    plot.current?.destroy();
    plot.current = new uPlot(opts, chartData(hourly, threshold), el);
    const resize = new ResizeObserver(() => {
      const w = Math.max(240, el.clientWidth);
      if (plot.current && plot.current.width !== w) plot.current.setSize({ width: w, height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [hourly, threshold, height]);

  return (
    <div
      ref={box}
      className="w-full overflow-hidden"
      data-testid="delivery-chart"
      data-points={hourly.length}
      role="img"
      aria-label={`Delivery rate and errors per hour, ${hourly.length} hours`}
    />
  );
}
