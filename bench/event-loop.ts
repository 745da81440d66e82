/**
 * Event-loop blocking per processed answer (the 10,000-worker goals: docs/performance.md): a real resolver (Consul source
 * over HTTP, engine, publish) on this thread, fed by a scripted Consul in a worker thread that
 * answers each blocking query after `spacingMs` with the next of two captured bodies (so each
 * answer is a change) and a new index. The Consul side runs on its own event loop, so what the
 * probe sees on this thread is the resolver's own work: receiving the body, comparing, parsing
 * what changed, building, diffing, publishing.
 *
 * The probe is `perf_hooks.monitorEventLoopDelay` (1 ms resolution), read and reset in the
 * first timer turn after every publish: its `max` over one interval is the longest the event
 * loop was held while that answer arrived and was processed, its publishing turn included. Next to it, `performance.eventLoopUtilization()` between two
 * publishes: the time this thread was busy (not waiting for I/O) per answer, which is what
 * the resolver costs the thread; the delay also holds the time the OS ran other threads
 * (on 2 cores: the scripted Consul and the reader thread) while this one was due.
 */
import { once } from 'node:events';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { systemClock } from '../src/clock.js';
import { Engine } from '../src/engine.js';
import { resolveConsul } from '../src/consul/options.js';
import { ConsulSource } from '../src/consul/source.js';
import type { Source } from '../src/source.js';
import { SERVICE } from './cluster.js';
import { forceGc } from './memory.js';
import { silentLogger } from './section.js';
import { summarize } from './stats.js';
import type { Summary } from './stats.js';

/**
 * The engine as `createWorkerResolver` builds it for one Consul source with the default guard,
 * without damping (every answer is published at once, so each one is measured).
 */
export function benchEngine(consul: Source): Engine {
  return new Engine({
    service: SERVICE,
    consul,
    dns: undefined,
    staticWorkers: undefined,
    failoverAfterFailures: 3,
    failoverAfterMs: undefined,
    maxStalenessMs: 3_600_000,
    guard: { threshold: 0.5, minWorkers: 3, holdMs: 60_000 },
    minPublishIntervalMs: 0,
    clock: systemClock,
    logger: silentLogger,
    observers: [],
  });
}

/** The scripted Consul, plain JavaScript run by a worker thread. */
const CONSUL_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const bodies = workerData.bodies.map((b) => Buffer.from(b));
const same = workerData.same;
let index = 100;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const asked = Number(url.searchParams.get('index') ?? '0');
  const answer = () => {
    if (res.destroyed) return;
    const body = bodies[same ? 0 : index % 2];
    res.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': String(index), 'X-Consul-KnownLeader': 'true', 'X-Consul-LastContact': '0', 'Content-Length': body.length });
    res.end(body);
  };
  if (asked < index) return answer();
  const t = setTimeout(() => { index += 1; answer(); }, workerData.spacingMs);
  res.on('close', () => clearTimeout(t));
});
server.keepAliveTimeout = 600000;
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', () => { server.closeAllConnections(); server.close(() => parentPort.close()); });
`;

/** What {@link measureEventLoop} found. */
export interface EventLoopResult {
  /** Longest event-loop delay between two publishes, per answer, in ms. */
  readonly perAnswerMaxMs: Summary;
  /** This thread's busy time between two publishes (event-loop utilization × interval), in ms. */
  readonly perAnswerActiveMs: Summary;
  /** Longest event-loop delay while the first answer (every entry new) was read and built, in ms. */
  readonly firstAnswerMaxMs: number;
  /** The whole run's delay distribution (1 ms samples), in ms. */
  readonly overallP99Ms: number;
  readonly overallMaxMs: number;
  readonly answers: number;
}

/**
 * Runs a resolver against the scripted Consul until `answers` changes were published (or the
 * signal aborts); the first publish (the full first read) is not counted.
 */
export async function measureEventLoop(
  bodies: readonly [Buffer, Buffer],
  answers: number,
  spacingMs: number,
  signal: AbortSignal,
  readInThread: boolean | 'auto' = 'auto',
): Promise<EventLoopResult> {
  // Each run starts from a collected heap: the garbage of whatever ran before in this process
  // (the processing iterations' 10 MiB bodies and candidates) would otherwise be collected
  // during this run and charged to its answers.
  forceGc();
  const consul = new Worker(CONSUL_SOURCE, {
    eval: true,
    execArgv: [],
    workerData: { bodies: bodies.map((b) => new Uint8Array(b)), spacingMs, same: false },
  });
  const [{ port }] = (await once(consul, 'message')) as [{ port: number }];
  // The engine and Consul source as createWorkerResolver builds them, with the reader chosen here.
  const consulConfig = resolveConsul(
    { address: `http://127.0.0.1:${port}`, rateLimit: { ratePerSecond: 10_000, burst: 10_000 }, readInThread },
    'worker',
    {},
    systemClock,
    undefined,
  );
  const resolver = benchEngine(new ConsulSource(consulConfig));
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  const overall = monitorEventLoopDelay({ resolution: 1 });
  const perAnswer: number[] = [];
  const perAnswerActive: number[] = [];
  let firstAnswerMaxMs = Number.NaN;
  let elu = performance.eventLoopUtilization();
  try {
    let published = 0;
    const done = new Promise<void>((resolve) => {
      resolver.subscribe(() => {
        // Read in the next timer turn, not here: the histogram records a turn's delay when its
        // own timer fires after it, and a reset() forgets the sample in progress, so reading and
        // resetting inside the publishing turn would lose that turn's delay (the engine's build
        // and publish) from every answer's figure.
        setTimeout(() => {
          published += 1;
          const now = performance.eventLoopUtilization();
          if (published > 1) {
            perAnswer.push(histogram.max / 1e6);
            perAnswerActive.push(now.active - elu.active);
          } else firstAnswerMaxMs = histogram.max / 1e6;
          elu = now;
          histogram.reset();
          if (published > answers || signal.aborted) resolve();
        }, 0);
      });
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    histogram.enable();
    overall.enable();
    resolver.start();
    await done;
  } finally {
    histogram.disable();
    overall.disable();
    await resolver.close();
    consul.postMessage('close');
    await once(consul, 'exit');
  }
  return {
    perAnswerMaxMs: summarize(perAnswer),
    perAnswerActiveMs: summarize(perAnswerActive),
    firstAnswerMaxMs,
    overallP99Ms: overall.percentile(99) / 1e6,
    overallMaxMs: overall.max / 1e6,
    answers: perAnswer.length,
  };
}

/**
 * The probe's own floor on this machine at this moment: the same histogram, reset at the same
 * pace, with no resolver at all. On a loaded machine its p99 is preemption, which the rows
 * above pay too.
 */
export async function measureIdleLoop(intervals: number, spacingMs: number, signal: AbortSignal): Promise<Summary> {
  forceGc();
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  const perInterval: number[] = [];
  histogram.enable();
  try {
    for (let i = 0; i < intervals && !signal.aborted; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, spacingMs));
      perInterval.push(histogram.max / 1e6);
      histogram.reset();
    }
  } finally {
    histogram.disable();
  }
  return summarize(perInterval);
}
