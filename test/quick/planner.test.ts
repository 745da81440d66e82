import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planStage, routeTasks, taskCap } from '../../src/planner.js';
import { makeSnapshot } from '../../src/snapshot.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import type { WorkerSnapshot } from '../../src/snapshot.js';
import { ErrorCode, isWorkerResolverError } from '../../src/errors.js';
import { workers } from '../helpers/fake-source.js';
import type { WorkerCandidate } from '../../src/source.js';

function snapshotOf(candidates: WorkerCandidate[], version = 1): WorkerSnapshot {
  return makeSnapshot({
    version,
    source: 'consul',
    workers: buildWorkerSet(candidates).workers,
    updatedAt: 0,
    lastContactAt: 0,
    stale: false,
    guarded: false,
    consulIndex: undefined,
  });
}

/** Tasks per worker host when `keys` are routed by rendezvous against `s`. */
function rendezvousCounts(s: WorkerSnapshot, keys: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  const urls = routeTasks(s, {
    queryId: 'q',
    stageId: 1,
    taskCount: keys.length,
    strategy: 'rendezvous',
    taskKeys: keys,
  });
  for (const u of urls) m.set(u.hostname, (m.get(u.hostname) ?? 0) + 1);
  return m;
}

describe('taskCap and planStage', () => {
  it('caps at the worker count, and at 1 with zero workers (the query runs locally)', () => {
    assert.equal(taskCap(snapshotOf(workers(5))), 5);
    assert.equal(taskCap(snapshotOf([])), 1);
  });

  it('uses maxTasksPerStage when > 0, whatever the worker count', () => {
    assert.equal(taskCap(snapshotOf(workers(5)), { maxTasksPerStage: 3 }), 3);
    assert.equal(taskCap(snapshotOf(workers(5)), { maxTasksPerStage: 8 }), 8);
    assert.equal(taskCap(snapshotOf(workers(5)), { maxTasksPerStage: 0 }), 5);
  });

  it('plans min(desired, cap) and flags capped stages', () => {
    const s = snapshotOf(workers(4), 7);
    assert.deepEqual(planStage(s, { stageId: 1, desiredTasks: 10 }), {
      stageId: '1',
      desiredTasks: 10,
      cap: 4,
      plannedTasks: 4,
      capped: true,
      snapshotVersion: 7,
    });
    assert.equal(planStage(s, { stageId: 'b', desiredTasks: 2 }).capped, false);
    assert.equal(planStage(snapshotOf([]), { stageId: 'c', desiredTasks: 3 }).plannedTasks, 1);
  });

  it('rejects bad arguments with a TypeError naming them', () => {
    const s = snapshotOf(workers(2));
    assert.throws(() => planStage(s, { stageId: 1, desiredTasks: 0 }), {
      name: 'InvalidOptionError',
      option: 'desiredTasks',
    });
    assert.throws(() => taskCap(s, { maxTasksPerStage: -1 }), TypeError);
    assert.throws(() => routeTasks(s, { queryId: 'q', stageId: 1, taskCount: 1.5 }), { option: 'taskCount' });
  });
});

describe('routeTasks', () => {
  const five = snapshotOf(workers(5));

  it('round-robin starts at a random worker and walks the ring', () => {
    const urls = routeTasks(five, { queryId: 'q', stageId: 1, taskCount: 7, random: () => 0.5 });
    const hosts = urls.map((u) => u.hostname);
    assert.deepEqual(hosts, ['10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
    assert.equal(urls[0], five.urls[2], 'returns the snapshot URL objects, not copies');
  });

  it('round-robin spreads tasks evenly across workers', () => {
    const counts = new Map<string, number>();
    for (const u of routeTasks(five, { queryId: 'q', stageId: 1, taskCount: 50 })) {
      counts.set(u.host, (counts.get(u.host) ?? 0) + 1);
    }
    assert.deepEqual([...counts.values()], [10, 10, 10, 10, 10]);
  });

  it('seeded routes a retried query and stage identically, and different stages differently', () => {
    const a = routeTasks(five, { queryId: 'query-42', stageId: 3, taskCount: 5, strategy: 'seeded' });
    const b = routeTasks(five, { queryId: 'query-42', stageId: 3, taskCount: 5, strategy: 'seeded' });
    assert.deepEqual(a, b);
    const starts = new Set<string>();
    for (let stage = 0; stage < 20; stage += 1) {
      starts.add(routeTasks(five, { queryId: 'query-42', stageId: stage, taskCount: 1, strategy: 'seeded' })[0]!.host);
    }
    assert.ok(starts.size > 1, 'the seed depends on the stage');
  });

  it('rendezvous: when one worker of N leaves, only the keys that were on it move', () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `file-${i}.parquet`);
    const ten = snapshotOf(workers(10));
    const before = routeTasks(ten, {
      queryId: 'q',
      stageId: 1,
      taskCount: keys.length,
      strategy: 'rendezvous',
      taskKeys: keys,
    });
    const leaving = '10.0.0.4:8080';
    const nine = snapshotOf(workers(10).filter((w) => !w.url.includes('10.0.0.4:')));
    const after = routeTasks(nine, {
      queryId: 'q2',
      stageId: 1,
      taskCount: keys.length,
      strategy: 'rendezvous',
      taskKeys: keys,
    });
    let moved = 0;
    for (let i = 0; i < keys.length; i += 1) {
      if (before[i]!.host === leaving) {
        assert.notEqual(after[i]!.host, leaving);
        moved += 1;
      } else {
        assert.equal(after[i]!.host, before[i]!.host, `key ${keys[i]} moved although its worker stayed`);
      }
    }
    // Roughly 1/10 of the keys lived on the leaving worker: the hash spreads keys.
    assert.ok(moved > 100 && moved < 300, `moved ${moved}`);
  });

  it('rendezvous spreads keys across all workers and honours weights', () => {
    const keys = Array.from({ length: 3000 }, (_, i) => `k${i}`);
    const counts = (s: WorkerSnapshot): Map<string, number> => rendezvousCounts(s, keys);
    const even = counts(snapshotOf(workers(3)));
    assert.equal(even.size, 3);
    for (const c of even.values()) assert.ok(c > 800 && c < 1200, `uneven: ${c}`);
    const weighted = counts(snapshotOf([...workers(2), { ...workers(1, 3)[0]!, weight: 4 }]));
    assert.ok(weighted.get('10.0.0.3')! > 1500, `weight 4 of 6 should draw ~2/3, got ${weighted.get('10.0.0.3')}`);
  });

  it('rendezvous with every weight 0 (RFC 2782: no preference) spreads evenly; a lone 0 still draws a little', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `key-${i}`);
    const route = (s: WorkerSnapshot): Map<string, number> => rendezvousCounts(s, keys);
    const zeros = route(snapshotOf(workers(4).map((w) => ({ ...w, weight: 0 }))));
    assert.equal(zeros.size, 4);
    // 5,000 expected each; a binomial standard deviation is ~61, so ±500 cannot be luck.
    for (const [host, c] of zeros) assert.ok(c > 4500 && c < 5500, `${host} got ${c} of 20000`);
    const mixed = route(snapshotOf([...workers(3), { ...workers(1, 4)[0]!, weight: 0 }]));
    const lone = mixed.get('10.0.0.4') ?? 0;
    assert.ok(lone > 0 && lone < 200, `a weight-0 worker among weight-1 ones should draw ~0.03%, got ${lone}`);
  });

  it('routing with zero workers is ERR_NO_WORKERS', () => {
    assert.throws(
      () => routeTasks(snapshotOf([]), { queryId: 'q', stageId: 1, taskCount: 1 }),
      (err) => isWorkerResolverError(err, ErrorCode.NO_WORKERS),
    );
  });

  it('rejects taskKeys of the wrong length and unknown strategies', () => {
    assert.throws(
      () => routeTasks(five, { queryId: 'q', stageId: 1, taskCount: 2, strategy: 'rendezvous', taskKeys: ['a'] }),
      {
        option: 'taskKeys',
      },
    );
    assert.throws(() => routeTasks(five, { queryId: 'q', stageId: 1, taskCount: 2, strategy: 'nope' as 'seeded' }), {
      option: 'strategy',
    });
  });
});
