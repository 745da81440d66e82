import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Registry, register as globalRegister } from 'prom-client';
import { ErrorCode, InvalidOptionError, WorkerResolverError, errorTypeOf } from '../../src/errors.js';
import type { RefreshEvent } from '../../src/events.js';
import { createResolverMetrics } from '../../src/metrics.js';
import type { ResolverMetrics } from '../../src/metrics.js';
import { planStage } from '../../src/planner.js';
import { packageVersion } from '../../src/version.js';
import { makeSnapshot } from '../../src/snapshot.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import type { WorkerSnapshot } from '../../src/snapshot.js';
import type { SourceOutcome } from '../../src/source.js';
import { workers } from '../helpers/fake-source.js';
import { startEngine } from '../helpers/engine-harness.js';

/** The docs/design.md §7 table plus the extras: name → [type, label names]. */
const CONTRACT: Record<string, [string, string[]]> = {
  worker_resolver_workers: ['gauge', ['service', 'source']],
  worker_resolver_snapshot_updates_total: ['counter', ['service', 'source']],
  worker_resolver_worker_changes_total: ['counter', ['service', 'change']],
  worker_resolver_refresh_duration_seconds: ['histogram', ['service', 'source', 'outcome', 'blocking']],
  worker_resolver_source_errors_total: ['counter', ['service', 'source', 'error_type']],
  worker_resolver_fallback_active: ['gauge', ['service']],
  worker_resolver_failovers_total: ['counter', ['service', 'from', 'to']],
  worker_resolver_last_update_timestamp_seconds: ['gauge', ['service']],
  worker_resolver_last_contact_timestamp_seconds: ['gauge', ['service', 'source']],
  worker_resolver_snapshot_stale: ['gauge', ['service']],
  worker_resolver_stage_task_cap: ['gauge', ['service']],
  worker_resolver_stage_planned_tasks: ['histogram', ['service']],
  worker_resolver_stages_capped_total: ['counter', ['service']],
  worker_resolver_build_info: ['gauge', ['version']],
  worker_resolver_rejected_entries_total: ['counter', ['service', 'source']],
  worker_resolver_guard_active: ['gauge', ['service']],
  worker_resolver_snapshot_version: ['gauge', ['service']],
  worker_resolver_consul_known_leader: ['gauge', ['service']],
  worker_resolver_consul_last_contact_seconds: ['gauge', ['service']],
  worker_resolver_consul_leader_rereads_total: ['counter', ['service', 'reason']],
  worker_resolver_guard_holds_total: ['counter', ['service']],
};

/** Gauges with no series until Consul answers: a 0 would claim "no leader" / "in touch with it". */
const ABSENT_UNTIL_KNOWN = new Set([
  'worker_resolver_consul_known_leader',
  'worker_resolver_consul_last_contact_seconds',
]);

/** A metric family as `getMetricsAsJSON` returns it (histogram samples carry their series name). */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values: readonly { labels: Record<string, string | number>; value: number; metricName?: string }[];
}

async function families(registry: Registry): Promise<Map<string, Family>> {
  const list = (await registry.getMetricsAsJSON()) as unknown as Family[];
  return new Map(list.map((m) => [m.name, m]));
}

/** The value of the series of `name` whose labels include `labels` (histograms: the `_count` sample). */
async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const family = (await families(registry)).get(name);
  assert.ok(family, `metric ${name} exists`);
  const wanted = Object.entries(labels);
  const sample = family.values.find(
    (v) =>
      (family.type !== 'histogram' || v.metricName === `${name}_count`) &&
      wanted.every(([k, val]) => String(v.labels[k]) === val),
  );
  return sample?.value;
}

function refresh(outcome: Partial<SourceOutcome> & Pick<SourceOutcome, 'ok'>, extra: Partial<RefreshEvent> = {}) {
  const full = outcome.ok
    ? { source: 'consul', workers: [], rejected: 0, unchanged: false, durationMs: 12, blocking: false, ...outcome }
    : {
        source: 'consul',
        error: new WorkerResolverError(ErrorCode.CONSUL_ACL, 'denied'),
        durationMs: 3,
        blocking: false,
        retryInMs: 10,
        ...outcome,
      };
  return { service: 'svc', outcome: full as SourceOutcome, rejected: 0, active: true, ...extra };
}

function harness(metrics: ResolverMetrics) {
  return startEngine({
    failoverAfterFailures: 2,
    guard: { threshold: 0.5, minWorkers: 3, holdMs: 10_000 },
    observers: [metrics],
  });
}

describe('metrics: the docs/design.md §7 contract', () => {
  it('registers every metric with its type and labels, each known series initialised to 0', async () => {
    const registry = new Registry();
    createResolverMetrics({ registry, service: 'svc' });
    const all = await families(registry);
    for (const [name, [type, labels]] of Object.entries(CONTRACT)) {
      const family = all.get(name);
      assert.ok(family, `${name} is registered`);
      assert.equal(family.type, type, `${name} type`);
      assert.ok(family.help.length > 10, `${name} has help`);
      if (ABSENT_UNTIL_KNOWN.has(name)) assert.equal(family.values.length, 0, `${name} has no series yet`);
      else assert.ok(family.values.length > 0, `${name} has series before any event`);
      for (const sample of family.values) {
        const keys = Object.keys(sample.labels).filter((k) => k !== 'le');
        assert.deepEqual(keys.sort(), [...labels].sort(), `${name} labels`);
      }
    }
    assert.deepEqual([...all.keys()].sort(), Object.keys(CONTRACT).sort(), 'no unexpected metric');
    assert.equal(await value(registry, 'worker_resolver_workers', { source: 'consul' }), 0);
    assert.equal(await value(registry, 'worker_resolver_source_errors_total', { error_type: 'acl' }), 0);
    // Only the error types a source can report: no dns/acl, no consul/servfail.
    assert.equal(
      await value(registry, 'worker_resolver_source_errors_total', { source: 'dns', error_type: 'acl' }),
      undefined,
    );
    assert.equal(
      await value(registry, 'worker_resolver_source_errors_total', { source: 'consul', error_type: 'servfail' }),
      undefined,
    );
    assert.equal(
      await value(registry, 'worker_resolver_source_errors_total', { source: 'dns', error_type: 'servfail' }),
      0,
    );
    // One series per (source, type) that one of the source's error codes maps to, and no other.
    const possible = (prefix: string): Set<string> =>
      new Set(
        Object.values(ErrorCode)
          .filter((c) => c.startsWith(prefix))
          .map((c) => errorTypeOf(c)),
      );
    assert.equal(
      all.get('worker_resolver_source_errors_total')?.values.length,
      possible('ERR_CONSUL_').size + possible('ERR_DNS_').size,
    );
    assert.equal(await value(registry, 'worker_resolver_worker_changes_total', { change: 'removed' }), 0);
    assert.equal(await value(registry, 'worker_resolver_failovers_total', { from: 'consul', to: 'dns' }), 0);
    assert.equal(
      await value(registry, 'worker_resolver_refresh_duration_seconds', {
        source: 'consul',
        outcome: 'unchanged',
        blocking: 'true',
      }),
      0,
    );
    assert.equal(await value(registry, 'worker_resolver_stage_task_cap', {}), 1, 'no workers: one task per stage');
    assert.equal(await value(registry, 'worker_resolver_build_info', { version: packageVersion() }), 1);
  });

  it('never touches the global registry and collects no default metrics', async () => {
    const before = globalRegister.getMetricsAsArray().length;
    const registry = new Registry();
    createResolverMetrics({ registry, service: 'svc', version: '9.9.9' });
    assert.equal(globalRegister.getMetricsAsArray().length, before);
    assert.equal(before, 0);
    const text = await registry.metrics();
    assert.doesNotMatch(text, /^process_|^nodejs_/m);
    assert.match(text, /^worker_resolver_build_info\{version="9\.9\.9"\} 1$/m);
  });

  it('keeps registries apart and shares one registry between services', async () => {
    const a = new Registry();
    const b = new Registry();
    const ma = createResolverMetrics({ registry: a, service: 'one' });
    createResolverMetrics({ registry: b, service: 'one' });
    const mt = createResolverMetrics({ registry: a, service: 'two' });
    ma.onRefresh?.(refresh({ ok: false }));
    mt.onRefresh?.(refresh({ ok: false }));
    mt.onRefresh?.(refresh({ ok: false }));
    const errors = { source: 'consul', error_type: 'acl' };
    assert.equal(await value(a, 'worker_resolver_source_errors_total', { service: 'one', ...errors }), 1);
    assert.equal(await value(a, 'worker_resolver_source_errors_total', { service: 'two', ...errors }), 2);
    assert.equal(await value(b, 'worker_resolver_source_errors_total', { service: 'one', ...errors }), 0);
    // A second metrics object for the same service shares its series and resets nothing.
    createResolverMetrics({ registry: a, service: 'one' });
    assert.equal(await value(a, 'worker_resolver_source_errors_total', { service: 'one', ...errors }), 1);
    // After registry.clear(), metrics are registered afresh.
    a.clear();
    createResolverMetrics({ registry: a, service: 'one' });
    assert.equal(await value(a, 'worker_resolver_source_errors_total', { service: 'one', ...errors }), 0);
  });

  it('rejects bad options with InvalidOptionError', () => {
    const registry = new Registry();
    assert.throws(() => createResolverMetrics({ registry, service: '' }), InvalidOptionError);
    assert.throws(() => createResolverMetrics({ registry: {} as Registry, service: 's' }), InvalidOptionError);
    assert.throws(() => createResolverMetrics({ registry, service: 's', maxTasksPerStage: -1 }), InvalidOptionError);
  });
});

describe('metrics: values after events', () => {
  it('observes each request in the refresh histogram with outcome and blocking', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc', now: () => 1_700_000_123_000 });
    m.onRefresh?.(refresh({ ok: true, durationMs: 20, blocking: false }, { rejected: 2 }));
    m.onRefresh?.(refresh({ ok: true, unchanged: true, durationMs: 300_000, blocking: true }));
    m.onRefresh?.(refresh({ ok: false, durationMs: 5, blocking: true }));
    const h = 'worker_resolver_refresh_duration_seconds';
    assert.equal(await value(registry, h, { source: 'consul', outcome: 'success', blocking: 'false' }), 1);
    assert.equal(await value(registry, h, { source: 'consul', outcome: 'unchanged', blocking: 'true' }), 1);
    assert.equal(await value(registry, h, { source: 'consul', outcome: 'error', blocking: 'true' }), 1);
    const text = await registry.metrics();
    // A 5-minute long poll lands in the 300 s bucket, not in +Inf.
    assert.match(
      text,
      /worker_resolver_refresh_duration_seconds_bucket\{le="300",service="svc",source="consul",outcome="unchanged",blocking="true"\} 1/,
    );
    assert.match(
      text,
      /worker_resolver_refresh_duration_seconds_bucket\{le="120",service="svc",source="consul",outcome="unchanged",blocking="true"\} 0/,
    );
    assert.equal(await value(registry, 'worker_resolver_source_errors_total', { error_type: 'acl' }), 1);
    assert.equal(await value(registry, 'worker_resolver_rejected_entries_total', { source: 'consul' }), 2);
    assert.equal(
      await value(registry, 'worker_resolver_last_contact_timestamp_seconds', { source: 'consul' }),
      1_700_000_123,
    );
    assert.equal(await value(registry, 'worker_resolver_last_contact_timestamp_seconds', { source: 'dns' }), 0);
  });

  it('follows the engine: publishes, changes, failover, failback, staleness, guard', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc' });
    const { engine, clock, consul, dns } = harness(m);
    const v = (name: string, labels: Record<string, string> = {}) => value(registry, name, labels);

    consul.answer(workers(4), { index: 10 });
    assert.equal(await v('worker_resolver_workers', { source: 'consul' }), 4);
    assert.equal(await v('worker_resolver_workers', { source: 'dns' }), 0);
    assert.equal(await v('worker_resolver_snapshot_updates_total', { source: 'consul' }), 1);
    assert.equal(await v('worker_resolver_worker_changes_total', { change: 'added' }), 4);
    assert.equal(await v('worker_resolver_snapshot_version'), 1);
    assert.equal(await v('worker_resolver_last_update_timestamp_seconds'), engine.current.updatedAt / 1000);
    assert.equal(await v('worker_resolver_stage_task_cap'), 4);

    consul.answer(workers(3, 2), { index: 11 }); // 2, 3 and 4 stay; 1 leaves
    assert.equal(await v('worker_resolver_worker_changes_total', { change: 'removed' }), 1);
    assert.equal(await v('worker_resolver_workers', { source: 'consul' }), 3);

    consul.fail();
    consul.fail(); // failoverAfter = 2
    assert.equal(await v('worker_resolver_failovers_total', { from: 'consul', to: 'dns' }), 1);
    assert.equal(await v('worker_resolver_fallback_active'), 1);
    assert.equal(await v('worker_resolver_source_errors_total', { source: 'consul', error_type: 'unreachable' }), 2);
    dns.answer(workers(3, 2));
    assert.equal(await v('worker_resolver_workers', { source: 'dns' }), 3);
    assert.equal(await v('worker_resolver_workers', { source: 'consul' }), 0);
    assert.equal(await v('worker_resolver_snapshot_updates_total', { source: 'dns' }), 1);

    consul.answer(workers(3, 2), { index: 12 });
    assert.equal(await v('worker_resolver_failovers_total', { from: 'dns', to: 'consul' }), 1);
    assert.equal(await v('worker_resolver_fallback_active'), 0);
    assert.equal(await v('worker_resolver_workers', { source: 'consul' }), 3);

    clock.advance(61_000);
    assert.equal(await v('worker_resolver_snapshot_stale'), 1);
    consul.answer(workers(3, 2), { index: 13 });
    assert.equal(await v('worker_resolver_snapshot_stale'), 0);

    consul.answer(workers(1), { index: 14 }); // 1 of 3 < 0.5: the guard holds
    assert.equal(await v('worker_resolver_guard_active'), 1);
    assert.equal(await v('worker_resolver_workers', { source: 'consul' }), 3);
    clock.advance(10_001);
    assert.equal(await v('worker_resolver_guard_active'), 0);
    assert.equal(await v('worker_resolver_guard_holds_total'), 1, 'the hold is recorded after it ended');
    assert.equal(await v('worker_resolver_workers', { source: 'consul' }), 1);
    await engine.close();
  });

  it('clears a last-resort fallback when the primary answers again', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc' });
    m.onFailover?.({ service: 'svc', from: 'consul', to: 'static', reason: 'last-resort' });
    assert.equal(await value(registry, 'worker_resolver_fallback_active', {}), 1);
    m.onRefresh?.(refresh({ ok: true, source: 'dns' }, { active: false }));
    assert.equal(await value(registry, 'worker_resolver_fallback_active', {}), 1);
    m.onRefresh?.(refresh({ ok: true }, { active: true }));
    assert.equal(await value(registry, 'worker_resolver_fallback_active', {}), 0);
  });

  it('reads point-in-time values from the attached snapshot at scrape time', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc', maxTasksPerStage: 0 });
    let current: WorkerSnapshot = makeSnapshot({
      version: 7,
      source: 'dns',
      workers: buildWorkerSet(workers(5)).workers,
      updatedAt: 1_700_000_000_000,
      lastContactAt: 1_700_000_000_000,
      stale: true,
      guarded: false,
      consulIndex: undefined,
    });
    m.attach(() => current);
    assert.equal(await value(registry, 'worker_resolver_workers', { source: 'dns' }), 5);
    assert.equal(await value(registry, 'worker_resolver_snapshot_stale', {}), 1);
    assert.equal(await value(registry, 'worker_resolver_snapshot_version', {}), 7);
    assert.equal(await value(registry, 'worker_resolver_stage_task_cap', {}), 5);
    current = makeSnapshot({
      ...current,
      workers: buildWorkerSet(workers(2)).workers,
      stale: false,
      consulIndex: undefined,
    });
    assert.equal(await value(registry, 'worker_resolver_workers', { source: 'dns' }), 2);
    assert.equal(await value(registry, 'worker_resolver_snapshot_stale', {}), 0);
    assert.throws(() => m.attach(undefined as unknown as () => WorkerSnapshot), InvalidOptionError);
  });

  it('records stage plans; the cap gauge honours maxTasksPerStage', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc', maxTasksPerStage: 8 });
    const snapshot = makeSnapshot({
      version: 1,
      source: 'consul',
      workers: buildWorkerSet(workers(3)).workers,
      updatedAt: 1,
      lastContactAt: 1,
      stale: false,
      guarded: false,
      consulIndex: 5,
    });
    m.attach(() => snapshot);
    m.recordStagePlan(planStage(snapshot, { stageId: 1, desiredTasks: 20 }, { maxTasksPerStage: 8 }));
    m.recordStagePlan(planStage(snapshot, { stageId: 2, desiredTasks: 2 }, { maxTasksPerStage: 8 }));
    assert.equal(await value(registry, 'worker_resolver_stage_task_cap', {}), 8);
    assert.equal(await value(registry, 'worker_resolver_stages_capped_total', {}), 1);
    assert.equal(await value(registry, 'worker_resolver_stage_planned_tasks', {}), 2);
    const text = await registry.metrics();
    assert.match(text, /^worker_resolver_stage_planned_tasks_sum\{service="svc"\} 10$/m);
    assert.match(text, /^worker_resolver_stage_planned_tasks_bucket\{le="2",service="svc"\} 1$/m);
  });
});

/** histogram_quantile as Prometheus computes it, from one series' cumulative buckets. */
function quantile(q: number, buckets: readonly { le: number; count: number }[]): number {
  const total = buckets.at(-1)?.count ?? 0;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of buckets) {
    if (b.count >= rank) return lower + ((b.le - lower) * (rank - below)) / (b.count - below);
    lower = b.le;
    below = b.count;
  }
  return Number.POSITIVE_INFINITY;
}

async function bucketsOf(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<{ le: number; count: number }[]> {
  const family = (await families(registry)).get(name);
  assert.ok(family);
  return family.values
    .filter((v) => v.metricName === `${name}_bucket` && Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .map((v) => ({ le: Number(v.labels['le']), count: v.value }))
    .filter((b) => Number.isFinite(b.le))
    .sort((a, b) => a.le - b.le);
}

describe('metrics: buckets fit the data', () => {
  it('sub-millisecond loopback requests get real quantiles, not the first bucket', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc' });
    for (let i = 0; i < 100; i += 1) m.onRefresh?.(refresh({ ok: true, durationMs: 0.3 + i / 1000, blocking: false }));
    const b = await bucketsOf(registry, 'worker_resolver_refresh_duration_seconds', {
      source: 'consul',
      outcome: 'success',
      blocking: 'false',
    });
    const p50 = quantile(0.5, b);
    const p99 = quantile(0.99, b);
    assert.ok(p50 < 0.001 && p99 < 0.001, `p50 ${p50}, p99 ${p99}: all requests took < 0.4 ms`);
  });

  it('a stage cap of 5 never reads as more than 5 planned tasks', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc' });
    const snapshot = makeSnapshot({
      version: 1,
      source: 'consul',
      workers: buildWorkerSet(workers(5)).workers,
      updatedAt: 1,
      lastContactAt: 1,
      stale: false,
      guarded: false,
      consulIndex: 1,
    });
    for (let i = 0; i < 100; i += 1) m.recordStagePlan(planStage(snapshot, { stageId: i, desiredTasks: 16 }));
    const b = await bucketsOf(registry, 'worker_resolver_stage_planned_tasks', {});
    const p99 = quantile(0.99, b);
    assert.ok(p99 <= 5 && p99 > 4, `p99 of planned tasks is ${p99} with every stage planned at 5`);
  });

  it('a quiet 5-minute long poll (wait + up to wait/16 jitter) lands below the 330 s bucket', async () => {
    const registry = new Registry();
    const m = createResolverMetrics({ registry, service: 'svc' });
    m.onRefresh?.(refresh({ ok: true, unchanged: true, durationMs: 300_000 + 300_000 / 16, blocking: true }));
    const b = await bucketsOf(registry, 'worker_resolver_refresh_duration_seconds', {
      source: 'consul',
      outcome: 'unchanged',
      blocking: 'true',
    });
    assert.equal(b.find((x) => x.le === 300)?.count, 0);
    assert.equal(b.find((x) => x.le === 330)?.count, 1);
  });
});
