/**
 * The example coordinator: runs the example job (see dataset.ts) on the example workers the
 * way Distributed DataFusion's coordinator does, with worker-resolver as its discovery.
 *
 * Per job, and why:
 * 1. Take ONE snapshot (`resolver.snapshot()`) and use it for the whole job: the task count
 *    planned from it and the URLs routed from it can never disagree, even if workers change
 *    while the job runs.
 * 2. Plan each stage with `planner.planStage`: planned tasks = min(desired, cap), the cap
 *    being the worker count (or `maxTasksPerStage`). No worker means one task, run locally.
 * 3. Route the planned tasks with `planner.routeTasks` (one URL per task).
 * 4. Call the workers over HTTP. A task whose worker fails (connection refused or reset,
 *    timeout, 5xx) is retried on the next worker OF THE SAME SNAPSHOT: it is the set the
 *    job was planned against, and a fresher one would not be more right mid-job.
 * 5. Merge, and compare with the answer computed locally: the demo's proof that nothing was
 *    lost or double-counted while workers came and went.
 */
import { setTimeout as delay } from 'node:timers/promises';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Planner } from '../planner-instrumented.js';
import type { StagePlan } from '../planner.js';
import type { WorkerSnapshot } from '../snapshot.js';
import {
  DEFAULT_DATASET,
  aggregatePartitions,
  checkGroups,
  expectedResult,
  fnv1a,
  mergeGroups,
  sameResult,
} from './dataset.js';
import type { DatasetSpec, Group } from './dataset.js';

/** What a job needs from a planner: `resolver.planner` (metrics and spans) or `new Planner({ service })`. */
export type JobPlanner = Pick<Planner, 'planStage' | 'routeTasks'>;

/** Options of {@link runJob}. */
export interface JobOptions {
  readonly planner: JobPlanner;
  /** Names the job in spans and seeds nothing else. */
  readonly queryId: string;
  /** Default {@link DEFAULT_DATASET}. */
  readonly dataset?: DatasetSpec;
  /** The answer to compare with; computed when absent (pass it to save the work on every job). */
  readonly expected?: readonly Group[];
  /** Desired tasks of the final-aggregation stage. Default 4. */
  readonly finalTasks?: number;
  /** Timeout of one task attempt. Default 5000. */
  readonly taskTimeoutMs?: number;
  /** Attempts per task, each on a different worker of the snapshot. Default 3. */
  readonly maxAttempts?: number;
  /** Connection pool for the worker calls. Default: a fresh one per job, destroyed at its end. */
  readonly agent?: http.Agent;
  /** Aborts the job's requests. */
  readonly signal?: AbortSignal;
}

/** One try of one task. */
export interface TaskAttempt {
  readonly url: string;
  /** The worker's instance id in the snapshot. */
  readonly worker: string | undefined;
  /** Short error (`ECONNREFUSED`, `HTTP 503`, `timeout`, ...); absent on success. */
  readonly error?: string;
}

/** One task of a stage. */
export interface TaskRun {
  readonly index: number;
  /** Empty when the task ran locally (no worker in the snapshot). */
  readonly attempts: readonly TaskAttempt[];
  /** Id of the worker that answered (`local` for a local run); undefined when every attempt failed. */
  readonly worker: string | undefined;
}

/** One stage of a job: its plan and its tasks. */
export interface StageRun {
  readonly name: string;
  readonly plan: StagePlan;
  readonly tasks: readonly TaskRun[];
}

/** What happened in one job. */
export interface JobReport {
  readonly queryId: string;
  readonly snapshotVersion: number;
  readonly source: WorkerSnapshot['source'];
  readonly workers: number;
  readonly stages: readonly StageRun[];
  /** `ok`: the merged result equals the expected one; `failed`: a task found no working worker. */
  readonly status: 'ok' | 'mismatch' | 'failed';
  readonly error?: string;
  readonly result: readonly Group[];
  /** Attempts beyond the first, over all tasks. */
  readonly retries: number;
  readonly durationMs: number;
}

/** A task before it runs: where on a worker, what body, and how to compute it locally. */
interface TaskSpec {
  readonly path: string;
  readonly body: unknown;
  readonly local: () => Group[];
}

/** A task that found no working worker; stops the job. */
class TaskFailed extends Error {}

/**
 * Runs the example job once against `snapshot`. Never throws: a failure is a report with
 * status `failed` (a background loop must not die on one bad job).
 */
export async function runJob(snapshot: WorkerSnapshot, options: JobOptions): Promise<JobReport> {
  const started = performance.now();
  const dataset = options.dataset ?? DEFAULT_DATASET;
  const expected = options.expected ?? expectedResult(dataset);
  const agent = options.agent ?? new http.Agent({ keepAlive: true });
  const stages: StageRun[] = [];
  const report = (status: JobReport['status'], result: readonly Group[], error?: string): JobReport => ({
    queryId: options.queryId,
    snapshotVersion: snapshot.version,
    source: snapshot.source,
    workers: snapshot.workers.length,
    stages,
    status,
    ...(error === undefined ? {} : { error }),
    result,
    retries: stages.reduce((n, s) => n + s.tasks.reduce((m, t) => m + Math.max(0, t.attempts.length - 1), 0), 0),
    durationMs: performance.now() - started,
  });
  try {
    // Stage 1, scan + partial aggregate: one task per partition is the natural parallelism;
    // the cap folds partitions onto the workers that exist (task t reads p ≡ t mod planned).
    const scanPlan = options.planner.planStage(snapshot, { stageId: 1, desiredTasks: dataset.partitions });
    const scanSpecs = Array.from({ length: scanPlan.plannedTasks }, (_, t): TaskSpec => {
      const partitions = Array.from({ length: dataset.partitions }, (_, p) => p).filter(
        (p) => p % scanPlan.plannedTasks === t,
      );
      return {
        path: '/tasks/partial',
        body: { dataset, partitions },
        local: () => aggregatePartitions(dataset, partitions),
      };
    });
    const partials = await runStage(snapshot, 'partial aggregate', scanPlan, scanSpecs, options, agent, stages);

    // Exchange: hash-partition the partial groups by key, so each final task owns whole keys.
    const finalPlan = options.planner.planStage(snapshot, { stageId: 2, desiredTasks: options.finalTasks ?? 4 });
    const buckets = Array.from({ length: finalPlan.plannedTasks }, (): Group[] => []);
    for (const group of partials.flat()) buckets[fnv1a(group.key) % finalPlan.plannedTasks]?.push(group);
    const finalSpecs = buckets.map((groups): TaskSpec => ({
      path: '/tasks/final',
      body: { groups },
      local: () => mergeGroups([groups]),
    }));
    const finals = await runStage(snapshot, 'final aggregate', finalPlan, finalSpecs, options, agent, stages);

    // The final tasks own disjoint keys: merging only concatenates and sorts.
    const result = mergeGroups(finals);
    return report(sameResult(result, expected) ? 'ok' : 'mismatch', result);
  } catch (err) {
    return report('failed', [], (err as Error).message);
  } finally {
    if (options.agent === undefined) agent.destroy();
  }
}

/** Runs one stage's tasks in parallel; records the stage in `stages` even when it fails. */
async function runStage(
  snapshot: WorkerSnapshot,
  name: string,
  plan: StagePlan,
  specs: readonly TaskSpec[],
  options: JobOptions,
  agent: http.Agent,
  stages: StageRun[],
): Promise<Group[][]> {
  const tasks: TaskRun[] = [];
  stages.push({ name, plan, tasks });
  if (snapshot.workers.length === 0) {
    // DataFusion's rule: no worker means the stage runs on the coordinator, not an error.
    specs.forEach((_, index) => tasks.push({ index, attempts: [], worker: 'local' }));
    return specs.map((s) => s.local());
  }
  const routed = options.planner.routeTasks(snapshot, {
    queryId: options.queryId,
    stageId: plan.stageId,
    taskCount: plan.plannedTasks,
  });
  const urls = snapshot.urls.map((u) => u.href);
  const idOf = (url: string): string | undefined => snapshot.workers.find((w) => w.url.href === url)?.id;
  const outcomes = await Promise.all(
    specs.map(async (spec, index) => {
      // The routed worker first, then the snapshot's next ones: a retry never leaves the snapshot.
      const first = urls.indexOf(routed[index]?.href ?? '');
      const candidates = urls.map((_, i) => urls[(first + i) % urls.length] as string);
      const attempts: TaskAttempt[] = [];
      for (const url of candidates.slice(0, options.maxAttempts ?? 3)) {
        try {
          const answer = await postTask(url, spec, options, agent);
          attempts.push({ url, worker: idOf(url) });
          tasks[index] = { index, attempts, worker: answer.worker };
          return answer.groups;
        } catch (err) {
          attempts.push({ url, worker: idOf(url), error: (err as Error).message });
          if (options.signal?.aborted === true) break;
        }
      }
      tasks[index] = { index, attempts, worker: undefined };
      return undefined;
    }),
  );
  const failed = outcomes.findIndex((o) => o === undefined);
  if (failed >= 0) {
    const last = tasks[failed]?.attempts.at(-1);
    throw new TaskFailed(
      `stage ${plan.stageId} task ${failed} failed on every worker tried (last: ${last?.error ?? '?'})`,
    );
  }
  return outcomes as Group[][];
}

/** POSTs one task; resolves with the worker's answer or rejects with a short error message. */
function postTask(
  base: string,
  spec: TaskSpec,
  options: JobOptions,
  agent: http.Agent,
): Promise<{ worker: string; groups: Group[] }> {
  const body = JSON.stringify(spec.body);
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(spec.path, base), {
      method: 'POST',
      agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      timeout: options.taskTimeoutMs ?? 5000,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code ?? err.message)));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code ?? err.message)));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode ?? '?'}`));
        try {
          const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { worker?: unknown; groups?: unknown };
          resolve({ worker: String(answer.worker), groups: checkGroups(answer.groups, 'answer.groups') });
        } catch {
          reject(new Error('malformed answer'));
        }
      });
    });
    req.end(body);
  });
}

/** Options of {@link runJobs}. */
export interface JobLoopOptions extends Omit<JobOptions, 'queryId' | 'agent' | 'signal' | 'planner'> {
  /** Where each job takes its snapshot and planner: a `DiscoveringWorkerResolver`. */
  readonly resolver: { snapshot(): WorkerSnapshot; readonly planner: JobPlanner };
  /** Pause between the end of a job and the start of the next. Default 2000. */
  readonly intervalMs?: number;
  /** Called with each finished job. */
  readonly onJob: (report: JobReport) => void;
  /** Stops the loop (the running job's requests are aborted). */
  readonly signal: AbortSignal;
}

/** Runs jobs until `signal` aborts; resolves once the last one ended and every connection is closed. */
export async function runJobs(options: JobLoopOptions): Promise<void> {
  const { resolver, signal } = options;
  const dataset = options.dataset ?? DEFAULT_DATASET;
  const expected = options.expected ?? expectedResult(dataset);
  const agent = new http.Agent({ keepAlive: true });
  try {
    for (let n = 1; !signal.aborted; n += 1) {
      const report = await runJob(resolver.snapshot(), {
        ...options,
        planner: resolver.planner,
        dataset,
        expected,
        queryId: `q${n}`,
        agent,
        signal,
      });
      if (signal.aborted) break;
      options.onJob(report);
      await delay(options.intervalMs ?? 2000, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    agent.destroy();
  }
}
