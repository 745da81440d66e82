/**
 * Prometheus metrics (DESIGN §7), on a prom-client `Registry` the caller owns.
 *
 * Following prom-client's guidance for libraries (its issue #186): nothing is registered on
 * the global registry and `collectDefaultMetrics` is never called; the application merges
 * registries if it wants one `/metrics`.
 *
 * Several resolvers (one per worker service) may share one registry: the metric families
 * are created once per registry and shared, each resolver owning the series of its
 * `service` label. Every label is bounded: service, source (3 values), outcome (3),
 * blocking (2), error_type (the {@link ErrorType} enum), change (2), from/to (sources),
 * version. Never an address, index, query id or token.
 *
 * Point-in-time values (worker count, staleness, task cap, snapshot version, last update)
 * are read from the snapshot at scrape time, so they are exact whenever Prometheus looks.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { ErrorType } from './errors.js';
import { ErrorCode, InvalidOptionError, errorTypeOf } from './errors.js';
import type { ResolverObserver } from './events.js';
import { taskCap } from './planner.js';
import type { StagePlan } from './planner.js';
import { refreshOutcome } from './semconv.js';
import { packageVersion } from './version.js';
import type { RefreshOutcome } from './semconv.js';
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

const SOURCES: readonly SourceKind[] = ['consul', 'dns', 'static'];
/**
 * The error types each source can really report, derived from the error codes (`ERR_CONSUL_*`
 * and `ERR_DNS_*`): only these series are initialised to 0, so a dashboard is not padded with
 * combinations that cannot occur (a DNS `acl`, a Consul `servfail`).
 */
const SOURCE_ERROR_TYPES: Readonly<Record<'consul' | 'dns', readonly ErrorType[]>> = (() => {
  const of = (prefix: string): ErrorType[] => [
    ...new Set(
      Object.values(ErrorCode)
        .filter((code) => code.startsWith(prefix))
        .map((code) => errorTypeOf(code)),
    ),
  ];
  return { consul: of('ERR_CONSUL_'), dns: of('ERR_DNS_') };
})();
/** The (source, outcome, blocking) combinations a source can produce: DNS never blocks nor says "unchanged". */
const REFRESH_LABELS: readonly { source: SourceKind; outcome: RefreshOutcome; blocking: 'true' | 'false' }[] = [
  ...(['success', 'unchanged', 'error'] as const).flatMap((outcome) =>
    (['true', 'false'] as const).map((blocking) => ({ source: 'consul' as const, outcome, blocking })),
  ),
  { source: 'dns', outcome: 'success', blocking: 'false' },
  { source: 'dns', outcome: 'error', blocking: 'false' },
];
const FAILOVER_PAIRS: readonly (readonly [SourceKind, SourceKind])[] = [
  ['consul', 'dns'],
  ['dns', 'consul'],
  ['consul', 'static'],
  ['dns', 'static'],
];

/**
 * Refresh buckets, in seconds. One histogram holds two very different populations, told
 * apart by `blocking`: non-blocking requests — on loopback or to a local agent a fraction of
 * a millisecond, hence the buckets from 250 µs (starting at 5 ms put 95% of them in the first
 * bucket and made p50/p99 interpolation artefacts) — and long polls, held up to `wait`
 * (default 5 min, max 10 min) plus Consul's jitter of up to wait/16. 330 s and 660 s sit just
 * above a 5-minute and a 10-minute wait plus jitter, so a quiet poll lands in its own bucket
 * and a hold that overran shows; 900 s keeps client timeouts out of `+Inf`.
 */
const REFRESH_BUCKETS = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 330, 600,
  660, 900,
];
/**
 * Tasks per stage are small integers: one bucket per integer up to 8, then steps that still
 * land typical caps (10, 12, 16, ...) on a boundary, so a quantile never exceeds the cap it
 * reports (powers of two put a cap of 5 in (4, 8] and showed a p99 of 7.78).
 */
const PLANNED_TASKS_BUCKETS = [
  1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
];

/** What a scrape asks each service for. */
interface ScrapeSource {
  snapshot(): WorkerSnapshot;
  readonly maxTasksPerStage: number;
}

/** The families of one registry, shared by every service registered on it. */
interface Families {
  /** Scrape-time readers by service; the last created metrics object of a service wins. */
  readonly services: Map<string, ScrapeSource>;
  /** Services whose series were initialised to 0 already. */
  readonly initialised: Set<string>;
  readonly workers: Gauge<'service' | 'source'>;
  readonly updates: Counter<'service' | 'source'>;
  readonly changes: Counter<'service' | 'change'>;
  readonly refresh: Histogram<'service' | 'source' | 'outcome' | 'blocking'>;
  readonly errors: Counter<'service' | 'source' | 'error_type'>;
  readonly fallback: Gauge<'service'>;
  readonly failovers: Counter<'service' | 'from' | 'to'>;
  readonly lastUpdate: Gauge<'service'>;
  readonly lastContact: Gauge<'service' | 'source'>;
  readonly stale: Gauge<'service'>;
  readonly taskCap: Gauge<'service'>;
  readonly plannedTasks: Histogram<'service'>;
  readonly capped: Counter<'service'>;
  readonly buildInfo: Gauge<'version'>;
  readonly rejected: Counter<'service' | 'source'>;
  readonly guard: Gauge<'service'>;
  readonly version: Gauge<'service'>;
  readonly knownLeader: Gauge<'service'>;
  readonly leaderContact: Gauge<'service'>;
  readonly rereads: Counter<'service' | 'reason'>;
  readonly guardHolds: Counter<'service'>;
}

/** Families per registry: weak, so a dropped registry takes its families with it. */
const familiesByRegistry = new WeakMap<Registry, Families>();

function createFamilies(registry: Registry): Families {
  const registers = [registry];
  const services = new Map<string, ScrapeSource>();
  /** Runs `read` for every service at scrape time. */
  const each = (read: (service: string, source: ScrapeSource) => void) => () => {
    for (const [service, source] of services) read(service, source);
  };
  const workers: Gauge<'service' | 'source'> = new Gauge({
    name: 'worker_resolver_workers',
    help: 'Workers in the current snapshot, by the source they came from (0 for the other sources).',
    labelNames: ['service', 'source'],
    registers,
    collect: each((service, s) => {
      const snap = s.snapshot();
      for (const source of SOURCES) {
        workers.set({ service, source }, snap.version > 0 && snap.source === source ? snap.workers.length : 0);
      }
    }),
  });
  const lastUpdate: Gauge<'service'> = new Gauge({
    name: 'worker_resolver_last_update_timestamp_seconds',
    help: 'When the worker set was last published (Unix time, seconds; 0 before the first publish).',
    labelNames: ['service'],
    registers,
    collect: each((service, s) => lastUpdate.set({ service }, s.snapshot().updatedAt / 1000)),
  });
  const stale: Gauge<'service'> = new Gauge({
    name: 'worker_resolver_snapshot_stale',
    help: '1 while the snapshot source has not answered for longer than maxStaleness (the last good workers are still served).',
    labelNames: ['service'],
    registers,
    collect: each((service, s) => stale.set({ service }, s.snapshot().stale ? 1 : 0)),
  });
  const cap: Gauge<'service'> = new Gauge({
    name: 'worker_resolver_stage_task_cap',
    help: 'Tasks per stage the planner allows now: maxTasksPerStage if set, else max(1, workers).',
    labelNames: ['service'],
    registers,
    collect: each((service, s) =>
      cap.set({ service }, taskCap(s.snapshot(), { maxTasksPerStage: s.maxTasksPerStage })),
    ),
  });
  const version: Gauge<'service'> = new Gauge({
    name: 'worker_resolver_snapshot_version',
    help: 'Version of the current snapshot: grows by 1 per publish (0 before the first).',
    labelNames: ['service'],
    registers,
    collect: each((service, s) => version.set({ service }, s.snapshot().version)),
  });
  return {
    services,
    initialised: new Set(),
    workers,
    lastUpdate,
    stale,
    taskCap: cap,
    version,
    updates: new Counter({
      name: 'worker_resolver_snapshot_updates_total',
      help: 'Snapshots published, by the source of the new snapshot.',
      labelNames: ['service', 'source'],
      registers,
    }),
    changes: new Counter({
      name: 'worker_resolver_worker_changes_total',
      help: 'Workers added to or removed from the published set.',
      labelNames: ['service', 'change'],
      registers,
    }),
    refresh: new Histogram({
      name: 'worker_resolver_refresh_duration_seconds',
      help: 'Duration of each source request; blocking="true" ones include the Consul long-poll wait.',
      labelNames: ['service', 'source', 'outcome', 'blocking'],
      buckets: REFRESH_BUCKETS,
      registers,
    }),
    errors: new Counter({
      name: 'worker_resolver_source_errors_total',
      help: 'Failed source requests, by bounded error type.',
      labelNames: ['service', 'source', 'error_type'],
      registers,
    }),
    fallback: new Gauge({
      name: 'worker_resolver_fallback_active',
      help: '1 while the resolver serves a fallback source (DNS SRV or static) instead of its primary.',
      labelNames: ['service'],
      registers,
    }),
    failovers: new Counter({
      name: 'worker_resolver_failovers_total',
      help: 'Switches of the source that drives the snapshot (failover and failback).',
      labelNames: ['service', 'from', 'to'],
      registers,
    }),
    lastContact: new Gauge({
      name: 'worker_resolver_last_contact_timestamp_seconds',
      help: 'When each source last answered successfully (Unix time, seconds; 0 = never).',
      labelNames: ['service', 'source'],
      registers,
    }),
    plannedTasks: new Histogram({
      name: 'worker_resolver_stage_planned_tasks',
      help: 'Tasks planned per stage.',
      labelNames: ['service'],
      buckets: PLANNED_TASKS_BUCKETS,
      registers,
    }),
    capped: new Counter({
      name: 'worker_resolver_stages_capped_total',
      help: 'Planned stages whose desired task count exceeded the cap.',
      labelNames: ['service'],
      registers,
    }),
    buildInfo: new Gauge({
      name: 'worker_resolver_build_info',
      help: 'Always 1; the version label carries the worker-resolver version.',
      labelNames: ['version'],
      registers,
    }),
    rejected: new Counter({
      name: 'worker_resolver_rejected_entries_total',
      help: 'Entries of source answers that could not become workers (bad address, port or URL).',
      labelNames: ['service', 'source'],
      registers,
    }),
    knownLeader: new Gauge({
      name: 'worker_resolver_consul_known_leader',
      help: 'X-Consul-KnownLeader of the latest Consul answer: 0 means the cluster had no leader and stale reads may be arbitrarily old.',
      labelNames: ['service'],
      registers,
    }),
    leaderContact: new Gauge({
      name: 'worker_resolver_consul_last_contact_seconds',
      help: 'X-Consul-LastContact of the latest Consul answer: how long its server had not heard from the leader (0 on the leader).',
      labelNames: ['service'],
      registers,
    }),
    rereads: new Counter({
      name: 'worker_resolver_consul_leader_rereads_total',
      help: 'Stale/cached answers re-read from the leader: reason="older-index" (older than the last one used) or "max-stale" (server out of touch with the leader for longer than maxStaleMs).',
      labelNames: ['service', 'reason'],
      registers,
    }),
    guardHolds: new Counter({
      name: 'worker_resolver_guard_holds_total',
      help: 'Times the mass-failure guard started holding the last good set (a record that outlives the guard_active gauge).',
      labelNames: ['service'],
      registers,
    }),
    guard: new Gauge({
      name: 'worker_resolver_guard_active',
      help: '1 while the mass-failure guard holds the last good set because the source suddenly reports far fewer workers.',
      labelNames: ['service'],
      registers,
    }),
  };
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
  let f = familiesByRegistry.get(registry);
  // After `registry.clear()` the remembered families are no longer registered: start afresh.
  if (f === undefined || registry.getSingleMetric('worker_resolver_workers') !== f.workers) {
    f = createFamilies(registry);
    familiesByRegistry.set(registry, f);
  }
  const m = f;

  /** The last snapshot seen in events; the scrape-time source until `attach` is called. */
  let seen: WorkerSnapshot = EMPTY_SNAPSHOT;
  let getSnapshot: () => WorkerSnapshot = () => seen;
  m.services.set(service, { snapshot: () => getSnapshot(), maxTasksPerStage });
  /** The source the resolver fell back from; undefined while no fallback is active. */
  let fallbackFrom: SourceKind | undefined;
  const setFallback = (from: SourceKind | undefined): void => {
    fallbackFrom = from;
    m.fallback.set({ service }, from === undefined ? 0 : 1);
  };

  m.buildInfo.set({ version: options.version ?? packageVersion() }, 1);
  // Once per service and registry: a second metrics object for the same service shares the
  // series, and zeroing them again would look like a counter reset.
  if (!m.initialised.has(service)) {
    m.initialised.add(service);
    for (const source of SOURCES) {
      m.updates.inc({ service, source }, 0);
      m.lastContact.set({ service, source }, 0);
      m.rejected.inc({ service, source }, 0);
    }
    for (const source of ['consul', 'dns'] as const) {
      for (const error_type of SOURCE_ERROR_TYPES[source]) m.errors.inc({ service, source, error_type }, 0);
    }
    for (const labels of REFRESH_LABELS) m.refresh.zero({ service, ...labels });
    for (const change of ['added', 'removed']) m.changes.inc({ service, change }, 0);
    for (const [from, to] of FAILOVER_PAIRS) m.failovers.inc({ service, from, to }, 0);
    m.plannedTasks.zero({ service });
    m.capped.inc({ service }, 0);
    m.guard.set({ service }, 0);
    m.guardHolds.inc({ service }, 0);
    for (const reason of ['older-index', 'max-stale']) m.rereads.inc({ service, reason }, 0);
    // worker_resolver_consul_known_leader and _last_contact_seconds stay absent until Consul
    // answers: a 0 would read as "no leader" / "in touch" before anything is known.
    setFallback(undefined);
  }

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
        if (outcome.knownLeader !== undefined) m.knownLeader.set({ service }, outcome.knownLeader ? 1 : 0);
        if (outcome.lastContactMs !== undefined) m.leaderContact.set({ service }, outcome.lastContactMs / 1000);
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
  };
}
