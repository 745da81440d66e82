/**
 * (2) Change propagation: from a health change written into the Consul dev server to the
 * resolver's subscribe callback with the new snapshot, at 10, 1,000 and 10,000 workers.
 *
 * - worker-resolver: `minPublishIntervalMs: 0` and a rate limit that never throttles
 *   (10,000/s, burst 10,000); the defaults (250 ms damping, 2 req/s) are there to protect
 *   Consul and would dominate the figure by design. Before each change the resolver's
 *   blocking query is parked in the server (steady state). Changes alternate: a worker's
 *   check goes critical (n−1 workers), then passing again (n); both directions count.
 * - floor: one non-blocking loopback request for the same answer over a keep-alive
 *   connection, then `JSON.parse` of the body — what any client of this server pays at least.
 * - pollers (1 s, 5 s): a change lands at a uniformly random phase of the poll interval,
 *   so latency = U(0, N) + one poll: p50 = N/2 + floor p50, p99 = 0.99·N + floor p99
 *   (computed, labelled so). One 1 s poller is also measured (random phase per change).
 */
import { Agent, get } from 'node:http';
import { createWorkerResolver } from '../src/index.js';
import type { DiscoveringWorkerResolver, ResolverObserver } from '../src/index.js';
import { PollingResolver } from './baselines.js';
import { HEALTH_QUERY, SERVICE, setHealth, startCluster } from './cluster.js';
import type { WorkerRef } from './cluster.js';
import type { ConsulDevServer } from '../src/testing/index.js';
import { profile, profileNotes } from './profile.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { pause, silentLogger, until } from './section.js';
import { elapsedMs, ratio, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { fmtInt, fmtMs, fmtRatio, goalCell } from './table.js';
import type { GoalCheck } from './table.js';

interface Plan {
  readonly sizes: readonly number[];
  readonly changes: number;
  readonly floorSamples: number;
  /** Per-size time cap of the resolver phase, ms (10,000 workers cost ~100+ ms per change). */
  readonly maxPhaseMs: number;
  /** Size at which the 1 s poller is also measured, and its number of changes. */
  readonly measuredPoller: { readonly changes: number; readonly intervalMs: number };
  readonly goalSize: number;
  readonly profileChanges: number;
}

const FULL: Plan = {
  sizes: [10, 1_000, 10_000],
  changes: 200,
  floorSamples: 200,
  maxPhaseMs: 90_000,
  measuredPoller: { changes: 20, intervalMs: 1_000 },
  goalSize: 1_000,
  profileChanges: 50,
};
const QUICK: Plan = {
  sizes: [10, 100],
  changes: 10,
  floorSamples: 10,
  maxPhaseMs: 5_000,
  measuredPoller: { changes: 2, intervalMs: 1_000 },
  goalSize: 1_000,
  profileChanges: 5,
};

/** Rate limit that never throttles a single resolver in these runs. */
export const UNTHROTTLED = { ratePerSecond: 10_000, burst: 10_000 } as const;

interface FloorResult {
  readonly total: Summary;
  readonly ttfb: Summary;
  readonly parse: Summary;
  readonly bodyBytes: number;
}

/** One non-blocking request + JSON.parse, timed: total, time to first byte, parse. */
function floorOnce(base: string, agent: Agent): Promise<{ total: number; ttfb: number; parse: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = get(`${base}/v1/health/service/${SERVICE}?${HEALTH_QUERY}`, { agent }, (res) => {
      const ttfb = elapsedMs(start);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const parseStart = process.hrtime.bigint();
        const parsed = JSON.parse(body.toString('utf8')) as unknown[];
        const parse = elapsedMs(parseStart);
        if (!Array.isArray(parsed)) reject(new Error('floor: unexpected body'));
        resolve({ total: elapsedMs(start), ttfb, parse, bytes: body.length });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function measureFloor(dev: ConsulDevServer, samples: number, signal: AbortSignal): Promise<FloorResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 3; i += 1) await floorOnce(dev.httpAddr, agent);
    const total: number[] = [];
    const ttfb: number[] = [];
    const parse: number[] = [];
    let bytes = 0;
    const end = Date.now() + 20_000;
    while (total.length < samples && (total.length < 5 || (Date.now() < end && !signal.aborted))) {
      const r = await floorOnce(dev.httpAddr, agent);
      total.push(r.total);
      ttfb.push(r.ttfb);
      parse.push(r.parse);
      bytes = r.bytes;
    }
    return { total: summarize(total), ttfb: summarize(ttfb), parse: summarize(parse), bodyBytes: bytes };
  } finally {
    agent.destroy();
  }
}

interface ResolverResult {
  readonly latency: Summary;
  /** Write → onRefresh: server work, transfer, parse + validate, URL building. */
  readonly toRefresh: Summary;
  /** onRefresh → subscribe callback: diff, snapshot, publish. */
  readonly refreshToPublish: Summary;
  readonly changes: number;
}

/** Times `changes` health changes end to end through a running resolver. */
async function measureResolver(
  dev: ConsulDevServer,
  workers: readonly WorkerRef[],
  changes: number,
  deadline: number,
  signal: AbortSignal,
): Promise<ResolverResult> {
  let refreshAt = 0n;
  const observer: ResolverObserver = {
    onRefresh(e) {
      if (e.outcome.ok && !e.outcome.unchanged) refreshAt = process.hrtime.bigint();
    },
  };
  const resolver = createWorkerResolver({
    service: SERVICE,
    consul: { address: dev.httpAddr, rateLimit: UNTHROTTLED },
    minPublishIntervalMs: 0,
    env: {},
    logger: silentLogger,
    observers: [observer],
  });
  try {
    await resolver.ready({ timeoutMs: 60_000 });
    const n = workers.length;
    if (resolver.getUrls().length !== n) throw new Error(`expected ${n} workers, got ${resolver.getUrls().length}`);
    const latency: number[] = [];
    const toRefresh: number[] = [];
    const refreshToPublish: number[] = [];
    for (let i = 0; i < changes && !signal.aborted && (i < 4 || Date.now() < deadline); i += 1) {
      const w = workers[Math.floor(i / 2) % n]!;
      const down = i % 2 === 0;
      await until(() => dev.openLongPolls() === 1, 'the resolver to park its blocking query', 30_000, 1);
      const { start, published, refreshed } = await changeAndWait(
        resolver,
        n - (down ? 1 : 0),
        () => {
          refreshAt = 0n;
          setHealth(dev, w, down ? 'critical' : 'passing');
        },
        () => refreshAt,
      );
      latency.push(Number(published - start) / 1e6);
      if (refreshed > 0n) {
        toRefresh.push(Number(refreshed - start) / 1e6);
        refreshToPublish.push(Number(published - refreshed) / 1e6);
      }
    }
    // A run cut short by the deadline may end between a worker's down and up: restore it.
    if (latency.length % 2 === 1) setHealth(dev, workers[Math.floor((latency.length - 1) / 2) % n]!, 'passing');
    return {
      latency: summarize(latency),
      toRefresh: summarize(toRefresh),
      refreshToPublish: summarize(refreshToPublish),
      changes: latency.length,
    };
  } finally {
    await resolver.close();
  }
}

/** Applies `write` and resolves when a snapshot with `expected` workers is published. */
export function changeAndWait(
  resolver: DiscoveringWorkerResolver,
  expected: number,
  write: () => void,
  refreshedAt: () => bigint,
): Promise<{ start: bigint; published: bigint; refreshed: bigint }> {
  return new Promise((resolve, reject) => {
    let start = 0n;
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no snapshot with ${expected} workers within 60 s`));
    }, 60_000);
    const unsubscribe = resolver.subscribe((s) => {
      const published = process.hrtime.bigint();
      if (s.urls.length !== expected) return;
      unsubscribe();
      clearTimeout(timer);
      resolve({ start, published, refreshed: refreshedAt() });
    });
    start = process.hrtime.bigint();
    write();
  });
}

/** A real 1 s poller: each change at a random phase of its interval. */
async function measurePoller(
  dev: ConsulDevServer,
  workers: readonly WorkerRef[],
  changes: number,
  intervalMs: number,
  signal: AbortSignal,
): Promise<Summary> {
  let onChange: ((urls: readonly URL[]) => void) | undefined;
  const poller = new PollingResolver({ consul: dev.httpAddr, intervalMs, onChange: (u) => onChange?.(u) });
  poller.start();
  try {
    const n = workers.length;
    await until(() => poller.getUrls().length === n, 'the poller to see every worker', 30_000, 5);
    const samples: number[] = [];
    for (let i = 0; i < changes && !signal.aborted; i += 1) {
      if (!(await pause(Math.random() * intervalMs, signal))) break;
      const w = workers[Math.floor(i / 2) % n]!;
      const down = i % 2 === 0;
      const expected = n - (down ? 1 : 0);
      let timer: NodeJS.Timeout | undefined;
      const seen = new Promise<number>((resolve, reject) => {
        onChange = (urls) => {
          if (urls.length === expected) resolve(elapsedMs(start));
        };
        timer = setTimeout(() => reject(new Error('the poller did not see a change within 30 s')), 30_000);
      });
      const start = process.hrtime.bigint();
      setHealth(dev, w, down ? 'critical' : 'passing');
      try {
        samples.push(await seen);
      } finally {
        clearTimeout(timer);
        onChange = undefined;
      }
    }
    // Leave the set complete for whoever runs next.
    if (samples.length % 2 === 1) setHealth(dev, workers[Math.floor((samples.length - 1) / 2) % n]!, 'passing');
    return summarize(samples);
  } finally {
    poller.stop();
  }
}

interface SizeResult {
  readonly workers: number;
  readonly floor: FloorResult;
  readonly resolver: ResolverResult;
  readonly poller?: Summary;
  readonly profile?: string[];
}

async function run(ctx: BenchContext): Promise<SectionOutput> {
  const plan = ctx.quick ? QUICK : FULL;
  const results: SizeResult[] = [];
  const pollerSize = plan.sizes.filter((s) => s <= plan.goalSize).at(-1);
  for (const size of plan.sizes) {
    if (ctx.signal.aborted) break;
    ctx.log(`propagation: ${fmtInt(size)} workers — floor`);
    const { dev, workers } = await startCluster(size);
    try {
      const floor = await measureFloor(dev, plan.floorSamples, ctx.signal);
      ctx.log(`propagation: ${fmtInt(size)} workers — ${plan.changes} changes through the resolver`);
      const resolver = await measureResolver(dev, workers, plan.changes, Date.now() + plan.maxPhaseMs, ctx.signal);
      let profileLines: string[] | undefined;
      if (ctx.profile && size === pollerSize) {
        ctx.log(`propagation: profiling ${plan.profileChanges} more changes (not counted)`);
        const { summary } = await profile(ctx.profileDir, `propagation-${size}`, () =>
          measureResolver(dev, workers, plan.profileChanges, Date.now() + plan.maxPhaseMs, ctx.signal),
        );
        profileLines = profileNotes(`propagation at ${fmtInt(size)} workers`, summary);
      }
      let poller: Summary | undefined;
      if (size === pollerSize) {
        ctx.log(`propagation: ${fmtInt(size)} workers — measured 1 s poller, ${plan.measuredPoller.changes} changes`);
        poller = await measurePoller(
          dev,
          workers,
          plan.measuredPoller.changes,
          plan.measuredPoller.intervalMs,
          ctx.signal,
        );
      }
      results.push({
        workers: size,
        floor,
        resolver,
        ...(poller === undefined ? {} : { poller }),
        ...(profileLines === undefined ? {} : { profile: profileLines }),
      });
    } finally {
      await dev.stop();
    }
  }

  const goals: GoalCheck[] = [];
  const rows: string[][] = [];
  /** The server of every row here; (2b), propagation-consul.ts, has the real agent's. */
  const DEV = 'dev server (test double)';
  for (const r of results) {
    const f = r.floor.total;
    const vsFloor = (s: Summary): string => fmtRatio(ratio(s.p50, f.p50));
    const n = fmtInt(r.workers);
    rows.push([n, DEV, 'floor: 1 request + JSON.parse', fmtMs(f.p50), fmtMs(f.p99), fmtInt(f.n), '1×', '—']);
    let goal: GoalCheck | undefined;
    if (r.workers === plan.goalSize) {
      goal = {
        goal: 'p99 ≤ 10 ms',
        met: r.resolver.latency.p99 <= 10,
        actual: `p99 ${fmtMs(r.resolver.latency.p99)} at ${n} workers (floor p99 ${fmtMs(f.p99)})`,
      };
      goals.push(goal);
    }
    const l = r.resolver.latency;
    rows.push([
      n,
      DEV,
      'worker-resolver (blocking query)',
      fmtMs(l.p50),
      fmtMs(l.p99),
      fmtInt(l.n),
      vsFloor(l),
      goalCell(goal),
    ]);
    for (const intervalMs of [1_000, 5_000]) {
      const p50 = intervalMs / 2 + f.p50;
      const p99 = 0.99 * intervalMs + f.p99;
      rows.push([
        n,
        DEV,
        `${intervalMs / 1000} s poller (computed)`,
        fmtMs(p50),
        fmtMs(p99),
        '—',
        fmtRatio(ratio(p50, f.p50)),
        '—',
      ]);
    }
    if (r.poller !== undefined) {
      const p = r.poller;
      rows.push([n, DEV, '1 s poller (measured)', fmtMs(p.p50), fmtMs(p.p99), fmtInt(p.n), vsFloor(p), '—']);
    }
  }
  const notes = [
    'Latency: dev-server state write → resolver subscribe callback with the new snapshot (same process, hrtime). ' +
      'Changes alternate critical/passing of one worker check; the blocking query is parked before each change.',
    'worker-resolver config: minPublishIntervalMs 0 and rateLimit 10,000/s burst 10,000 (defaults: 250 ms damping, ' +
      '2 req/s burst 10 — they bound Consul load and would add up to 250 ms here by design); stale reads, passing only.',
    'floor: one non-blocking GET of the same answer on a keep-alive loopback connection + JSON.parse of the body; ' +
      'it includes the dev server building and serializing the answer, as the resolver’s request does. The resolver ' +
      'can beat it at small sizes: its request is already parked in the server, only the answer half of a round trip is left.',
    'pollers (computed): a change lands at a uniform random phase: p50 = N/2 + floor p50, p99 = 0.99·N + floor p99. ' +
      '"measured": a real 1 s poller, each change at a random phase.',
    ...results.map(
      (r) =>
        `${fmtInt(r.workers)} workers: body ${(r.floor.bodyBytes / 1024).toFixed(0)} KiB; floor p50 = TTFB ${fmtMs(r.floor.ttfb.p50)} ` +
        `+ transfer/parse (JSON.parse ${fmtMs(r.floor.parse.p50)}); resolver p50 = write→refresh event ` +
        `${fmtMs(r.resolver.toRefresh.p50)} (request, parse, validate, URL build) + refresh→publish ` +
        `${fmtMs(r.resolver.refreshToPublish.p50)} (diff, snapshot, listeners)`,
    ),
    ...results.flatMap((r) => r.profile ?? []),
  ];
  return {
    tables: [
      {
        title: '2. Change propagation on the Consul dev server (health change → new snapshot published)',
        columns: ['workers', 'server', 'method', 'p50', 'p99', 'samples', 'p50 vs floor', 'goal'],
        rows,
        notes,
      },
    ],
    goals,
    data: {
      config: {
        minPublishIntervalMs: 0,
        rateLimit: UNTHROTTLED,
        consistency: 'stale',
        pollerFormula: 'p50 = N/2 + floor.p50; p99 = 0.99*N + floor.p99 (computed)',
      },
      results: results.map((r) => ({
        workers: r.workers,
        floorMs: r.floor.total,
        floorTtfbMs: r.floor.ttfb,
        floorParseMs: r.floor.parse,
        bodyBytes: r.floor.bodyBytes,
        resolverMs: r.resolver.latency,
        resolverWriteToRefreshMs: r.resolver.toRefresh,
        resolverRefreshToPublishMs: r.resolver.refreshToPublish,
        poller1sComputedMs: { p50: 500 + r.floor.total.p50, p99: 990 + r.floor.total.p99 },
        poller5sComputedMs: { p50: 2_500 + r.floor.total.p50, p99: 4_950 + r.floor.total.p99 },
        ...(r.poller === undefined ? {} : { poller1sMeasuredMs: r.poller }),
      })),
    },
  };
}

export const propagationBench: BenchSection = {
  id: 'propagation',
  title: 'Change propagation',
  budgetMs: { quick: 30_000, full: 600_000 },
  run,
};
