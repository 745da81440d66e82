/**
 * The planner helpers of planner.ts with metrics and spans (docs/design.md §6, §7).
 *
 * planner.ts stays pure; this class adds the recording around it. Like the pure helpers it
 * takes a snapshot per call, never a resolver: one query plans and routes against one
 * snapshot. Per-stage detail (stage id, query id, worker URLs) goes to spans only; metrics
 * get the bounded aggregates (planned-tasks histogram, capped counter).
 */
import { InvalidOptionError } from './errors.js';
import type { ResolverMetrics } from './metrics.js';
import { planStage, routeTasks, taskCap } from './planner.js';
import type { RouteOptions, RoutingStrategy, StagePlan } from './planner.js';
import type { WorkerSnapshot } from './snapshot.js';
import type { ResolverTracing, StageRequest } from './tracing.js';

/** Options of {@link Planner}. */
export interface PlannerOptions {
  /** The worker service; must match `metrics.service` and `tracing.service` when they are given. */
  readonly service: string;
  /** A ceiling on tasks per stage (DataFusion's `max_tasks_per_stage`). Default: `metrics.maxTasksPerStage`, else 0 (none). */
  readonly maxTasksPerStage?: number;
  /** Default routing strategy of {@link Planner.routeTasks}. Default `round-robin`. */
  readonly strategy?: RoutingStrategy;
  /** Records `worker_resolver_stage_planned_tasks` and `worker_resolver_stages_capped_total`. */
  readonly metrics?: ResolverMetrics;
  /** Records a span per planned and per routed stage. */
  readonly tracing?: ResolverTracing;
}

/** Options of {@link Planner.routeTasks}: those of `routeTasks`, the strategy defaulting to the planner's. */
export type PlannerRouteOptions = RouteOptions;

const STRATEGIES: readonly RoutingStrategy[] = ['round-robin', 'seeded', 'rendezvous'];

/** Plans and routes stages against a snapshot, recording metrics and spans. Stateless apart from its options. */
export class Planner {
  /** The worker service these plans are for. */
  readonly service: string;
  /** The ceiling in force (0 = none: the cap is the worker count). */
  readonly maxTasksPerStage: number;
  /** The strategy used when a route call names none. */
  readonly strategy: RoutingStrategy;
  private readonly metrics: ResolverMetrics | undefined;
  private readonly tracing: ResolverTracing | undefined;

  /** @throws {InvalidOptionError} on a bad option, or when metrics/tracing were made for another service or cap. */
  constructor(options: PlannerOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object');
    if (typeof options.service !== 'string' || options.service === '') {
      throw new InvalidOptionError('service', 'must be a non-empty string');
    }
    const { metrics, tracing } = options;
    if (metrics !== undefined && metrics.service !== options.service) {
      throw new InvalidOptionError('metrics', `were created for service "${metrics.service}"`);
    }
    if (tracing !== undefined && tracing.service !== options.service) {
      throw new InvalidOptionError('tracing', `was created for service "${tracing.service}"`);
    }
    const max = options.maxTasksPerStage ?? metrics?.maxTasksPerStage ?? 0;
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 0) {
      throw new InvalidOptionError('maxTasksPerStage', 'must be an integer >= 0');
    }
    // The task-cap gauge reads the metrics' own setting at scrape time: a different value
    // here would make the dashboard show a cap the planner does not apply.
    if (metrics !== undefined && max !== metrics.maxTasksPerStage) {
      throw new InvalidOptionError(
        'maxTasksPerStage',
        `is ${max} but the metrics were created with ${metrics.maxTasksPerStage}; pass the same value to both`,
      );
    }
    const strategy = options.strategy ?? 'round-robin';
    if (!STRATEGIES.includes(strategy))
      throw new InvalidOptionError('strategy', `must be one of ${STRATEGIES.join(', ')}`);
    this.service = options.service;
    this.maxTasksPerStage = max;
    this.strategy = strategy;
    this.metrics = metrics;
    this.tracing = tracing;
  }

  /** Tasks a stage may have against this snapshot (see planner.ts `taskCap`). */
  taskCap(snapshot: WorkerSnapshot): number {
    return taskCap(snapshot, { maxTasksPerStage: this.maxTasksPerStage });
  }

  /**
   * Plans one stage: `plannedTasks = min(desiredTasks, cap)`; records the planned-tasks
   * histogram, the capped counter, and a `worker_resolver.plan_stage` span.
   * @throws {InvalidOptionError} when `desiredTasks` is not an integer >= 1.
   */
  planStage(snapshot: WorkerSnapshot, stage: StageRequest): StagePlan {
    const compute = (): StagePlan => planStage(snapshot, stage, { maxTasksPerStage: this.maxTasksPerStage });
    const plan = this.tracing === undefined ? compute() : this.tracing.tracePlan(snapshot, stage, compute);
    this.metrics?.recordStagePlan(plan);
    return plan;
  }

  /**
   * One worker URL per task (see planner.ts `routeTasks`), in a `worker_resolver.route_stage` span.
   * @throws {WorkerResolverError} `ERR_NO_WORKERS` when the snapshot has no worker.
   */
  routeTasks(snapshot: WorkerSnapshot, options: PlannerRouteOptions): readonly URL[] {
    const resolved: RouteOptions = { ...options, strategy: options.strategy ?? this.strategy };
    const compute = (): readonly URL[] => routeTasks(snapshot, resolved);
    return this.tracing === undefined ? compute() : this.tracing.traceRoute(snapshot, resolved, compute);
  }
}
