/**
 * The worker-set build driven by a source's edit (large answers, docs/performance.md): with a `CandidateEdit` from
 * the list it built last, the build costs what changed (it reads none of the candidates) and
 * gives exactly what a full build gives; an edit that does not fit is ignored, never
 * trusted. A large full build in steps (`startBuild`, the engine's way of keeping the event
 * loop free) gives exactly what the one-go build gives. And `applyRuns`, which turns the reader
 * thread's runs into that edit.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { applyRuns } from '../../src/consul/reader-thread.js';
import type { CandidateEdit, WorkerCandidate } from '../../src/source.js';
import { finishNow } from '../../src/event-loop-turns.js';
import type { BuiltWorkerSet } from '../../src/worker-cache.js';
import { diffWorkers } from '../../src/worker-diff.js';
import { buildWorkerSet, startBuild } from '../../src/worker-set.js';

function candidate(i: number, status: WorkerCandidate['status'] = 'passing'): WorkerCandidate {
  return {
    url: `http://10.0.${i >> 8}.${i & 255}:8080`,
    id: `w-${i}`,
    node: `n-${i}`,
    address: `10.0.${i >> 8}.${i & 255}`,
    port: 8080,
    tags: ['a'],
    meta: { zone: `z${i % 3}` },
    status,
    weight: 1,
  };
}

/** A list whose element reads are counted (`length` is not an element read). */
function counted(list: readonly WorkerCandidate[]): { list: readonly WorkerCandidate[]; reads: () => number } {
  let reads = 0;
  const proxy = new Proxy(list, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads += 1;
      if (key === Symbol.iterator) reads += 1;
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { list: proxy, reads: () => reads };
}

const shape = (ws: readonly { url: URL; id: string; status: string }[]): string[] =>
  ws.map((w) => `${w.url.href} ${w.id} ${w.status}`);

describe('worker set built from an edit', () => {
  const first = Array.from({ length: 200 }, (_, i) => candidate(i));

  it('reads none of the candidates and equals a full build, its diff and URLs included', () => {
    const built = buildWorkerSet(first);
    const removed = [first[7]!, first[150]!];
    const added = [candidate(7, 'warning'), candidate(500)];
    const next = [...first.filter((c) => !removed.includes(c)), ...added];
    const { list, reads } = counted(next);
    const edit: CandidateEdit = { from: first, removed, added };
    const set = buildWorkerSet(list, built.cache, edit);
    assert.equal(reads(), 0, 'the edit path reads no candidate');
    const full = buildWorkerSet(next);
    assert.deepEqual(shape(set.workers), shape(full.workers));
    assert.deepEqual(
      set.urls,
      full.workers.map((w) => w.url),
    );
    assert.ok(Object.isFrozen(set.workers) && Object.isFrozen(set.urls));
    // Unchanged workers are the previous objects; the diff is what diffWorkers finds.
    assert.equal(
      set.workers.find((w) => w.id === 'w-3'),
      built.workers.find((w) => w.id === 'w-3'),
    );
    assert.equal(set.changes?.from, built.workers);
    const d = diffWorkers(built.workers, set.workers);
    assert.deepEqual(
      [set.changes.diff.added, set.changes.diff.removed, set.changes.diff.updated].map(shape),
      [d.added, d.removed, d.updated].map(shape),
    );
    assert.deepEqual(shape(set.changes.diff.updated), shape([added[0]!].map((c) => buildWorkerSet([c]).workers[0]!)));
  });

  it('ignores an edit that does not start from the last build, or that the build cannot confirm', () => {
    const built = buildWorkerSet(first);
    const next = first.slice(1);
    const stranger = candidate(999);
    const edits: CandidateEdit[] = [
      { from: [...first], removed: [first[0]!], added: [] }, // not the list built last
      { from: first, removed: [stranger], added: [] }, // removes what the build never had
      { from: first, removed: [first[0]!], added: [first[1]!] }, // "adds" a kept one
    ];
    for (const edit of edits) {
      const cache = buildWorkerSet(first, built.cache).cache; // a fresh, unspent cache each time
      const { list, reads } = counted(next);
      const set = buildWorkerSet(list, cache, edit);
      assert.ok(reads() > 0, 'the build scanned the candidates instead');
      assert.deepEqual(shape(set.workers), shape(buildWorkerSet(next).workers));
    }
  });

  it('over random edit sequences equals full builds', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uniqueArray(fc.nat(59), { maxLength: 6 }), fc.uniqueArray(fc.nat(99), { maxLength: 6 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (steps) => {
          let list = Array.from({ length: 40 }, (_, i) => candidate(i));
          let built = buildWorkerSet(list);
          for (const [drop, add] of steps) {
            const removed = list.filter((_, i) => drop.includes(i));
            const present = new Set(list.map((c) => c.url));
            const added = add
              .map((i) => candidate(i, i % 2 === 0 ? 'passing' : 'warning'))
              .filter((c) => {
                const removedUrl = removed.some((r) => r.url === c.url);
                return !present.has(c.url) || removedUrl;
              });
            const next = [...list.filter((c) => !removed.includes(c)), ...added];
            const set = buildWorkerSet(next, built.cache, { from: list, removed, added });
            assert.deepEqual(shape(set.workers), shape(buildWorkerSet(next).workers));
            assert.deepEqual(
              set.urls,
              set.workers.map((w) => w.url),
            );
            list = next;
            built = set;
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('applyRuns (the reader thread’s answer on the main thread)', () => {
  const last = Array.from({ length: 10 }, (_, i) => candidate(i));
  const fresh = [candidate(100), candidate(101)];

  it('rebuilds the answer from slices of the last one and the fresh candidates, with its edit', () => {
    // last[0..4), one fresh, last[5..10), one fresh: last[4] was replaced.
    const r = applyRuns(last, Int32Array.from([0, 4, -1, 1, 5, 5, -1, 1]), fresh);
    assert.ok(r !== undefined);
    assert.deepEqual(r.workers, [...last.slice(0, 4), fresh[0], ...last.slice(5), fresh[1]]);
    assert.equal(r.workers[0], last[0]);
    assert.deepEqual(r.edit, { from: last, removed: [last[4]], added: fresh });
  });

  it('gives no edit when an entry is copied twice, and nothing for runs that do not fit', () => {
    const twice = applyRuns(last, Int32Array.from([0, 3, 2, 1]), []);
    assert.deepEqual(twice?.workers, [last[0], last[1], last[2], last[2]]);
    assert.equal(twice?.edit, undefined);
    for (const runs of [
      [8, 3], // past the end of last
      [-1, 3], // more fresh than sent
      [-1, 1], // fewer fresh than sent (one left over)
      [0, 0], // an empty run
      [0], // odd length
      [-2, 1],
    ]) {
      assert.equal(applyRuns(last, Int32Array.from(runs), fresh), undefined, `runs ${runs.join(',')}`);
    }
  });
});

describe('startBuild (a large full build in steps)', () => {
  /** Runs the steps to the end, counting the yields. */
  function finish(steps: Generator<void, BuiltWorkerSet>): { set: BuiltWorkerSet; yields: number } {
    let yields = 0;
    let step = steps.next();
    while (step.done !== true) {
      yields += 1;
      step = steps.next();
    }
    return { set: step.value, yields };
  }

  // 3,000 candidates, a duplicate URL (the smaller id wins) and one URL that does not parse.
  const list = [
    ...Array.from({ length: 3_000 }, (_, i) => candidate(i)),
    { ...candidate(7), id: 'w-0007' },
    { ...candidate(9), url: 'http://[bad' },
  ];

  it('yields between slices and gives exactly the one-go build', () => {
    const build = startBuild(list, undefined, undefined, 2_000, 0);
    assert.ok(build.steps !== undefined, 'a full build of 3,002 candidates (from 2,000 on) comes as steps');
    const { set, yields } = finish(build.steps);
    // A slice of 0 ms ends at every clock check (every 64 candidates), and once more before the sort.
    assert.ok(yields >= Math.floor(list.length / 64), `${yields} yields`);
    const once = buildWorkerSet(list);
    assert.deepEqual(set.workers, once.workers);
    assert.deepEqual(
      set.urls.map((u) => u.href),
      once.urls.map((u) => u.href),
    );
    assert.equal(set.rejected, 1);
    assert.equal(set.workers.find((w) => w.url.host === '10.0.0.7:8080')?.id, 'w-0007');
    assert.ok(Object.isFrozen(set.workers) && Object.isFrozen(set.urls));
  });

  it('builds at once below the threshold and when the build is incremental', () => {
    assert.ok(startBuild(list.slice(0, 1_999), undefined, undefined, 2_000, 0).set !== undefined);
    const clean = list.slice(0, 3_000);
    const first = finishNow(startBuild(clean, undefined, undefined, 2_000, 0).steps!);
    const next = [...clean.slice(0, 10), candidate(5_000), ...clean.slice(11)];
    const build = startBuild(next, first.cache, undefined, 2_000, 0);
    assert.ok(build.set !== undefined, 'one change in 3,000: incremental, at once');
    assert.ok(build.set.changes !== undefined);
    assert.deepEqual(build.set.changes.diff, diffWorkers(first.workers, build.set.workers));
  });

  it('changes nothing until it returns: an abandoned build leaves its cache usable', () => {
    const clean = list.slice(0, 3_000);
    const base = buildWorkerSet(clean);
    // More than a quarter changed: the full path, in steps, reusing the cache's workers.
    const moved = clean.map((c, i) => (i % 2 === 0 ? { ...c, status: 'warning' as const } : c));
    const abandoned = startBuild(moved, base.cache, undefined, 2_000, 0);
    assert.ok(abandoned.steps !== undefined);
    for (let i = 0; i < 10; i += 1) abandoned.steps.next();
    const next = [...clean.slice(0, 10), candidate(5_000), ...clean.slice(11)];
    const after = buildWorkerSet(next, base.cache);
    assert.ok(after.changes !== undefined, 'still incremental from the untouched cache');
    assert.deepEqual(after.workers, buildWorkerSet(next).workers);
  });
});
