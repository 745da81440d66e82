/**
 * (2b) Change propagation against a REAL Consul agent (`consul agent -dev`, the binary the
 * test harness runs: `test/helpers/consul-agent.ts`), at 10, 1,000 and 10,000 instances:
 * from a health change sent to the agent's HTTP API to the resolver's subscribe callback
 * with the new snapshot, next to that agent's own floor.
 *
 * - The change: `PUT /v1/agent/check/fail|pass/service:<id>` on a TTL check, alternating
 *   (n−1 passing, then n again). The clock starts when the PUT is sent, so the agent's
 *   local update, its anti-entropy sync to the catalog (Raft, in memory with -dev), the
 *   wake-up of blocking queries and the answer are all inside the figure.
 * - floor: a raw blocking query of the same answer (`/v1/health/service/worker?passing=1&stale=
 *   &index=N&wait=60s` on a keep-alive loopback connection) parked before the same change,
 *   then `JSON.parse` of its body — what any blocking-query client of this agent pays at least.
 * - worker-resolver: defaults except `minPublishIntervalMs: 0` and a rate limit that never
 *   throttles, as in (2) — so `readInThread: 'auto'`: answers of 1 MiB and more (1,000
 *   instances and up here) are read in its worker thread. Each change is sent a settle time
 *   after the previous publish, time for its next blocking query (sent at once, unthrottled)
 *   to be out and parked in the agent, the same time the floor's query is given.
 *
 * Instances: see `consul-agent-cluster.ts` — the ones whose health changes are agent
 * services with TTL checks, the rest catalog nodes — registered with bounded concurrency;
 * the set grows between sizes (10 → 1,000 → 10,000) on one agent.
 *
 * Without the Consul binary the family does not run, and says so loudly (in the report, in
 * the Goals table and on stderr) instead of vanishing.
 */
import { Agent } from 'node:http';
import os from 'node:os';
import { createWorkerResolver } from '../src/index.js';
import { ConsulAgent, consulBinaryPath, consulVersion } from '../test/helpers/consul-agent.js';
import { SERVICE } from './cluster.js';
import {
  AGENT_INSTANCES,
  HEALTH_PATH,
  call,
  ok,
  registerInstances,
  setTtl,
  waitForPassing,
} from './consul-agent-cluster.js';
import type { Answer } from './consul-agent-cluster.js';
import type { WorkerRef } from './cluster.js';
import { changeAndWait, UNTHROTTLED } from './propagation.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { pause, silentLogger } from './section.js';
import { elapsedMs, ratio, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { fmtBytes, fmtInt, fmtMs, fmtRatio } from './table.js';

interface Plan {
  readonly sizes: readonly number[];
  /** Changes timed per size and method (floor, resolver). */
  readonly changes: (size: number) => number;
  /** Per-phase cap, ms: a phase stops taking samples after this (at least 4 are taken). */
  readonly maxPhaseMs: number;
  /** Parallel registrations in flight. */
  readonly concurrency: number;
}

const FULL: Plan = {
  sizes: [10, 1_000, 10_000],
  changes: (size) => (size >= 10_000 ? 40 : 100),
  maxPhaseMs: 90_000,
  concurrency: 32,
};
const QUICK: Plan = { sizes: [10], changes: () => 6, maxPhaseMs: 10_000, concurrency: 8 };

/** How long a blocking query is given to be sent and park in the agent before the change (not measured). */
function settleMs(size: number): number {
  return 30 + Math.ceil(size / 50);
}

/** Floor: a raw blocking query parked, the change, the answer parsed. */
async function measureFloor(
  consul: ConsulAgent,
  workers: readonly WorkerRef[],
  changes: number,
  deadline: number,
  signal: AbortSignal,
): Promise<{ latency: Summary; received: Summary; bodyBytes: number }> {
  const watch = new Agent({ keepAlive: true, maxSockets: 1 });
  const writer = new Agent({ keepAlive: true, maxSockets: 1 });
  const n = workers.length;
  const flipped = Math.min(n, AGENT_INSTANCES);
  const samples: number[] = [];
  const received: number[] = [];
  let bodyBytes = 0;
  try {
    let index = (await ok(call(consul.httpAddr, 'GET', HEALTH_PATH, watch), 'health')).index;
    for (let i = 0; i < changes && !signal.aborted && (i < 4 || Date.now() < deadline); i += 1) {
      const w = workers[Math.floor(i / 2) % flipped] as WorkerRef;
      const down = i % 2 === 0;
      const expected = n - (down ? 1 : 0);
      let sent!: () => void;
      const parkedSent = new Promise<void>((resolve) => (sent = resolve));
      const blocking = (): Promise<Answer> =>
        ok(call(consul.httpAddr, 'GET', `${HEALTH_PATH}&index=${index}&wait=60s`, watch, { onSent: sent }), 'floor');
      let answer = blocking();
      await parkedSent;
      await pause(settleMs(n));
      const start = process.hrtime.bigint();
      const written = setTtl(consul, w, down, writer);
      for (;;) {
        const a = await answer;
        const receivedMs = elapsedMs(start);
        index = a.index;
        const parsed = JSON.parse(a.body.toString('utf8')) as unknown[];
        if (parsed.length === expected) {
          samples.push(elapsedMs(start));
          received.push(receivedMs);
          bodyBytes = a.body.length;
          break;
        }
        // An answer without our change (an unrelated index move): keep waiting, the clock runs.
        answer = blocking();
      }
      await written;
    }
    // A run cut short between a down and an up: restore that instance.
    if (samples.length % 2 === 1)
      await setTtl(consul, workers[Math.floor((samples.length - 1) / 2) % flipped]!, false, writer);
    return { latency: summarize(samples), received: summarize(received), bodyBytes };
  } finally {
    watch.destroy();
    writer.destroy();
  }
}

/** worker-resolver: the same changes, each timed to the published snapshot. */
async function measureResolver(
  consul: ConsulAgent,
  workers: readonly WorkerRef[],
  changes: number,
  deadline: number,
  signal: AbortSignal,
): Promise<Summary> {
  const writer = new Agent({ keepAlive: true, maxSockets: 1 });
  const resolver = createWorkerResolver({
    service: SERVICE,
    consul: { address: consul.httpAddr, rateLimit: UNTHROTTLED },
    minPublishIntervalMs: 0,
    env: {},
    logger: silentLogger,
  });
  const n = workers.length;
  const flipped = Math.min(n, AGENT_INSTANCES);
  const samples: number[] = [];
  try {
    await resolver.ready({ timeoutMs: 120_000 });
    if (resolver.getUrls().length !== n) throw new Error(`expected ${n} workers, got ${resolver.getUrls().length}`);
    await pause(settleMs(n));
    for (let i = 0; i < changes && !signal.aborted && (i < 4 || Date.now() < deadline); i += 1) {
      const w = workers[Math.floor(i / 2) % flipped] as WorkerRef;
      const down = i % 2 === 0;
      let written: Promise<Answer> | undefined;
      const { start, published } = await changeAndWait(
        resolver,
        n - (down ? 1 : 0),
        () => {
          written = setTtl(consul, w, down, writer);
        },
        () => 0n,
      );
      samples.push(Number(published - start) / 1e6);
      await written;
      // Its next blocking query goes out right after the publish (unthrottled), from this thread or
      // from its reader thread (`readInThread`), where no channel of this thread sees it: give it
      // time to be sent and parked, as the floor's query is given.
      await pause(settleMs(n));
    }
    if (samples.length % 2 === 1)
      await setTtl(consul, workers[Math.floor((samples.length - 1) / 2) % flipped]!, false, writer);
    return summarize(samples);
  } finally {
    await resolver.close();
    writer.destroy();
  }
}

interface SizeResult {
  readonly workers: number;
  readonly registerMs: number;
  readonly bodyBytes: number;
  readonly floor: Summary;
  /** The floor's answer fully received, before JSON.parse: the agent's own part. */
  readonly received: Summary;
  readonly resolver: Summary;
  readonly loadAverage: readonly number[];
}

async function run(ctx: BenchContext): Promise<SectionOutput> {
  let binary: string;
  try {
    binary = consulBinaryPath();
  } catch (err) {
    const why = (err as Error).message;
    ctx.log(`!!! propagation-consul DID NOT RUN: ${why}`);
    return {
      tables: [],
      goals: [],
      skipped: `NO CONSUL BINARY — the real-agent rows are missing. ${why}`,
      data: { binary: null, reason: why },
    };
  }
  const version = consulVersion();
  const server = `Consul ${version.replace(/^v/, '')} (agent -dev)`;
  const plan = ctx.quick ? QUICK : FULL;
  const results: SizeResult[] = [];
  ctx.log(`propagation-consul: starting ${binary} -dev`);
  const consul = await ConsulAgent.start({
    // Quieter logs (10,000 "Synced service" lines otherwise); output changes synced at once.
    config: { log_level: 'WARN', check_update_interval: '0s' },
    startTimeoutMs: 120_000,
  });
  // Ctrl-C during the family must not leave the agent running: stop it, then exit as killed.
  const onSignal = (signal: NodeJS.Signals): void => {
    void consul.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let workers: WorkerRef[] = [];
    for (const size of plan.sizes) {
      if (ctx.signal.aborted) break;
      ctx.log(
        `propagation-consul: registering ${fmtInt(size - workers.length)} more instances (${plan.concurrency} at a time)`,
      );
      const regStart = process.hrtime.bigint();
      try {
        workers = [
          ...workers,
          ...(await registerInstances(consul, workers.length, size, plan.concurrency, ctx.signal)),
        ];
        await waitForPassing(consul, size, 300_000, ctx.signal);
      } catch (err) {
        // The budget ran out while registering: report the sizes already measured.
        if (!ctx.signal.aborted) throw err;
        ctx.log(`propagation-consul: time budget over while registering ${fmtInt(size)} instances; stopping`);
        break;
      }
      const registerMs = elapsedMs(regStart);
      const changes = plan.changes(size);
      ctx.log(`propagation-consul: ${fmtInt(size)} instances — floor, ${changes} changes`);
      const floor = await measureFloor(consul, workers, changes, Date.now() + plan.maxPhaseMs, ctx.signal);
      ctx.log(`propagation-consul: ${fmtInt(size)} instances — worker-resolver, ${changes} changes`);
      const resolver = await measureResolver(consul, workers, changes, Date.now() + plan.maxPhaseMs, ctx.signal);
      results.push({
        workers: size,
        registerMs,
        bodyBytes: floor.bodyBytes,
        floor: floor.latency,
        received: floor.received,
        resolver,
        loadAverage: os.loadavg(),
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await consul.stop();
  }

  const rows: string[][] = [];
  for (const r of results) {
    const n = fmtInt(r.workers);
    const f = r.floor;
    const l = r.resolver;
    rows.push([
      n,
      server,
      'floor: raw blocking query + JSON.parse',
      fmtMs(f.p50),
      fmtMs(f.p99),
      fmtInt(f.n),
      '1×',
      '1×',
    ]);
    rows.push([
      n,
      server,
      '  of which: answer received, before parse',
      fmtMs(r.received.p50),
      fmtMs(r.received.p99),
      fmtInt(r.received.n),
      fmtRatio(ratio(r.received.p50, f.p50)),
      fmtRatio(ratio(r.received.p99, f.p99)),
    ]);
    rows.push([
      n,
      server,
      'worker-resolver (blocking query)',
      fmtMs(l.p50),
      fmtMs(l.p99),
      fmtInt(l.n),
      fmtRatio(ratio(l.p50, f.p50)),
      fmtRatio(ratio(l.p99, f.p99)),
    ]);
  }
  const notes = [
    `Server: a real ${server} started for this family on loopback (test/helpers/consul-agent.ts), ` +
      `check_update_interval 0s. The ${AGENT_INSTANCES} instances whose health changes are registered through the agent API ` +
      'with a TTL check; the others through the catalog, one node each (10,000 agent registrations take quadratic time).',
    'Latency: PUT /v1/agent/check/fail|pass sent → parsed answer (floor) / subscribe callback with the new snapshot ' +
      "(worker-resolver); the agent's sync to its catalog is inside both. Changes alternate fail/pass of one instance.",
    'floor: one raw blocking query of the same answer (passing, stale, index, wait 60s) parked on a keep-alive loopback ' +
      'connection before the change, then JSON.parse; "answer received" is the same clock stopped at its last byte ' +
      "(the agent's sync, query, encoding and loopback transfer). worker-resolver: minPublishIntervalMs 0, rate limit " +
      "10,000/s, otherwise defaults (readInThread 'auto': answers of 1 MiB and more — 1,000 instances and up — are " +
      'read in its worker thread). It can beat the floor: it parses only the entries whose bytes changed since its previous answer ' +
      '(src/consul/health-incremental.ts), where the floor parses the whole body.',
    ...results.map(
      (r) =>
        `${fmtInt(r.workers)} instances: answer ${fmtBytes(r.bodyBytes)}; registration + catalog sync ` +
        `${fmtMs(r.registerMs)}; load average after: ${r.loadAverage.map((x) => x.toFixed(2)).join(' ')}`,
    ),
  ];
  return {
    tables: [
      {
        title: '2b. Change propagation against a real Consul agent (health change via its HTTP API → new snapshot)',
        columns: ['workers', 'server', 'method', 'p50', 'p99', 'samples', 'p50 vs floor', 'p99 vs floor'],
        rows,
        notes,
      },
    ],
    goals: [],
    data: {
      server,
      binary,
      config: { minPublishIntervalMs: 0, rateLimit: UNTHROTTLED, consistency: 'stale', concurrency: plan.concurrency },
      results: results.map((r) => ({
        workers: r.workers,
        registerMs: r.registerMs,
        bodyBytes: r.bodyBytes,
        floorMs: r.floor,
        floorReceivedMs: r.received,
        resolverMs: r.resolver,
        loadAverage: r.loadAverage,
      })),
    },
  };
}

export const propagationConsulBench: BenchSection = {
  id: 'propagation-consul',
  title: 'Change propagation against a real Consul agent',
  budgetMs: { quick: 60_000, full: 900_000 },
  run,
};
