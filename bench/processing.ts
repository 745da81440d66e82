/**
 * (4) Processing cost of one 10,000-instance Consul health answer: what `ConsulSource` does
 * after its HTTP response, without the network — the body compared with the last one
 * (`IncrementalHealthParser`: a byte-identical body is `unchanged`; otherwise only the entries
 * whose bytes changed are parsed and validated), then the engine's work up to the publish
 * (incremental build, diff, snapshot, listeners). Time and heap growth, next to `JSON.parse`
 * of the same body and to the candidates measured for 10,000-worker answers (the whole-body parse it
 * replaced; a parse worker thread's main-thread share).
 *
 * The two bodies are real dev-server answers (all 10,000 passing; one critical), fed
 * alternately so every iteration is a real change and publishes a new version.
 *
 * (4c) Event-loop blocking per processed answer at 1,000 and 10,000 instances, through the
 * real HTTP path (`event-loop.ts`).
 */
import { Agent } from 'node:http';
import v8 from 'node:v8';
import { IncrementalHealthParser } from '../src/consul/health-incremental.js';
import { THREAD_THRESHOLD_BYTES } from '../src/consul/source.js';
import { parseHealthBody } from '../src/consul/health.js';
import type { ConsulWorkerPolicy, ParsedHealth } from '../src/consul/health.js';
import { diffWorkers } from '../src/worker-diff.js';
import { buildWorkerSet } from '../src/worker-set.js';
import type { Source, SourceSink } from '../src/source.js';
import { HEALTH_QUERY, SERVICE, httpGet, setHealth, startCluster } from './cluster.js';
import { benchEngine, measureEventLoop, measureIdleLoop } from './event-loop.js';
import type { EventLoopResult } from './event-loop.js';
import { measureAllocation } from './memory.js';
import type { Allocation } from './memory.js';
import { profile, profileNotes } from './profile.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { elapsedMs, ratio, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { fmtBytes, fmtInt, fmtMs, fmtRatio, goalCell } from './table.js';
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
  /** Event-loop runs: instances → published answers measured. */
  readonly eventLoop: readonly { readonly workers: number; readonly answers: number }[];
  readonly spacingMs: number;
}

/** The issue states the processing goals for this many instances. */
const GOAL_INSTANCES = 10_000;
const GOAL_ELSEWHERE = '(goal at 10,000)';

const FULL: Plan = {
  workers: GOAL_INSTANCES,
  iterations: 40,
  allocIterations: 5,
  eventLoop: [
    { workers: 1_000, answers: 100 },
    // Enough answers that p99 is not simply the maximum of a handful.
    { workers: GOAL_INSTANCES, answers: 120 },
  ],
  spacingMs: 100,
};
const QUICK: Plan = {
  workers: 200,
  iterations: 4,
  allocIterations: 1,
  eventLoop: [{ workers: 200, answers: 3 }],
  spacingMs: 20,
};

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

/** The Consul source's reader in an event-loop run: `readInThread` false, true, or 'auto' (the default). */
type Reader = 'in-thread' | 'thread' | 'auto';

/** How a pipeline reads a body: the resolver's way (#13), or the whole-body parse it replaced. */
type Reading = 'incremental' | 'whole';

interface Step {
  readonly parseMs: number;
  readonly engineMs: number;
  /** Process CPU time (user + system) of the whole step: what preemption on a loaded machine does not inflate. */
  readonly cpuMs: number;
  readonly published: boolean;
  /** True when the engine published in the turn it got the answer (false: a full build in turns, #13b). */
  readonly inOneTurn: boolean;
}

/** One engine fed by hand, and a step that processes one body through it as `ConsulSource` does. */
function pipeline(reading: Reading): { step: (body: Buffer, index: number) => Promise<Step>; close(): void } {
  const source = new HandSource();
  const engine = benchEngine(source);
  let published = 0;
  engine.subscribe(() => (published += 1));
  engine.start();
  const parser = new IncrementalHealthParser(POLICY);
  return {
    async step(body, index) {
      const before = published;
      const cpu = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const same = reading === 'incremental' && parser.isLastBody(body);
      let parsed: ParsedHealth | undefined;
      if (!same) parsed = reading === 'incremental' ? parser.parse(body) : parseHealthBody(body, POLICY);
      const parseMs = elapsedMs(t0);
      const t1 = process.hrtime.bigint();
      source.sink!.onOutcome({
        ok: true,
        source: 'consul',
        workers: parsed?.workers ?? [],
        rejected: parsed?.rejected ?? 0,
        index,
        unchanged: same,
        durationMs: 1,
        blocking: true,
      });
      const inOneTurn = published === before + 1;
      // A large full build runs in event-loop turns: a changed answer is processed once it is published.
      while (!same && published === before) await new Promise((resolve) => setImmediate(resolve));
      const engineMs = elapsedMs(t1);
      const used = process.cpuUsage(cpu);
      return {
        parseMs,
        engineMs,
        cpuMs: (used.user + used.system) / 1000,
        published: published === before + 1,
        inOneTurn,
      };
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
  readonly totalCpu: Summary;
  readonly sameCpu: Summary;
  readonly parse: Summary;
  readonly engine: Summary;
  readonly same: Summary;
  readonly first: Summary;
  readonly whole: Summary;
  readonly jsonParse: Summary;
  readonly cloneBack: Summary;
  readonly buildWorkerSet: Summary;
  readonly diff: Summary;
  readonly allocation: Allocation;
  readonly idleLoop: Summary;
  readonly eventLoop: readonly (EventLoopResult & {
    readonly workers: number;
    readonly reader: Reader;
    readonly isDefault: boolean;
  })[];
}

function times(n: number, f: () => void): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i += 1) {
    const t = process.hrtime.bigint();
    f();
    out.push(elapsedMs(t));
  }
  return out;
}

/** {@link times} for work that may take more than one event-loop turn. */
async function timesAsync(n: number, f: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i += 1) {
    const t = process.hrtime.bigint();
    await f();
    out.push(elapsedMs(t));
  }
  return out;
}

async function run(ctx: BenchContext): Promise<SectionOutput> {
  const plan = ctx.quick ? QUICK : FULL;
  ctx.log(`processing: capturing ${fmtInt(plan.workers)}-instance health answers from the dev server`);
  const bodies = await captureBodies(plan.workers);
  // Alternate the two answers across every step (warm-up, measured, heap, profile): each one is a change.
  let flips = 0;
  const body = (): Buffer => (flips++ % 2 === 0 ? bodies.oneDown : bodies.all);

  const p = pipeline('incremental');
  let index = 10;
  const firstStep = await p.step(bodies.all, index++); // first publish: the full read, measured on its own below
  for (let i = 0; i < 3; i += 1) await p.step(body(), index++); // warm-up
  const total: number[] = [];
  const totalCpu: number[] = [];
  const parse: number[] = [];
  const engine: number[] = [];
  ctx.log(`processing: ${plan.iterations} iterations`);
  for (let i = 0; i < plan.iterations && !ctx.signal.aborted; i += 1) {
    const r = await p.step(body(), index++);
    if (!r.published) throw new Error('processing: the engine did not publish');
    total.push(r.parseMs + r.engineMs);
    totalCpu.push(r.cpuMs);
    parse.push(r.parseMs);
    engine.push(r.engineMs);
  }
  // The same body again (an index that moved while the content did not): compare, no parse, no publish.
  const same: number[] = [];
  const sameCpu: number[] = [];
  const copy = (): Buffer => Buffer.from(flips % 2 === 0 ? bodies.all : bodies.oneDown); // the last one fed, as new bytes
  for (let i = 0; i < plan.iterations && !ctx.signal.aborted; i += 1) {
    const fresh = copy();
    const r = await p.step(fresh, index++);
    if (r.published) throw new Error('processing: a byte-identical body published');
    same.push(r.parseMs + r.engineMs);
    sameCpu.push(r.cpuMs);
  }
  // Heap: allocation of one whole step (forced GC before; collected bytes counted).
  let allocation: Allocation | undefined;
  for (let i = 0; i < plan.allocIterations; i += 1) {
    let stepped: Promise<Step> | undefined;
    const a = measureAllocation(() => {
      stepped = p.step(body(), index++);
    });
    if ((await stepped)?.inOneTurn !== true)
      throw new Error('processing: the measured heap step took more than one turn');
    if (allocation === undefined || a.peakGrowthBytes > allocation.peakGrowthBytes) allocation = a;
  }

  // The whole-body parse it replaced, through the same engine path.
  const w = pipeline('whole');
  await w.step(bodies.all, 1);
  let wflips = 0;
  const whole = await timesAsync(Math.max(3, Math.floor(plan.iterations / 4)), () =>
    w.step(wflips++ % 2 === 0 ? bodies.oneDown : bodies.all, 2 + wflips),
  );
  w.close();
  // The first answer of a source (nothing to compare with): every element parsed.
  const first = [
    firstStep.parseMs + firstStep.engineMs,
    ...(await timesAsync(Math.max(2, Math.floor(plan.iterations / 8)), async () => {
      const q = pipeline('incremental');
      await q.step(bodies.all, 1);
      q.close();
    })),
  ];

  // Breakdown and references, measured on their own.
  const n4 = Math.max(3, Math.floor(plan.iterations / 4));
  const jsonParse = times(n4, () => void JSON.parse(bodies.all.toString('utf8')));
  const candidates = parseHealthBody(bodies.all, POLICY).workers;
  // A parse worker thread that posts its candidates back: the main thread still deserialises them all.
  const serialised = v8.serialize(candidates);
  const cloneBack = times(n4, () => void v8.deserialize(serialised));
  const build = times(n4, () => buildWorkerSet(candidates));
  const setA = buildWorkerSet(parseHealthBody(bodies.all, POLICY).workers).workers;
  const setB = buildWorkerSet(parseHealthBody(bodies.oneDown, POLICY).workers).workers;
  const diff = times(n4, () => diffWorkers(setA, setB));

  let profileLines: string[] = [];
  if (ctx.profile) {
    ctx.log('processing: profiling 10 more iterations');
    const { summary } = await profile(ctx.profileDir, 'processing', async () => {
      for (let i = 0; i < 10; i += 1) await p.step(body(), index++);
    });
    profileLines = profileNotes(`processing of ${fmtInt(plan.workers)} instances`, summary);
  }
  p.close();

  const eventLoop: (EventLoopResult & { workers: number; reader: Reader; isDefault: boolean })[] = [];
  for (const run of plan.eventLoop) {
    const b = run.workers === plan.workers ? bodies : await captureBodies(run.workers);
    // 'auto' is the default: in-thread below THREAD_THRESHOLD_BYTES, the thread from the first answer at or above it.
    const readers: readonly Reader[] =
      b.all.length >= THREAD_THRESHOLD_BYTES ? ['in-thread', 'thread', 'auto'] : ['in-thread', 'thread'];
    for (const reader of readers) {
      if (ctx.signal.aborted) break;
      ctx.log(
        `processing: event-loop delay, ${fmtInt(run.workers)} instances, ${reader} reader, ${run.answers} answers`,
      );
      const mode = reader === 'auto' ? 'auto' : reader === 'thread';
      const r = await measureEventLoop([b.all, b.oneDown], run.answers, plan.spacingMs, ctx.signal, mode);
      const isDefault = reader === 'auto' || (reader === 'in-thread' && b.all.length < THREAD_THRESHOLD_BYTES);
      eventLoop.push({ ...r, workers: run.workers, reader, isDefault });
    }
  }
  const idleAnswers = Math.max(...plan.eventLoop.map((r) => r.answers));
  const idleLoop = await measureIdleLoop(idleAnswers, plan.spacingMs, ctx.signal);

  const result: Result = {
    workers: plan.workers,
    bodyBytes: bodies.all.length,
    total: summarize(total),
    totalCpu: summarize(totalCpu),
    sameCpu: summarize(sameCpu),
    parse: summarize(parse),
    engine: summarize(engine),
    same: summarize(same),
    first: summarize(first),
    whole: summarize(whole),
    jsonParse: summarize(jsonParse),
    cloneBack: summarize(cloneBack),
    buildWorkerSet: summarize(build),
    diff: summarize(diff),
    allocation: allocation!,
    eventLoop,
    idleLoop,
  };
  const atGoalSize = plan.workers === GOAL_INSTANCES;
  const totalRatio = ratio(result.total.p50, result.jsonParse.p50);
  const timeGoal: GoalCheck = {
    goal: 'total ≤ 1.2× JSON.parse',
    met: totalRatio !== undefined && totalRatio <= 1.2,
    actual: `p50 ${fmtMs(result.total.p50)} = ${fmtRatio(totalRatio)} JSON.parse (${fmtMs(result.jsonParse.p50)}), p99 ${fmtMs(result.total.p99)}, ${fmtInt(plan.workers)} instances`,
  };
  // The same goal for the answer that has nothing to compare with: every entry parsed and every
  // worker built (its 10,000 URLs alone are about half a JSON.parse), once per start and failback.
  const firstRatio = ratio(result.first.p50, result.jsonParse.p50);
  const firstGoal: GoalCheck = {
    goal: 'first answer ≤ 1.2× JSON.parse',
    met: firstRatio !== undefined && firstRatio <= 1.2,
    actual: `p50 ${fmtMs(result.first.p50)} = ${fmtRatio(firstRatio)} JSON.parse, of which the full build ${fmtMs(result.buildWorkerSet.p50)}; read and built in turns of ≤ 5 ms`,
  };
  const sameGoal: GoalCheck = {
    goal: 'byte-identical body ≤ 5 ms',
    met: result.same.p99 <= 5,
    actual: `p50 ${fmtMs(result.same.p50)}, p99 ${fmtMs(result.same.p99)} (compare, no parse, no publish)`,
  };
  const heapGoal: GoalCheck = {
    goal: '≤ 100 MB',
    met: result.allocation.peakGrowthBytes <= 100e6,
    actual: `peak heap growth ${fmtBytes(result.allocation.peakGrowthBytes)}`,
  };
  const loopAtGoal = eventLoop.find((e) => e.workers === GOAL_INSTANCES && e.isDefault);
  const loopGoal: GoalCheck | undefined =
    loopAtGoal === undefined
      ? undefined
      : {
          goal: 'event-loop delay per answer p99 ≤ 16 ms',
          met: loopAtGoal.perAnswerMaxMs.p99 <= 16,
          actual: `p50 ${fmtMs(loopAtGoal.perAnswerMaxMs.p50)}, p99 ${fmtMs(loopAtGoal.perAnswerMaxMs.p99)} at ${fmtInt(GOAL_INSTANCES)} instances (${loopAtGoal.reader} reader, the default)`,
        };
  const n = fmtInt(plan.workers);
  const goalAt = (check: GoalCheck): string => (atGoalSize ? goalCell(check) : GOAL_ELSEWHERE);
  const vsJson = (s: Summary): string => fmtRatio(ratio(s.p50, result.jsonParse.p50));
  /** A row of the time table: its figures, its ratio to `JSON.parse` of the same body, and its goal cell. */
  const timeRow = (label: string, s: Summary, goal = '—'): string[] => [
    n,
    label,
    fmtMs(s.p50),
    fmtMs(s.p99),
    vsJson(s),
    goal,
  ];
  const rows: string[][] = [
    timeRow('total: read + build + diff + publish (one entry changed)', result.total, goalAt(timeGoal)),
    timeRow('↳ incremental read (compare, parse what changed)', result.parse),
    timeRow('↳ engine (incremental build, diff, snapshot, publish)', result.engine),
    timeRow('byte-identical body (index moved, content did not)', result.same, goalAt(sameGoal)),
    timeRow('first answer of a source (every entry parsed)', result.first, goalAt(firstGoal)),
    [n, 'reference: JSON.parse of the body alone', fmtMs(result.jsonParse.p50), fmtMs(result.jsonParse.p99), '1×', '—'],
    timeRow('before #13: whole-body parse + full build (same engine)', result.whole),
    timeRow('candidate: parse worker posting candidates back (main-thread deserialise only)', result.cloneBack),
    timeRow('  ↳ full buildWorkerSet of all candidates', result.buildWorkerSet),
    timeRow('  ↳ one diffWorkers of two full sets', result.diff),
  ];
  const heapRows: string[][] = [
    [n, 'peak heap growth during one processing', fmtBytes(result.allocation.peakGrowthBytes), goalAt(heapGoal)],
    [n, 'bytes allocated (collected or not)', fmtBytes(result.allocation.allocatedBytes), '—'],
    [n, 'retained after GC (new snapshot − old)', fmtBytes(result.allocation.retainedBytes), '—'],
  ];
  const loopRows: string[][] = eventLoop.map((e) => [
    fmtInt(e.workers),
    `${e.reader}${e.isDefault ? ' (default)' : ''}`,
    fmtMs(e.perAnswerMaxMs.p50),
    fmtMs(e.perAnswerMaxMs.p99),
    fmtMs(e.perAnswerMaxMs.max),
    fmtInt(e.answers),
    `${fmtMs(e.perAnswerActiveMs.p50)} / ${fmtMs(e.perAnswerActiveMs.p99)}`,
    fmtMs(e.firstAnswerMaxMs),
    `${fmtMs(e.overallP99Ms)} / ${fmtMs(e.overallMaxMs)}`,
    e.workers === GOAL_INSTANCES && e.isDefault && loopGoal !== undefined
      ? goalCell(loopGoal)
      : e.workers === GOAL_INSTANCES
        ? '—'
        : '(goal at 10,000)',
  ]);
  loopRows.push([
    '—',
    'floor: the probe alone, no resolver',
    fmtMs(result.idleLoop.p50),
    fmtMs(result.idleLoop.p99),
    fmtMs(result.idleLoop.max),
    fmtInt(result.idleLoop.n),
    '—',
    '—',
    '—',
    '—',
  ]);
  return {
    tables: [
      {
        title: `4. Processing cost of one ${n}-instance health answer (${(result.bodyBytes / 1024 / 1024).toFixed(1)} MiB)`,
        columns: ['instances', 'step', 'p50', 'p99', 'vs JSON.parse', 'goal'],
        rows,
        notes: [
          'In-process, no network: the body bytes of a real dev-server answer → IncrementalHealthParser (as ' +
            'ConsulSource uses it) → the engine (through the same sink) → published snapshot. Bodies alternate (all ' +
            'passing / one critical) so each iteration publishes; the byte-identical row feeds a fresh copy of the last ' +
            'body.',
          `${result.total.n} iterations after 3 warm-up ones. Process CPU time of the same steps (user + system, ` +
            `which preemption on a loaded machine does not inflate): one entry changed p50 ${fmtMs(result.totalCpu.p50)} / ` +
            `p99 ${fmtMs(result.totalCpu.p99)}; byte-identical body p50 ${fmtMs(result.sameCpu.p50)} / p99 ` +
            `${fmtMs(result.sameCpu.p99)}.`,
        ],
      },
      {
        title: '4b. Heap during that processing',
        columns: ['instances', 'measure', 'bytes', 'goal'],
        rows: heapRows,
        notes: [
          'v8.GCProfiler around one step after a forced GC (worst of ' +
            `${plan.allocIterations}): peak = largest used heap seen (at a GC or the end) − used heap before. The body ` +
            'Buffer itself is off-heap and not counted (the parser keeps the last one, off-heap, to compare).',
          ...profileLines,
        ],
      },
      {
        title: '4c. Event-loop blocking per processed answer (real HTTP path)',
        columns: [
          'instances',
          'reader',
          'p50',
          'p99',
          'max',
          'answers',
          'thread busy per answer p50 / p99',
          'first answer (all new)',
          'all 1 ms samples p99 / max',
          'goal',
        ],
        rows: loopRows,
        notes: [
          'A resolver on this thread long-polls a scripted Consul in a worker thread, which answers each blocking ' +
            `query after ${plan.spacingMs} ms with the other of two captured bodies (one entry changed) and a new index. ` +
            'perf_hooks.monitorEventLoopDelay (1 ms resolution) is read and reset in the first timer turn after each ' +
            'publish: a row value is the longest event-loop delay while one answer was received and processed, its ' +
            'publishing turn included (#13b: reset inside that turn lost it); "thread busy" is ' +
            "performance.eventLoopUtilization() between two publishes (the resolver's own work on this thread, which " +
            'preemption by the other threads on these 2 cores does not add to). Readers: in-thread (HTTP and reading on ' +
            'this event loop, in turns of ≤ 5 ms) and thread (HTTP, comparison and reading in a worker thread; only ' +
            'new candidates cross); auto, the default, reads in-thread until an answer of 1 MiB, then moves to the ' +
            'thread (its first answer there is a full read once, so the switch is one of the samples).',
        ],
      },
    ],
    // The goals are stated for 10,000 instances; the smoke size does not judge them.
    goals: atGoalSize ? [timeGoal, firstGoal, sameGoal, heapGoal, ...(loopGoal === undefined ? [] : [loopGoal])] : [],
    data: {
      workers: result.workers,
      bodyBytes: result.bodyBytes,
      totalMs: result.total,
      totalCpuMs: result.totalCpu,
      sameBodyCpuMs: result.sameCpu,
      readMs: result.parse,
      engineMs: result.engine,
      sameBodyMs: result.same,
      firstAnswerMs: result.first,
      wholeBodyMs: result.whole,
      jsonParseMs: result.jsonParse,
      cloneBackMs: result.cloneBack,
      buildWorkerSetMs: result.buildWorkerSet,
      diffWorkersMs: result.diff,
      heap: result.allocation,
      eventLoop: result.eventLoop,
      idleLoopMs: result.idleLoop,
    },
  };
}

export const processingBench: BenchSection = {
  id: 'processing',
  title: 'Processing cost',
  budgetMs: { quick: 20_000, full: 240_000 },
  run,
};
