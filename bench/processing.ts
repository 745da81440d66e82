/**
 * (4) Processing cost of one 10,000-instance Consul health answer: parse + validate
 * (`parseHealthBody`), then the engine's work up to the publish (URL building, dedupe/sort,
 * diff, snapshot, listeners) — exactly what `ConsulSource` does after its HTTP response,
 * without the network. Time and heap growth.
 *
 * The two bodies are real dev-server answers (all 10,000 passing; one critical), fed
 * alternately so every iteration is a real change and publishes a new version.
 */
import { Agent } from 'node:http';
import { systemClock } from '../src/clock.js';
import { parseHealthBody } from '../src/consul-health.js';
import type { ConsulWorkerPolicy } from '../src/consul-health.js';
import { Engine } from '../src/engine.js';
import { buildWorkerSet, diffWorkers } from '../src/snapshot.js';
import type { Source, SourceSink } from '../src/source.js';
import { HEALTH_QUERY, SERVICE, httpGet, setHealth, startCluster } from './cluster.js';
import { measureAllocation } from './memory.js';
import type { Allocation } from './memory.js';
import { profile, profileNotes } from './profile.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { silentLogger } from './section.js';
import { elapsedMs, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { fmtBytes, fmtInt, fmtMs, goalCell } from './table.js';
import type { GoalCheck } from './table.js';

/** The resolver's default policy: passing only, `Service.Address`, http. */
const POLICY: ConsulWorkerPolicy = {
  taggedAddress: undefined,
  scheme: 'http',
  schemeMetaKey: undefined,
  includeWarning: false,
  metaMatch: undefined,
};

/** A source the benchmark drives by hand: it only hands the engine a sink. */
class HandSource implements Source {
  readonly kind = 'consul' as const;
  /** Set while started. */
  sink: SourceSink | undefined;
  start(sink: SourceSink): void {
    this.sink = sink;
  }
  stop(): Promise<void> {
    this.sink = undefined;
    return Promise.resolve();
  }
}

interface Plan {
  readonly workers: number;
  readonly iterations: number;
  readonly allocIterations: number;
}

/** The issue states the processing goals for this many instances. */
const GOAL_INSTANCES = 10_000;
const GOAL_ELSEWHERE = '(goal at 10,000)';

const FULL: Plan = { workers: GOAL_INSTANCES, iterations: 40, allocIterations: 5 };
const QUICK: Plan = { workers: 200, iterations: 4, allocIterations: 1 };

async function captureBodies(workers: number): Promise<{ all: Buffer; oneDown: Buffer }> {
  const { dev, workers: refs } = await startCluster(workers);
  const agent = new Agent({ keepAlive: true });
  try {
    const path = `/v1/health/service/${SERVICE}?${HEALTH_QUERY}`;
    const all = (await httpGet(dev.httpAddr, path, agent)).body;
    setHealth(dev, refs[0]!, 'critical');
    const oneDown = (await httpGet(dev.httpAddr, path, agent)).body;
    return { all, oneDown };
  } finally {
    agent.destroy();
    await dev.stop();
  }
}

/** One engine fed by hand, and a step that processes one body through it. */
function pipeline(): { step: (body: Buffer, index: number) => { parseMs: number; engineMs: number }; close(): void } {
  const source = new HandSource();
  const engine = new Engine({
    service: SERVICE,
    consul: source,
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
  let published = 0;
  engine.subscribe(() => (published += 1));
  engine.start();
  return {
    step(body, index) {
      const before = published;
      const t0 = process.hrtime.bigint();
      const parsed = parseHealthBody(body, POLICY);
      const parseMs = elapsedMs(t0);
      const t1 = process.hrtime.bigint();
      source.sink!.onOutcome({
        ok: true,
        source: 'consul',
        workers: parsed.workers,
        rejected: parsed.rejected,
        index,
        unchanged: false,
        durationMs: 1,
        blocking: true,
      });
      const engineMs = elapsedMs(t1);
      if (published !== before + 1) throw new Error('processing: the engine did not publish');
      return { parseMs, engineMs };
    },
    close() {
      void engine.close();
    },
  };
}

interface Result {
  readonly workers: number;
  readonly bodyBytes: number;
  readonly total: Summary;
  readonly parse: Summary;
  readonly engine: Summary;
  readonly jsonParse: Summary;
  readonly buildWorkerSet: Summary;
  readonly diff: Summary;
  readonly allocation: Allocation;
}

async function run(ctx: BenchContext): Promise<SectionOutput> {
  const plan = ctx.quick ? QUICK : FULL;
  ctx.log(`processing: capturing ${fmtInt(plan.workers)}-instance health answers from the dev server`);
  const bodies = await captureBodies(plan.workers);
  // Alternate the two answers across every step (warm-up, measured, heap, profile): each one is a change.
  let flips = 0;
  const body = (): Buffer => (flips++ % 2 === 0 ? bodies.oneDown : bodies.all);

  const p = pipeline();
  let index = 10;
  p.step(bodies.all, index++); // first publish, not measured
  for (let i = 0; i < 3; i += 1) p.step(body(), index++); // warm-up
  const total: number[] = [];
  const parse: number[] = [];
  const engine: number[] = [];
  ctx.log(`processing: ${plan.iterations} iterations`);
  for (let i = 0; i < plan.iterations && !ctx.signal.aborted; i += 1) {
    const r = p.step(body(), index++);
    total.push(r.parseMs + r.engineMs);
    parse.push(r.parseMs);
    engine.push(r.engineMs);
  }
  // Heap: allocation of one whole step (forced GC before; collected bytes counted).
  let allocation: Allocation | undefined;
  for (let i = 0; i < plan.allocIterations; i += 1) {
    const a = measureAllocation(() => p.step(body(), index++));
    if (allocation === undefined || a.peakGrowthBytes > allocation.peakGrowthBytes) allocation = a;
  }

  // Breakdown of the parts, measured on their own.
  const jsonParse: number[] = [];
  const build: number[] = [];
  const diff: number[] = [];
  const setA = buildWorkerSet(parseHealthBody(bodies.all, POLICY).workers).workers;
  const setB = buildWorkerSet(parseHealthBody(bodies.oneDown, POLICY).workers).workers;
  const candidates = parseHealthBody(bodies.all, POLICY).workers;
  for (let i = 0; i < Math.max(3, Math.floor(plan.iterations / 4)); i += 1) {
    let t = process.hrtime.bigint();
    JSON.parse(bodies.all.toString('utf8'));
    jsonParse.push(elapsedMs(t));
    t = process.hrtime.bigint();
    buildWorkerSet(candidates);
    build.push(elapsedMs(t));
    t = process.hrtime.bigint();
    diffWorkers(setA, setB);
    diff.push(elapsedMs(t));
  }

  let profileLines: string[] = [];
  if (ctx.profile) {
    ctx.log('processing: profiling 10 more iterations');
    const { summary } = await profile(ctx.profileDir, 'processing', () => {
      for (let i = 0; i < 10; i += 1) p.step(body(), index++);
      return Promise.resolve();
    });
    profileLines = profileNotes(`processing of ${fmtInt(plan.workers)} instances`, summary);
  }
  p.close();

  const result: Result = {
    workers: plan.workers,
    bodyBytes: bodies.all.length,
    total: summarize(total),
    parse: summarize(parse),
    engine: summarize(engine),
    jsonParse: summarize(jsonParse),
    buildWorkerSet: summarize(build),
    diff: summarize(diff),
    allocation: allocation!,
  };
  const atGoalSize = plan.workers === GOAL_INSTANCES;
  const timeGoal: GoalCheck = {
    goal: '≤ 50 ms',
    met: result.total.p99 <= 50,
    actual: `p50 ${fmtMs(result.total.p50)}, p99 ${fmtMs(result.total.p99)} for ${fmtInt(plan.workers)} instances`,
  };
  const heapGoal: GoalCheck = {
    goal: '≤ 100 MB',
    met: result.allocation.peakGrowthBytes <= 100e6,
    actual: `peak heap growth ${fmtBytes(result.allocation.peakGrowthBytes)}`,
  };
  const n = fmtInt(plan.workers);
  const rows: string[][] = [
    [
      n,
      'total: parse + validate + build + diff + publish',
      fmtMs(result.total.p50),
      fmtMs(result.total.p99),
      atGoalSize ? goalCell(timeGoal) : GOAL_ELSEWHERE,
    ],
    [n, '↳ parseHealthBody (JSON.parse + validate)', fmtMs(result.parse.p50), fmtMs(result.parse.p99), '—'],
    [n, '  ↳ of which JSON.parse alone', fmtMs(result.jsonParse.p50), fmtMs(result.jsonParse.p99), '—'],
    [n, '↳ engine (URLs, sort, diff ×2, snapshot, publish)', fmtMs(result.engine.p50), fmtMs(result.engine.p99), '—'],
    [n, '  ↳ of which buildWorkerSet alone', fmtMs(result.buildWorkerSet.p50), fmtMs(result.buildWorkerSet.p99), '—'],
    [n, '  ↳ of which one diffWorkers alone', fmtMs(result.diff.p50), fmtMs(result.diff.p99), '—'],
  ];
  const heapRows: string[][] = [
    [
      n,
      'peak heap growth during one processing',
      fmtBytes(result.allocation.peakGrowthBytes),
      atGoalSize ? goalCell(heapGoal) : GOAL_ELSEWHERE,
    ],
    [n, 'bytes allocated (collected or not)', fmtBytes(result.allocation.allocatedBytes), '—'],
    [n, 'retained after GC (new snapshot − old)', fmtBytes(result.allocation.retainedBytes), '—'],
  ];
  return {
    tables: [
      {
        title: `4. Processing cost of one ${n}-instance health answer (${(result.bodyBytes / 1024 / 1024).toFixed(1)} MiB)`,
        columns: ['instances', 'step', 'p50', 'p99', 'goal'],
        rows,
        notes: [
          'In-process, no network: the body bytes of a real dev-server answer → parseHealthBody → the engine ' +
            '(through the same sink ConsulSource uses) → published snapshot. Bodies alternate (all passing / one ' +
            'critical) so each iteration publishes.',
          `${result.total.n} iterations after 3 warm-up ones.`,
        ],
      },
      {
        title: '4b. Heap during that processing',
        columns: ['instances', 'measure', 'bytes', 'goal'],
        rows: heapRows,
        notes: [
          'v8.GCProfiler around one step after a forced GC (worst of ' +
            `${plan.allocIterations}): peak = largest used heap seen (at a GC or the end) − used heap before. The body ` +
            'Buffer itself is off-heap and not counted; its UTF-8 string is.',
          ...profileLines,
        ],
      },
    ],
    // The goals are stated for 10,000 instances; the smoke size does not judge them.
    goals: atGoalSize ? [timeGoal, heapGoal] : [],
    data: {
      workers: result.workers,
      bodyBytes: result.bodyBytes,
      totalMs: result.total,
      parseHealthBodyMs: result.parse,
      engineMs: result.engine,
      jsonParseMs: result.jsonParse,
      buildWorkerSetMs: result.buildWorkerSet,
      diffWorkersMs: result.diff,
      heap: result.allocation,
    },
  };
}

export const processingBench: BenchSection = {
  id: 'processing',
  title: 'Processing cost',
  budgetMs: { quick: 20_000, full: 120_000 },
  run,
};
