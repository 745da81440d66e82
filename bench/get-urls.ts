/**
 * (1) `getUrls()` per call, at 1, 100, 1,000 and 10,000 workers: ns/call and bytes
 * allocated per call, next to a resolver that copies its array per call (DataFusion's Rust
 * resolvers: `Vec::clone`) and one that rebuilds URL objects per call.
 *
 * Method: each resolver kind has its own measurement loop (a separate function literal, so
 * its call site stays monomorphic and one kind's feedback cannot slow another's). Every
 * result feeds a sink (its length is summed, the last array is stored), so the calls cannot
 * be dropped as dead code. A batch of k calls is timed with `process.hrtime.bigint()`, k
 * calibrated so a batch lasts ~2 ms; the median and p99 are over batches (each batch a
 * mean over k calls: the timer's resolution does not leak into the per-call figure).
 * Bytes/call: one long loop under `v8.GCProfiler`, allocated bytes (see memory.ts) divided
 * by the number of calls.
 */
import { createWorkerResolver } from '../src/index.js';
import type { WorkerResolver } from '../src/index.js';
import { CopyingResolver, RebuildingResolver } from './baselines.js';
import { workerRef } from './cluster.js';
import { gcExposed, measureAllocation } from './memory.js';
import type { BenchContext, BenchSection, SectionOutput } from './section.js';
import { silentLogger } from './section.js';
import { elapsedNs, ratio, summarize } from './stats.js';
import type { Summary } from './stats.js';
import { fmtBytes, fmtInt, fmtNs, fmtRatio, goalCell } from './table.js';
import type { GoalCheck } from './table.js';

type Kind = 'worker-resolver' | 'copy per call' | 'rebuild URLs per call';
type Loop = (r: WorkerResolver, calls: number) => void;

/** Where results go so that the JIT must compute them. */
const sink: { sum: number; last: readonly URL[] | undefined } = { sum: 0, last: undefined };

function loopResolver(r: WorkerResolver, calls: number): void {
  let sum = 0;
  let last: readonly URL[] | undefined;
  for (let i = 0; i < calls; i += 1) {
    last = r.getUrls();
    sum = (sum + last.length) | 0;
  }
  sink.sum = (sink.sum + sum) | 0;
  sink.last = last;
}

function loopCopy(r: WorkerResolver, calls: number): void {
  let sum = 0;
  let last: readonly URL[] | undefined;
  for (let i = 0; i < calls; i += 1) {
    last = r.getUrls();
    sum = (sum + last.length) | 0;
  }
  sink.sum = (sink.sum + sum) | 0;
  sink.last = last;
}

function loopRebuild(r: WorkerResolver, calls: number): void {
  let sum = 0;
  let last: readonly URL[] | undefined;
  for (let i = 0; i < calls; i += 1) {
    last = r.getUrls();
    sum = (sum + last.length) | 0;
  }
  sink.sum = (sink.sum + sum) | 0;
  sink.last = last;
}

interface Plan {
  readonly sizes: readonly number[];
  /** Target duration of one timed batch, ns. */
  readonly batchNs: number;
  readonly batches: number;
  /** Upper bound on the timed phase of one (kind, size), ms. */
  readonly maxPhaseMs: number;
  readonly warmupMs: number;
  /** Target duration of the allocation loop, ms. */
  readonly allocMs: number;
}

const FULL: Plan = {
  sizes: [1, 100, 1_000, 10_000],
  batchNs: 2e6,
  batches: 200,
  maxPhaseMs: 2_000,
  warmupMs: 200,
  allocMs: 100,
};
const QUICK: Plan = { sizes: [1, 100], batchNs: 2e5, batches: 10, maxPhaseMs: 50, warmupMs: 10, allocMs: 5 };

interface KindResult {
  readonly kind: Kind;
  readonly workers: number;
  /** ns per call over batches. */
  readonly nsPerCall: Summary;
  readonly callsPerBatch: number;
  readonly bytesPerCall: number;
  readonly allocCalls: number;
}

function timeOnce(loop: Loop, r: WorkerResolver, calls: number): number {
  const start = process.hrtime.bigint();
  loop(r, calls);
  return elapsedNs(start);
}

function measure(kind: Kind, loop: Loop, r: WorkerResolver, workers: number, plan: Plan): KindResult {
  // Warm up (lets the loop and getUrls() be optimized), then calibrate calls per batch.
  const warmEnd = Date.now() + plan.warmupMs;
  while (Date.now() < warmEnd) loop(r, 64);
  let calls = 1;
  while (calls < 1 << 26 && timeOnce(loop, r, calls) < plan.batchNs) calls *= 2;
  const samples: number[] = [];
  const phaseEnd = Date.now() + plan.maxPhaseMs;
  while (samples.length < plan.batches && (samples.length < 5 || Date.now() < phaseEnd)) {
    samples.push(timeOnce(loop, r, calls) / calls);
  }
  const nsPerCall = summarize(samples);
  const allocCalls = Math.max(calls, Math.ceil((plan.allocMs * 1e6) / Math.max(nsPerCall.p50, 0.1)));
  const { allocatedBytes } = measureAllocation(() => loop(r, allocCalls));
  return { kind, workers, nsPerCall, callsPerBatch: calls, bytesPerCall: allocatedBytes / allocCalls, allocCalls };
}

async function run(ctx: BenchContext): Promise<SectionOutput> {
  const plan = ctx.quick ? QUICK : FULL;
  const results: KindResult[] = [];
  for (const size of plan.sizes) {
    if (ctx.signal.aborted) break;
    const hrefs = Array.from({ length: size }, (_, i) => {
      const w = workerRef(i);
      return `http://${w.address}:${w.port}`;
    });
    const resolver = createWorkerResolver({ service: 'bench', static: hrefs, env: {}, logger: silentLogger });
    await resolver.ready({ timeoutMs: 30_000 });
    const urls = resolver.getUrls();
    ctx.log(`get-urls: ${fmtInt(size)} workers`);
    results.push(measure('worker-resolver', loopResolver, resolver, size, plan));
    results.push(measure('copy per call', loopCopy, new CopyingResolver(urls), size, plan));
    results.push(measure('rebuild URLs per call', loopRebuild, new RebuildingResolver(hrefs), size, plan));
    await resolver.close();
  }

  const goals: GoalCheck[] = [];
  const rows: string[][] = [];
  for (const r of results) {
    const ours = results.find((o) => o.workers === r.workers && o.kind === 'worker-resolver');
    const isOurs = r.kind === 'worker-resolver';
    let goal: GoalCheck | undefined;
    if (isOurs) {
      goal = {
        goal: '≤ 10 ns, 0 B',
        met: r.nsPerCall.p50 <= 10 && r.bytesPerCall < 0.5,
        actual: `${fmtNs(r.nsPerCall.p50)}, ${fmtBytes(r.bytesPerCall)} at ${fmtInt(r.workers)} worker${r.workers === 1 ? '' : 's'}`,
      };
      goals.push(goal);
    }
    rows.push([
      fmtInt(r.workers),
      r.kind,
      fmtNs(r.nsPerCall.p50),
      fmtNs(r.nsPerCall.p99),
      fmtBytes(r.bytesPerCall),
      isOurs || ours === undefined ? '1×' : fmtRatio(ratio(r.nsPerCall.p50, ours.nsPerCall.p50)),
      goalCell(goal),
    ]);
  }
  const ours = results.filter((r) => r.kind === 'worker-resolver');
  const p50s = ours.map((r) => r.nsPerCall.p50);
  const flatness = ratio(Math.max(...p50s), Math.min(...p50s));
  if (flatness !== undefined) {
    const flat: GoalCheck = {
      goal: 'flat: slowest/fastest p50 ≤ 2×',
      met: flatness <= 2,
      actual: fmtRatio(flatness),
    };
    goals.push(flat);
    rows.push([
      `${fmtInt(Math.min(...ours.map((r) => r.workers)))}–${fmtInt(Math.max(...ours.map((r) => r.workers)))}`,
      'worker-resolver, across sizes',
      '',
      '',
      '',
      fmtRatio(flatness),
      goalCell(flat),
    ]);
  }
  const notes = [
    'ns/call: median and p99 over timed batches; each batch is the mean of k calls (k calibrated to ~' +
      `${plan.batchNs / 1e6} ms per batch). Ratio = baseline p50 / worker-resolver p50 at the same size.`,
    `bytes/call: V8 heap bytes allocated during one loop of ≥ ${plan.allocMs} ms, counted with v8.GCProfiler ` +
      `(collected bytes included), divided by its call count${gcExposed() ? '' : ' (run with --expose-gc for a clean start)'}.`,
    'worker-resolver: createWorkerResolver() with a static source (getUrls() reads the published snapshot; the path is ' +
      'the same for every source). "copy per call" = slice() of a plain (unfrozen) array — V8 copies frozen arrays on a slower path — like Rust Vec::clone (which even clones each Url).',
  ];
  return {
    tables: [
      {
        title: '1. getUrls() per call',
        columns: ['workers', 'resolver', 'ns/call p50', 'ns/call p99', 'bytes/call', 'vs worker-resolver', 'goal'],
        rows,
        notes,
      },
    ],
    goals,
    data: {
      method: 'hrtime batches; v8.GCProfiler allocation',
      gcExposed: gcExposed(),
      results: results.map((r) => ({
        kind: r.kind,
        workers: r.workers,
        nsPerCall: r.nsPerCall,
        bytesPerCall: r.bytesPerCall,
        callsPerBatch: r.callsPerBatch,
        allocCalls: r.allocCalls,
      })),
      flatnessRatio: flatness ?? null,
      sinkCheck: sink.sum,
    },
  };
}

export const getUrlsBench: BenchSection = {
  id: 'get-urls',
  title: 'getUrls() per call',
  budgetMs: { quick: 20_000, full: 120_000 },
  run,
};
