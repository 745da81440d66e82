/**
 * How the active source's answer becomes the snapshot (`publisher.ts`), driven through the
 * engine as the sources drive it: versions and diffs, last-known-good and staleness, the
 * mass-failure guard and flap damping. Which answer counts (failover, builds in turns) is
 * `engine.test.ts`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode } from '../../src/errors.js';
import { worker, workers } from '../helpers/fake-source.js';
import { hosts, recordingEngine as harness } from '../helpers/engine-harness.js';

describe('publisher: snapshot publishing', () => {
  it('publishes the first answer as version 1, frozen and sorted by URL', () => {
    const h = harness();
    h.consul.answer([worker(3), worker(1), worker(2)], { index: 10 });
    const s = h.engine.current;
    assert.equal(s.version, 1);
    assert.equal(s.source, 'consul');
    assert.equal(s.consulIndex, 10);
    assert.deepEqual(hosts(h), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
    assert.ok(Object.isFrozen(s) && Object.isFrozen(s.urls) && Object.isFrozen(s.workers));
    assert.ok(
      Object.isFrozen(s.workers[0]) && Object.isFrozen(s.workers[0]!.tags) && Object.isFrozen(s.workers[0]!.meta),
    );
    assert.equal(s.urls[0], s.workers[0]!.url);
  });

  it('snapshot URLs cannot be changed: setters throw, and this and later snapshots keep the worker', () => {
    const h = harness();
    h.consul.answer(workers(2), { index: 10 });
    const first = h.engine.current;
    const url = first.urls[0]!;
    assert.ok(url instanceof URL);
    for (const property of ['pathname', 'host', 'hostname', 'port', 'protocol', 'href', 'search', 'hash'] as const) {
      assert.throws(
        () => {
          (url as unknown as Record<string, unknown>)[property] = property === 'port' ? '1' : '/evil';
        },
        (err: Error & { code?: string }) => err instanceof TypeError && err.code === 'ERR_IMMUTABLE_URL',
        property,
      );
    }
    url.searchParams.append('evil', '1');
    assert.equal(url.href, 'http://10.0.0.1:8080/');
    // The worker is reused by the next publish: it must still be the same worker there.
    h.consul.answer([...workers(2), worker(3)], { index: 11 });
    assert.equal(h.engine.current.version, 2);
    assert.equal(h.engine.current.urls[0], url, 'an unchanged worker keeps its URL object');
    assert.deepEqual(hosts(h), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  });

  it('does not publish when the content is unchanged, and keeps the same urls array', () => {
    const h = harness();
    h.consul.answer(workers(3), { index: 10 });
    const urls = h.engine.current.urls;
    h.consul.answer([...workers(3)].reverse(), { index: 11 });
    h.consul.answer([], { index: 11, unchanged: true });
    assert.equal(h.engine.current.version, 1);
    assert.equal(h.publishes.length, 1);
    assert.equal(h.engine.current.urls, urls, 'getUrls() identity is stable between publishes');
    assert.equal(h.engine.current.consulIndex, 11);
  });

  it('publishes on tag, meta or status changes and bumps the version by exactly one', () => {
    const h = harness();
    h.consul.answer(workers(2), { index: 1 });
    h.consul.answer([worker(1, { tags: ['gpu'] }), worker(2)], { index: 2 });
    h.consul.answer([worker(1, { tags: ['gpu'] }), worker(2, { meta: { version: '2' } })], { index: 3 });
    h.consul.answer([worker(1, { tags: ['gpu'] }), worker(2, { meta: { version: '2' }, status: 'warning' })], {
      index: 4,
    });
    assert.deepEqual(
      h.publishes.map((p) => p.snapshot.version),
      [1, 2, 3, 4],
    );
    assert.equal(h.publishes[1]!.diff.updated.length, 1);
  });

  it('reports added and removed workers in the publish diff', () => {
    const h = harness();
    h.consul.answer(workers(3), { index: 1 });
    h.consul.answer([worker(2), worker(3), worker(4)], { index: 2 });
    const diff = h.publishes[1]!.diff;
    assert.deepEqual(
      diff.added.map((w) => w.id),
      ['w4'],
    );
    assert.deepEqual(
      diff.removed.map((w) => w.id),
      ['w1'],
    );
  });

  it('deduplicates workers by URL deterministically', () => {
    const h = harness();
    h.consul.answer([worker(1, { id: 'b' }), worker(1, { id: 'a' })], { index: 1 });
    assert.equal(h.engine.current.workers.length, 1);
    assert.equal(h.engine.current.workers[0]!.id, 'a');
  });

  it('publishes an empty 200 as a real answer with zero workers', () => {
    const h = harness();
    h.consul.answer([], { index: 5 });
    assert.equal(h.engine.current.version, 1);
    assert.equal(h.engine.current.urls.length, 0);
  });
});

describe('publisher: last-known-good and staleness', () => {
  it('never replaces a good snapshot on errors, and marks it stale after maxStaleness', () => {
    const h = harness({ dns: undefined });
    h.consul.answer(workers(3), { index: 1 });
    for (let i = 0; i < 10; i += 1) h.consul.fail(ErrorCode.CONSUL_HTTP);
    assert.equal(h.engine.current.urls.length, 3);
    assert.equal(h.engine.current.stale, false);
    h.clock.advance(60_001);
    assert.equal(h.engine.current.stale, true);
    assert.equal(h.engine.current.urls.length, 3, 'stale still serves the last good set');
    assert.equal(h.engine.current.version, 1, 'staleness is not a publish');
    assert.deepEqual(
      h.stale.map((e) => e.stale),
      [true],
    );
    h.consul.answer(workers(3), { index: 2 });
    assert.equal(h.engine.current.stale, false);
    assert.deepEqual(
      h.stale.map((e) => e.stale),
      [true, false],
    );
  });

  it('keeps serving the last good set while stale even if the source has nothing to say', () => {
    const h = harness({ dns: undefined, maxStalenessMs: 1000 });
    h.consul.answer(workers(2), { index: 1 });
    h.clock.advance(5000);
    assert.equal(h.engine.current.stale, true);
    assert.equal(h.engine.current.urls.length, 2);
  });
});

describe('publisher: mass-failure guard', () => {
  const guard = { threshold: 0.5, minWorkers: 3, holdMs: 30_000 };

  it('holds the last good set when a source suddenly reports too few, then accepts after holdMs', () => {
    const h = harness({ guard });
    h.consul.answer(workers(10), { index: 1 });
    h.consul.answer(workers(2), { index: 2 });
    assert.equal(h.engine.current.urls.length, 10);
    assert.equal(h.engine.current.guarded, true);
    assert.deepEqual(
      h.guards.map((g) => [g.active, g.reported, g.kept]),
      [[true, 2, 10]],
    );
    h.clock.advance(29_000);
    assert.equal(h.engine.current.urls.length, 10);
    h.clock.advance(1001);
    assert.equal(h.engine.current.urls.length, 2, 'the smaller set is accepted after holdMs');
    assert.equal(h.engine.current.guarded, false);
  });

  it('ends the hold when its timer fires, even if the timer fires a little before the monotonic deadline', () => {
    const h = harness({ guard });
    h.clock.timerSkewMs = 2;
    h.consul.answer(workers(10), { index: 1 });
    h.consul.answer(workers(2), { index: 2 });
    assert.equal(h.engine.current.guarded, true);
    h.clock.advance(29_999);
    assert.equal(h.engine.current.urls.length, 2, 'accepted when the hold timer fired, no later answer needed');
    assert.equal(h.engine.current.guarded, false);
  });

  it('applies to an empty answer too', () => {
    const h = harness({ guard });
    h.consul.answer(workers(4), { index: 1 });
    h.consul.answer([], { index: 2 });
    assert.equal(h.engine.current.urls.length, 4);
    assert.equal(h.engine.current.guarded, true);
  });

  it('releases when the source recovers within holdMs', () => {
    const h = harness({ guard });
    h.consul.answer(workers(10), { index: 1 });
    h.consul.answer(workers(1), { index: 2 });
    h.consul.answer(workers(9), { index: 3 });
    assert.equal(h.engine.current.guarded, false);
    assert.equal(h.engine.current.urls.length, 9);
    assert.deepEqual(
      h.guards.map((g) => g.active),
      [true, false],
    );
  });

  it('lets ordinary shrinkage through (above the threshold or below minWorkers)', () => {
    const h = harness({ guard });
    h.consul.answer(workers(10), { index: 1 });
    h.consul.answer(workers(6), { index: 2 });
    assert.equal(h.engine.current.urls.length, 6);
    const small = harness({ guard });
    small.consul.answer(workers(2), { index: 1 });
    small.consul.answer([], { index: 2 });
    assert.equal(small.engine.current.urls.length, 0);
  });

  it('can be switched off', () => {
    const h = harness({ guard: undefined });
    h.consul.answer(workers(10), { index: 1 });
    h.consul.answer([], { index: 2 });
    assert.equal(h.engine.current.urls.length, 0);
  });
});

describe('publisher: flap damping', () => {
  it('coalesces publishes to one per interval; the latest state wins and is always published', () => {
    const h = harness({ minPublishIntervalMs: 1000 });
    h.consul.answer(workers(1), { index: 1 });
    assert.equal(h.publishes.length, 1);
    h.consul.answer(workers(2), { index: 2 });
    h.consul.answer(workers(3), { index: 3 });
    h.consul.answer(workers(4), { index: 4 });
    assert.equal(h.publishes.length, 1, 'nothing published inside the interval');
    h.clock.advance(999);
    assert.equal(h.publishes.length, 1);
    h.clock.advance(1);
    assert.equal(h.publishes.length, 2);
    assert.equal(h.engine.current.urls.length, 4, 'the latest pending state is the one published');
    assert.equal(h.engine.current.version, 2);
  });

  it('does not publish when the set flaps back to the published one within the interval', () => {
    const h = harness({ minPublishIntervalMs: 1000 });
    h.consul.answer(workers(2), { index: 1 });
    h.consul.answer(workers(1), { index: 2 });
    h.consul.answer(workers(2), { index: 3 });
    h.clock.advance(2000);
    assert.equal(h.publishes.length, 1);
  });

  it('bounds publishes under sustained flapping and ends on the final state', () => {
    const h = harness({ minPublishIntervalMs: 100 });
    for (let i = 0; i < 1000; i += 1) {
      h.consul.answer(workers(1 + (i % 5)), { index: i + 1 });
      h.clock.advance(10);
    }
    h.consul.answer(workers(3), { index: 5000 });
    h.clock.advance(200);
    assert.ok(h.publishes.length <= 10_000 / 100 + 2, `${h.publishes.length} publishes`);
    assert.equal(h.engine.current.urls.length, 3);
  });
});
