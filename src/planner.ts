/**
 * Planner helpers with Distributed DataFusion's semantics (docs/design.md §6).
 *
 * All helpers take a {@link WorkerSnapshot}, not a resolver: a query plans and routes
 * against one snapshot, so the task count it planned and the URLs it routes to can never
 * disagree, even if a publish happens in between. They are pure: recording metrics and
 * spans is the job of the instrumented planner built on top of them.
 */
import { ErrorCode, InvalidOptionError, WorkerResolverError } from './errors.js';
import type { Worker, WorkerSnapshot } from './snapshot.js';

/** Options of {@link taskCap}. */
export interface TaskCapOptions {
  /** A configured ceiling; when > 0 it is the cap, whatever the worker count (DataFusion's `max_tasks_per_stage`). */
  readonly maxTasksPerStage?: number;
}

/** The result of planning one stage. */
export interface StagePlan {
  readonly stageId: string;
  readonly desiredTasks: number;
  /** The cap in force: see {@link taskCap}. */
  readonly cap: number;
  /** `min(desiredTasks, cap)`. */
  readonly plannedTasks: number;
  /** True if the cap lowered the task count. */
  readonly capped: boolean;
  /** The snapshot version the plan was made against. */
  readonly snapshotVersion: number;
}

/** Routing strategies of {@link routeTasks}. */
export type RoutingStrategy = 'round-robin' | 'seeded' | 'rendezvous';

/** Options of {@link routeTasks}. */
export interface RouteOptions {
  /** Query id: with `seeded`, the same query and stage route the same way on retry. */
  readonly queryId: string;
  readonly stageId: string | number;
  readonly taskCount: number;
  /** Default `round-robin`. */
  readonly strategy?: RoutingStrategy;
  /**
   * For `rendezvous`: the key of each task (length `taskCount`). Default `${stageId}/${taskIndex}`;
   * pass keys that name the data a task reads (a file, a partition) for cache affinity across queries.
   */
  readonly taskKeys?: readonly string[];
  /** Randomness for `round-robin`'s start, in [0, 1). Default `Math.random`. */
  readonly random?: () => number;
}

function checkCount(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidOptionError(name, `must be an integer >= ${min} (got ${String(value)})`);
  }
  return value;
}

/**
 * Tasks a stage may have: `maxTasksPerStage` if > 0, else `max(1, workers)`. Zero workers
 * means one task: the query runs locally on the coordinator, which is not an error.
 */
export function taskCap(snapshot: WorkerSnapshot, options: TaskCapOptions = {}): number {
  const max = options.maxTasksPerStage ?? 0;
  checkCount(max, 'maxTasksPerStage', 0);
  return max > 0 ? max : Math.max(1, snapshot.workers.length);
}

/** Plans one stage: `plannedTasks = min(desiredTasks, taskCap(...))`. */
export function planStage(
  snapshot: WorkerSnapshot,
  stage: { readonly stageId: string | number; readonly desiredTasks: number },
  options: TaskCapOptions = {},
): StagePlan {
  const desiredTasks = checkCount(stage.desiredTasks, 'desiredTasks', 1);
  const cap = taskCap(snapshot, options);
  const plannedTasks = Math.min(desiredTasks, cap);
  return {
    stageId: String(stage.stageId),
    desiredTasks,
    cap,
    plannedTasks,
    capped: plannedTasks < desiredTasks,
    snapshotVersion: snapshot.version,
  };
}

/** FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(input: number): number {
  let h = input;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The URL hash of each worker, computed once per snapshot: a snapshot's `workers` array is
 * frozen and shared until the next publish, so every stage routed against it reuses them.
 */
const hashesByWorkers = new WeakMap<readonly Worker[], Uint32Array>();

function urlHashes(workers: readonly Worker[]): Uint32Array {
  let hashes = hashesByWorkers.get(workers);
  if (hashes === undefined) {
    hashes = Uint32Array.from(workers, (w) => hash32(w.url.href));
    hashesByWorkers.set(workers, hashes);
  }
  return hashes;
}

/**
 * ln(weight) of each worker for rendezvous scoring. RFC 2782 reads weight 0 as "no
 * preference": when every weight is 0 (or none is usable) all workers weigh the same; when
 * only some are 0, those get a small but real share (1/1000 of the smallest positive weight)
 * instead of never being chosen.
 */
function rendezvousLogWeights(workers: readonly Worker[]): Float64Array {
  let minPositive = Number.POSITIVE_INFINITY;
  for (const w of workers) if (w.weight > 0 && w.weight < minPositive) minPositive = w.weight;
  const out = new Float64Array(workers.length);
  if (minPositive === Number.POSITIVE_INFINITY) return out; // all zero: equal weights, ln 1 = 0
  const zero = Math.log(minPositive / 1000);
  for (let j = 0; j < workers.length; j += 1) {
    const w = workers[j]?.weight ?? 1;
    out[j] = w > 0 ? Math.log(w) : zero;
  }
  return out;
}

/**
 * Assigns one worker URL per task, against one snapshot.
 * - `round-robin`: consecutive workers from a random start (DataFusion's default).
 * - `seeded`: the same, from a start derived from `queryId` and `stageId`, so a retried
 *   query routes exactly as before while the worker set is unchanged.
 * - `rendezvous`: each task goes to the worker with the highest weighted
 *   highest-random-weight score for its key, so a key keeps its worker while others come and
 *   go; when a worker leaves, only the keys it held move.
 * @throws {WorkerResolverError} `ERR_NO_WORKERS` when the snapshot has no worker.
 */
export function routeTasks(snapshot: WorkerSnapshot, options: RouteOptions): readonly URL[] {
  const taskCount = checkCount(options.taskCount, 'taskCount', 0);
  const strategy = options.strategy ?? 'round-robin';
  const { workers, urls } = snapshot;
  const n = workers.length;
  if (n === 0) {
    throw new WorkerResolverError(
      ErrorCode.NO_WORKERS,
      `cannot route ${taskCount} task(s) of stage ${String(options.stageId)}: the snapshot has no worker`,
    );
  }
  const out = new Array<URL>(taskCount);
  if (strategy === 'round-robin' || strategy === 'seeded') {
    const start =
      strategy === 'seeded'
        ? hash32(`${options.queryId}\u0000${String(options.stageId)}`) % n
        : Math.floor((options.random ?? Math.random)() * n) % n;
    for (let i = 0; i < taskCount; i += 1) out[i] = urls[(start + i) % n] as URL;
    return out;
  }
  if (strategy !== 'rendezvous') {
    throw new InvalidOptionError('strategy', 'must be round-robin, seeded or rendezvous');
  }
  const keys: unknown = options.taskKeys;
  if (
    keys !== undefined &&
    (!Array.isArray(keys) || keys.length !== taskCount || !keys.every((k) => typeof k === 'string'))
  ) {
    throw new InvalidOptionError('taskKeys', `must be an array of ${taskCount} strings`);
  }
  const workerHashes = urlHashes(workers);
  const logWeights = rendezvousLogWeights(workers);
  for (let i = 0; i < taskCount; i += 1) {
    const keyHash = hash32((keys as readonly string[] | undefined)?.[i] ?? `${String(options.stageId)}/${i}`);
    let best = 0;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < n; j += 1) {
      // u in (0, 1); -w/ln(u) is the weighted HRW score (Schindelhauer & Schomaker), compared
      // in the log domain, ln(w) − ln(−ln u), so tiny weights neither underflow nor tie.
      const u = (fmix32(keyHash ^ (workerHashes[j] ?? 0)) + 0.5) / 4294967296;
      const score = (logWeights[j] ?? 0) - Math.log(-Math.log(u));
      if (score > bestScore) {
        bestScore = score;
        best = j;
      }
    }
    out[i] = urls[best] as URL;
  }
  return out;
}
