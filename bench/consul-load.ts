/**
 * (5) Consul load: health requests per minute that one resolver sends, in steady state and
 * during a burst of changes, next to a 5 s poller.
 *
 * Each subject gets its own dev server holding the same workers (so request counts are not
 * mixed); a burst applies the same check flips to every server at 20 changes/s. Counts come
 * from the dev server's request log (`GET /v1/health/service/...`), over a fixed window that
 * starts once each subject has its first answer.
 */
import { createWorkerResolver } from '../src/index.js';
import type { DiscoveringWorkerResolver, WorkerResolverOptions } from '../src/index.js';
import type { ConsulDevServer } from '../src/testing/index.js';
import { PollingResolver } from './baselines.js';
import { SERVICE, setHealth, startCluster } from './cluster.js';
import type { WorkerRef } from './cluster.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { pause, silentLogger, until } from './section.js';
import { ratio } from './stats.js';
import { fmtInt, fmtRate, fmtRatio } from './table.js';

interface Plan {
  readonly workers: number;
  readonly windowMs: number;
  readonly burstPerSecond: number;
}

const FULL: Plan = { workers: 100, windowMs: 30_000, burstPerSecond: 20 };
const QUICK: Plan = { workers: 10, windowMs: 1_500, burstPerSecond: 20 };

const HEALTH_PATH = `/v1/health/service/${SERVICE}`;

type Subject =
  | { readonly kind: 'resolver'; readonly label: string; readonly options: Partial<WorkerResolverOptions> }
  | { readonly kind: 'poller'; readonly label: string; readonly intervalMs: number };

interface Measured {
  readonly label: string;
  readonly requests: number;
  readonly perMinute: number;
  readonly publishes: number;
}

interface Running {
  readonly subject: Subject;
  readonly dev: ConsulDevServer;
  readonly workers: WorkerRef[];
  readonly publishes: () => number;
  readonly stop: () => Promise<void>;
}

async function startSubject(subject: Subject, workers: number): Promise<Running> {
  const cluster = await startCluster(workers);
  const { dev } = cluster;
  if (subject.kind === 'resolver') {
    const resolver: DiscoveringWorkerResolver = createWorkerResolver({
      service: SERVICE,
      ...subject.options,
      consul: { address: dev.httpAddr, ...subject.options.consul },
      env: {},
      logger: silentLogger,
    });
    let publishes = 0;
    resolver.subscribe(() => (publishes += 1));
    await resolver.ready({ timeoutMs: 30_000 });
    await until(() => dev.openLongPolls() === 1, 'the resolver to park its blocking query', 30_000, 5);
    return {
      subject,
      dev,
      workers: cluster.workers,
      publishes: () => publishes,
      stop: async () => {
        await resolver.close();
        await dev.stop();
      },
    };
  }
  let publishes = 0;
  const poller = new PollingResolver({
    consul: dev.httpAddr,
    intervalMs: subject.intervalMs,
    onChange: () => (publishes += 1),
  });
  poller.start();
  await until(() => poller.getUrls().length === workers, 'the poller’s first answer', 30_000, 5);
  return {
    subject,
    dev,
    workers: cluster.workers,
    publishes: () => publishes,
    stop: async () => {
      poller.stop();
      await dev.stop();
    },
  };
}

/** Runs subjects side by side for one window, optionally with a burst of changes; counts their requests. */
async function scenario(
  subjects: readonly Subject[],
  plan: Plan,
  burst: boolean,
  signal: AbortSignal,
): Promise<Measured[]> {
  const running: Running[] = [];
  try {
    for (const s of subjects) running.push(await startSubject(s, plan.workers));
    const before = running.map((r) => ({ requests: r.dev.requestCount(HEALTH_PATH), publishes: r.publishes() }));
    const started = Date.now();
    if (burst) {
      const gap = 1000 / plan.burstPerSecond;
      let i = 0;
      while (Date.now() - started < plan.windowMs && !signal.aborted) {
        const down = i % 2 === 0;
        for (const r of running)
          setHealth(r.dev, r.workers[Math.floor(i / 2) % plan.workers]!, down ? 'critical' : 'passing');
        i += 1;
        await pause(gap, signal);
      }
      if (i % 2 === 1)
        for (const r of running) setHealth(r.dev, r.workers[Math.floor((i - 1) / 2) % plan.workers]!, 'passing');
    } else {
      await pause(plan.windowMs, signal);
    }
    const elapsed = Date.now() - started;
    return running.map((r, j) => {
      const requests = r.dev.requestCount(HEALTH_PATH) - before[j]!.requests;
      return {
        label: r.subject.label,
        requests,
        perMinute: (requests / elapsed) * 60_000,
        publishes: r.publishes() - before[j]!.publishes,
      };
    });
  } finally {
    for (const r of running) await r.stop();
  }
}

async function run(ctx: BenchContext): Promise<SectionOutput> {
  const plan = ctx.quick ? QUICK : FULL;
  const poller: Subject = { kind: 'poller', label: '5 s poller', intervalMs: 5_000 };
  const defaults: Subject = { kind: 'resolver', label: 'worker-resolver (defaults)', options: {} };
  const shortWait: Subject = {
    kind: 'resolver',
    label: 'worker-resolver (wait 2 s)',
    options: { consul: { waitMs: 2_000 } },
  };
  const unthrottled: Subject = {
    kind: 'resolver',
    label: 'worker-resolver (no damping, unthrottled)',
    options: { minPublishIntervalMs: 0, consul: { rateLimit: { ratePerSecond: 10_000, burst: 10_000 } } },
  };
  const window = `${(plan.windowMs / 1000).toFixed(1)} s`;
  ctx.log(`consul-load: steady state, ${window} window`);
  const steady = await scenario([defaults, poller, shortWait], plan, false, ctx.signal);
  ctx.log(`consul-load: burst of ${plan.burstPerSecond} changes/s, ${window} window`);
  const burst = await scenario([defaults, poller, unthrottled], plan, true, ctx.signal);

  const pollerSteady = steady.find((m) => m.label === poller.label)!;
  const pollerBurst = burst.find((m) => m.label === poller.label)!;
  const rows: string[][] = [];
  const changes = Math.round((plan.burstPerSecond * plan.windowMs) / 1000);
  const add = (phase: string, m: Measured, base: Measured, extra = ''): void => {
    rows.push([
      phase,
      m.label,
      fmtInt(m.requests),
      fmtRate(m.perMinute, '/min'),
      fmtInt(m.publishes),
      m === base ? '1×' : fmtRatio(ratio(m.perMinute, base.perMinute)),
      extra,
    ]);
  };
  for (const m of steady) {
    const derived = m.label === defaults.label ? 'derived: 1 per 5 m wait = 0.2/min' : '';
    add('steady (no changes)', m, pollerSteady, derived);
  }
  for (const m of burst) add(`burst (~${fmtInt(changes)} changes)`, m, pollerBurst);
  return {
    tables: [
      {
        title: `5. Consul load per resolver (${fmtInt(plan.workers)} workers, ${window} windows)`,
        columns: ['phase', 'client', 'requests', 'rate', 'publishes', 'vs 5 s poller', 'note'],
        rows,
        notes: [
          'requests = GET /v1/health/service/worker received by the dev server during the window (after the first answer).',
          'defaults: blocking wait 5 m, token bucket 2 req/s burst 10, minPublishIntervalMs 250. In steady state a ' +
            'parked blocking query costs one request per wait (+ up to wait/16 jitter) — a window shorter than the wait ' +
            'sees none, hence the derived figure; "wait 2 s" checks the one-request-per-wait rule by measurement.',
          `burst: one check flips every ${1000 / plan.burstPerSecond} ms on each subject’s own dev server; the token ` +
            'bucket bounds the defaults at ≈ 2 req/s after its burst of 10; the unthrottled configuration (used for ' +
            'the propagation figures) sends one request per change.',
          'publishes = snapshots (or poller set changes) seen during the window: the freshness bought with those requests.',
        ],
      },
    ],
    goals: [],
    data: {
      workers: plan.workers,
      windowMs: plan.windowMs,
      burstChangesPerSecond: plan.burstPerSecond,
      steady,
      burst,
      derivedSteadyDefaultPerMinute: 0.2,
    },
  };
}

export const consulLoadBench: BenchSection = {
  id: 'consul-load',
  title: 'Consul load',
  budgetMs: { quick: 20_000, full: 180_000 },
  run,
};
