/**
 * Soak: churn + faults against a resolver, its sidecar and long-polling clients, for a
 * configurable time, printing RSS, heap, open handles and request rates at intervals.
 * Flat is the goal. Not part of `npm test`; run with `npm run soak -- --duration 10m`.
 *
 * Everything runs on 127.0.0.1 and stops by itself at the end of the duration.
 */
import { parseArgs } from 'node:util';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { createWorkerResolver, parseDuration } from '../src/index.js';
import { startSidecar } from '../src/sidecar.js';
import { ConsulDevServer } from '../src/testing/index.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '60s' },
    interval: { type: 'string', default: '10s' },
    workers: { type: 'string', default: '50' },
    clients: { type: 'string', default: '50' },
  },
});
const durationMs = parseDuration(values.duration) ?? Number.NaN;
const intervalMs = parseDuration(values.interval) ?? Number.NaN;
const workerCount = Number(values.workers);
const clientCount = Number(values.clients);
if (!(durationMs > 0 && intervalMs > 0 && workerCount > 0 && clientCount >= 0)) {
  process.stderr.write(
    'soak: --duration and --interval are durations (10m, 30s); --workers/--clients are numbers (ERR_USAGE)\n',
  );
  process.exit(2);
}

const consul = await ConsulDevServer.start();
for (let n = 1; n <= workerCount; n += 1) {
  consul.registerService({
    Name: 'worker',
    ID: `w${n}`,
    Address: `127.0.${Math.floor(n / 250) + 10}.${(n % 250) + 1}`,
    Port: 9000,
    Check: { CheckID: `c${n}`, TTL: '1h', Status: 'passing' },
  });
}
const registry = new Registry();
const resolver = createWorkerResolver({
  service: 'worker',
  consul: {
    address: consul.httpAddr,
    token: 'soak-token',
    waitMs: 5000,
    timeoutMarginMs: 2000,
    backoff: { baseMs: 50, capMs: 2000 },
  },
  dns: { name: '_worker._tcp.service.consul', servers: [consul.dnsAddr ?? ''], minRefreshMs: 500, maxRefreshMs: 2000 },
  registry,
  tracerProvider: new BasicTracerProvider(),
  env: {},
});
await resolver.ready({ timeoutMs: 10_000 });
const sidecar = await startSidecar({ resolver, port: 0, registry });

let stopping = false;
let sidecarAnswers = 0;
let sidecarErrors = 0;
/** Each client keeps one long poll open, like a Rust coordinator following the sidecar. */
async function client(): Promise<void> {
  let index = 0;
  while (!stopping) {
    try {
      const res = await fetch(`${sidecar.url}/v1/workers?index=${index}&wait=5s`);
      const body = (await res.json()) as { index: number };
      index = body.index;
      sidecarAnswers += 1;
    } catch {
      sidecarErrors += 1;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
const clients = Array.from({ length: clientCount }, () => client());

/** mulberry32: a small, well-distributed seeded PRNG, so a soak run is reproducible. */
let seed = 42;
const rand = (n: number): number => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) % n;
};
const churn = setInterval(() => {
  const n = 1 + rand(workerCount);
  consul.setCheckStatus(`c${n}`, rand(4) === 0 ? 'critical' : 'passing');
}, 50);
/** Every few seconds one fault from the matrix, so error paths are soaked too. */
const faults = [
  () => consul.failNext(5, { status: 500, path: '/v1/health/service/' }),
  () => consul.failNext(3, { status: 429, headers: { 'Retry-After': '1' }, path: '/v1/health/service/' }),
  () => consul.dropNext(2, { path: '/v1/health/service/' }),
  () => consul.truncateNext(2, { path: '/v1/health/service/' }),
  () => consul.resetIndex(1),
  () => consul.dnsServer?.failNext(3, 'SERVFAIL'),
  () => consul.failNext(20, { status: 500, path: '/v1/health/service/' }), // long enough to fail over to DNS
];
let faultIndex = 0;
const faulter = setInterval(() => {
  faults[faultIndex % faults.length]?.();
  faultIndex += 1;
}, 7000);

const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const handles = (): string => {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${k}=${v}`).join(' ');
};
const startedAt = Date.now();
const samples: { rss: number; heap: number }[] = [];
let lastConsul = consul.requestCount('/v1/health/service/');
let lastAnswers = 0;
process.stdout.write(
  `soak: ${values.duration}, ${workerCount} workers, ${clientCount} long-poll clients, sidecar ${sidecar.url}\n`,
);
process.stdout.write(
  'elapsed  rss_mb  heap_mb  consul_req/min  sidecar_ans/min  version  workers  healthy  source  handles\n',
);
const reporter = setInterval(() => {
  global.gc?.();
  const mem = process.memoryUsage();
  samples.push({ rss: mem.rss, heap: mem.heapUsed });
  const consulNow = consul.requestCount('/v1/health/service/');
  const perMin = 60_000 / intervalMs;
  const s = resolver.snapshot();
  process.stdout.write(
    `${String(Math.round((Date.now() - startedAt) / 1000)).padStart(6)}s  ${mb(mem.rss).padStart(6)}  ${mb(mem.heapUsed).padStart(7)}  ` +
      `${String(Math.round((consulNow - lastConsul) * perMin)).padStart(14)}  ${String(Math.round((sidecarAnswers - lastAnswers) * perMin)).padStart(15)}  ` +
      `${String(s.version).padStart(7)}  ${String(s.urls.length).padStart(7)}  ${String(consul.healthyInstances('worker')?.length ?? 0).padStart(7)}  ${s.source.padEnd(6)}  ${handles()}\n`,
  );
  lastConsul = consulNow;
  lastAnswers = sidecarAnswers;
}, intervalMs);

await new Promise((resolve) => setTimeout(resolve, durationMs));
stopping = true;
clearInterval(churn);
clearInterval(faulter);
clearInterval(reporter);
await sidecar.close();
await Promise.all(clients);
await resolver.close();
await consul.stop();
const first = samples[1] ?? samples[0];
const last = samples.at(-1);
if (first !== undefined && last !== undefined) {
  process.stdout.write(
    `soak done: rss ${mb(first.rss)} → ${mb(last.rss)} MB, heap ${mb(first.heap)} → ${mb(last.heap)} MB (after the first interval), ` +
      `sidecar answers ${sidecarAnswers}, client errors ${sidecarErrors}\n`,
  );
}
