/**
 * The Prometheus metric families of worker-resolver (docs/design.md §7): names, help, label sets and
 * buckets, created once per registry and shared by every resolver registered on it (each
 * owns the series of its `service` label); point-in-time gauges read each service's snapshot
 * at scrape time. What updates them on events is `metrics.ts`.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Registry } from 'prom-client';
import type { ErrorType } from './errors.js';
import { ErrorCode, errorTypeOf } from './errors.js';
import type { RefreshOutcome } from './semconv.js';
import type { WorkerSnapshot } from './snapshot.js';
import type { SourceKind } from './source.js';

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
export interface ScrapeSource {
  snapshot(): WorkerSnapshot;
  /** The cap the planner applies to the current snapshot (`worker_resolver_stage_task_cap`). */
  taskCap(): number;
}

/** The families of one registry, shared by every service registered on it. */
export interface Families {
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
    collect: each((service, s) => cap.set({ service }, s.taskCap())),
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
      help: 'Whether the Consul cluster has a leader, asked every consul.leaderCheckMs through the agent (GET /v1/status/leader): 1 yes, 0 no (quorum lost: the workers served are the last ones the cluster agreed on); absent while unknown (the agent did not answer).',
      labelNames: ['service'],
      registers,
    }),
    leaderContact: new Gauge({
      name: 'worker_resolver_consul_last_contact_seconds',
      help: 'Seconds since the leader check last saw a Consul leader (0 while there is one; since the start if none was seen yet).',
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

/**
 * The families of `registry`, created on first use. After `registry.clear()` the remembered
 * families are no longer registered, so they are created afresh.
 */
export function familiesOf(registry: Registry): Families {
  const known = familiesByRegistry.get(registry);
  if (known !== undefined && registry.getSingleMetric('worker_resolver_workers') === known.workers) return known;
  const created = createFamilies(registry);
  familiesByRegistry.set(registry, created);
  return created;
}

/**
 * Sets every series of `service` known up front to 0, once per service and registry; false
 * if that was done already. `worker_resolver_consul_known_leader` and `_last_contact_seconds`
 * stay absent until the first leader check (consul/leader.ts): a 0 would read as "no leader" /
 * "in touch" before anything is known. The fallback gauge is its caller's.
 */
export function initialiseSeries(m: Families, service: string): boolean {
  if (m.initialised.has(service)) return false;
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
  return true;
}
