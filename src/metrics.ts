/**
 * Prometheus metrics (docs/design.md §7), on a prom-client `Registry` the caller owns.
 *
 * Following prom-client's guidance for libraries (its issue #186): nothing is registered on
 * the global registry and `collectDefaultMetrics` is never called; the application merges
 * registries if it wants one `/metrics`.
 *
 * Several resolvers (one per worker service) may share one registry: the metric families
 * are created once per registry and shared, each resolver owning the series of its
 * `service` label. Every label is bounded: service, source (3 values), outcome (3),
 * blocking (2), error_type (the `ErrorType` enum), change (2), from/to (sources),
 * version. Never an address, index, query id or token.
 *
 * Point-in-time values (worker count, staleness, task cap, snapshot version, last update)
 * are read from the snapshot at scrape time, so they are exact whenever Prometheus looks.
 */
import type { Registry } from 'prom-client';
import { InvalidOptionError } from './errors.js';
import type { ResolverObserver } from './events.js';
import { familiesOf, initialiseSeries } from './metric-families.js';
import { taskCap } from './planner.js';
import type { StagePlan } from './planner.js';
import { refreshOutcome } from './semconv.js';
import { packageVersion } from './version.js';
import { EMPTY_SNAPSHOT } from './snapshot.js';
import type { WorkerSnapshot } from './snapshot.js';
import type { SourceKind } from './source.js';

/** Options of {@link createResolverMetrics}. */
export interface ResolverMetricsOptions {
  /** Where the metrics are registered. The global registry is never touched. */
  readonly registry: Registry;
  /** The worker service: the `service` label of every series. */
  readonly service: string;
  /** The `version` label of `worker_resolver_build_info`. Default: this package's version. */
  readonly version?: string;
  /** The planner's `maxTasksPerStage`, so `worker_resolver_stage_task_cap` shows the cap it applies. Default 0 (no ceiling). */
  readonly maxTasksPerStage?: number;
  /** Wall clock for the contact timestamps, in epoch milliseconds. Default `Date.now`. */
  readonly now?: () => number;
}

/** The metrics of one resolver; pass it in the resolver's `observers`. */
export interface ResolverMetrics extends ResolverObserver {
  /** The `service` label value. */
  readonly service: string;
  /** The `maxTasksPerStage` the task-cap gauge assumes (0 = none). */
  readonly maxTasksPerStage: number;
  /**
   * Reads point-in-time values from this snapshot getter at scrape time (usually
   * `() => resolver.snapshot()`). Without it they come from the last snapshot seen in events.
   */
  attach(getSnapshot: () => WorkerSnapshot): void;
  /** Records one planned stage (planned-tasks histogram, capped counter). */
  recordStagePlan(plan: StagePlan): void;
}

function checkOptions(options: ResolverMetricsOptions): number {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object');
  const registry: unknown = options.registry;
  if (typeof registry !== 'object' || registry === null || typeof (registry as Registry).metrics !== 'function') {
    throw new InvalidOptionError('registry', 'must be a prom-client Registry');
  }
  if (typeof options.service !== 'string' || options.service === '') {
    throw new InvalidOptionError('service', 'must be a non-empty string');
  }
  if (options.version !== undefined && (typeof options.version !== 'string' || options.version === '')) {
    throw new InvalidOptionError('version', 'must be a non-empty string');
  }
  const max = options.maxTasksPerStage ?? 0;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 0) {
    throw new InvalidOptionError('maxTasksPerStage', 'must be an integer >= 0');
  }
  return max;
}

/**
 * Creates the metrics of one resolver on `options.registry` and initialises every label
 * set known up front to 0, so each series exists before its first event (a `rate()` over a
 * series that appears with its first increment misses that increment).
 * @throws {InvalidOptionError} on a bad option.
 */
export function createResolverMetrics(options: ResolverMetricsOptions): ResolverMetrics {
  const maxTasksPerStage = checkOptions(options);
  const { registry, service } = options;
  const now = options.now ?? Date.now;
  const m = familiesOf(registry);

  /** The last snapshot seen in events; the scrape-time source until `attach` is called. */
  let seen: WorkerSnapshot = EMPTY_SNAPSHOT;
  let getSnapshot: () => WorkerSnapshot = () => seen;
  m.services.set(service, {
    snapshot: () => getSnapshot(),
    taskCap: () => taskCap(getSnapshot(), { maxTasksPerStage }),
  });
  /** The source the resolver fell back from; undefined while no fallback is active. */
  let fallbackFrom: SourceKind | undefined;
  const setFallback = (from: SourceKind | undefined): void => {
    fallbackFrom = from;
    m.fallback.set({ service }, from === undefined ? 0 : 1);
  };

  m.buildInfo.set({ version: options.version ?? packageVersion() }, 1);
  // Once per service and registry: a second metrics object for the same service shares the
  // series, and zeroing them again would look like a counter reset.
  if (initialiseSeries(m, service)) setFallback(undefined);

  return {
    service,
    maxTasksPerStage,
    attach(getter) {
      if (typeof getter !== 'function') throw new InvalidOptionError('getSnapshot', 'must be a function');
      getSnapshot = getter;
    },
    recordStagePlan(plan) {
      m.plannedTasks.observe({ service }, plan.plannedTasks);
      if (plan.capped) m.capped.inc({ service });
    },
    onRefresh({ outcome, rejected, active }) {
      const { source } = outcome;
      m.refresh.observe(
        { service, source, outcome: refreshOutcome(outcome), blocking: String(outcome.blocking) },
        outcome.durationMs / 1000,
      );
      if (!outcome.ok) {
        m.errors.inc({ service, source, error_type: outcome.error.errorType });
        return;
      }
      m.lastContact.set({ service, source }, now() / 1000);
      if (source === 'consul') {
        if (outcome.reread !== undefined) m.rereads.inc({ service, reason: outcome.reread });
      }
      if (rejected > 0) m.rejected.inc({ service, source }, rejected);
      // A last-resort fallback ends without a failback event: the primary simply answers again
      // while it is still the active source.
      if (active && source === fallbackFrom) setFallback(undefined);
    },
    onPublish({ snapshot, diff }) {
      seen = snapshot;
      m.updates.inc({ service, source: snapshot.source });
      if (diff.added.length > 0) m.changes.inc({ service, change: 'added' }, diff.added.length);
      if (diff.removed.length > 0) m.changes.inc({ service, change: 'removed' }, diff.removed.length);
      if (snapshot.source === 'static') m.lastContact.set({ service, source: 'static' }, snapshot.lastContactAt / 1000);
    },
    onFailover({ from, to }) {
      m.failovers.inc({ service, from, to });
      if (fallbackFrom === undefined) setFallback(from);
      else if (to === fallbackFrom) setFallback(undefined);
    },
    onStaleChange({ snapshot }) {
      seen = snapshot;
    },
    onGuardChange({ active }) {
      m.guard.set({ service }, active ? 1 : 0);
      if (active) m.guardHolds.inc({ service });
    },
    onConsulLeader({ state }) {
      // `unknown` (the agent did not answer the check) is no claim about the leader: the series
      // goes away rather than read as "no leader"; the failing reads have their own metrics.
      if (state.leader === 'unknown') m.knownLeader.remove({ service });
      else m.knownLeader.set({ service }, state.leader === 'known' ? 1 : 0);
      m.leaderContact.set({ service }, state.lastContactMs / 1000);
    },
  };
}
