// Open-loop load: RATE requests/s for SECONDS against URL (each request starts on its schedule,
// whatever the previous ones are doing). Prints one JSON line: sent, per-status counts, elapsed
// seconds, latency percentiles in ms and how late the last request started.
//   node cloudflare/test/load.mjs URL RATE SECONDS
const [url, rateArg, secondsArg] = process.argv.slice(2);
const rate = Number(rateArg ?? 200);
const seconds = Number(secondsArg ?? 30);
const total = Math.round(rate * seconds);
const statuses = {};
const latencies = [];
let maxLagMs = 0;
const start = performance.now();
const jobs = [];
for (let i = 0; i < total; i++) {
  const due = start + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  maxLagMs = Math.max(maxLagMs, performance.now() - due);
  const t0 = performance.now();
  jobs.push(
    fetch(url).then(async (res) => {
      await res.arrayBuffer();
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }).catch((err) => {
      statuses[String(err.cause?.code ?? err.name)] =
        (statuses[String(err.cause?.code ?? err.name)] ?? 0) + 1;
    }).finally(() => latencies.push(performance.now() - t0)),
  );
}
await Promise.all(jobs);
const elapsed = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p) =>
  Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] * 10) / 10;
console.log(JSON.stringify({
  sent: total,
  statuses,
  elapsed: Math.round(elapsed * 100) / 100,
  p50: pct(0.5),
  p95: pct(0.95),
  p99: pct(0.99),
  max: pct(1),
  maxLagMs: Math.round(maxLagMs),
}));
