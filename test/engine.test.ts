import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { EngineConfig } from '../src/engine.js';
import type { FailoverEvent, GuardEvent, PublishEvent, StaleEvent } from '../src/events.js';
import { ErrorCode } from '../src/errors.js';
import { worker, workers } from './helpers/fake-source.js';
import type { WorkerCandidate } from '../src/source.js';
import type { RefreshEvent } from '../src/events.js';
import { buildWorkerSet } from '../src/worker-set.js';
import { startEngine } from './helpers/engine-harness.js';
import type { EngineHarness } from './helpers/engine-harness.js';

interface Harness extends EngineHarness {
  publishes: PublishEvent[];
  failovers: FailoverEvent[];
  stale: StaleEvent[];
  guards: GuardEvent[];
}

function harness(overrides: Partial<EngineConfig> = {}): Harness {
  const publishes: PublishEvent[] = [];
  const failovers: FailoverEvent[] = [];
  const stale: StaleEvent[] = [];
  const guards: GuardEvent[] = [];
  const recorder = {
    onPublish: (e: PublishEvent) => publishes.push(e),
    onFailover: (e: FailoverEvent) => failovers.push(e),
    onStaleChange: (e: StaleEvent) => stale.push(e),
    onGuardChange: (e: GuardEvent) => guards.push(e),
  };
  return { ...startEngine({ observers: [recorder], ...overrides }), publishes, failovers, stale, guards };
}

const hosts = (h: Harness): string[] => h.engine.current.urls.map((u) => u.host);

describe('engine: snapshot publishing', () => {
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

describe('engine: last-known-good and staleness', () => {
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

describe('engine: failover and failback', () => {
  it('fails over to DNS after N consecutive Consul failures and back when Consul answers', () => {
    const h = harness();
    h.consul.answer(workers(3), { index: 1 });
    h.consul.fail();
    h.consul.fail();
    assert.equal(h.dns.running, false, 'two failures are below the threshold');
    h.consul.fail();
    assert.equal(h.dns.running, true);
    assert.deepEqual(
      h.failovers.map((f) => [f.from, f.to, f.reason]),
      [['consul', 'dns', 'consul-failures']],
    );
    assert.equal(h.engine.current.source, 'consul', 'nothing changes until DNS answers');

    h.dns.answer([worker(1), worker(2), worker(3)]);
    assert.equal(h.engine.current.source, 'dns');
    assert.equal(h.engine.current.version, 2, 'a source change is a publish even with the same workers');

    h.consul.fail();
    assert.equal(h.engine.current.source, 'dns');
    h.consul.answer(workers(4), { index: 1 });
    assert.equal(h.dns.running, false, 'DNS stops on failback');
    assert.equal(h.engine.current.source, 'consul');
    assert.equal(h.engine.current.urls.length, 4);
    assert.deepEqual(
      h.failovers.map((f) => [f.from, f.to]),
      [
        ['consul', 'dns'],
        ['dns', 'consul'],
      ],
    );
  });

  it('fails back with an unchanged index using the remembered Consul answer', () => {
    const h = harness();
    h.consul.answer(workers(3), { index: 7 });
    h.consul.fail();
    h.consul.fail();
    h.consul.fail();
    h.dns.answer(workers(2));
    assert.equal(h.engine.current.urls.length, 2);
    h.consul.answer([], { index: 7, unchanged: true });
    assert.equal(h.engine.current.source, 'consul');
    assert.equal(h.engine.current.urls.length, 3);
  });

  it('a successful Consul answer resets the failure count', () => {
    const h = harness();
    h.consul.fail();
    h.consul.fail();
    h.consul.answer(workers(1), { index: 1 });
    h.consul.fail();
    h.consul.fail();
    assert.equal(h.dns.running, false);
  });

  it('a quiet, healthy blocking query never trips failoverAfterMs (no flapping)', () => {
    const h = harness({ failoverAfterMs: 30_000, failoverAfterFailures: 1_000 });
    h.consul.answer(workers(1), { index: 1 });
    // A 5-minute wait answers once per 5m20s: ten periods without a failure.
    for (let i = 0; i < 10; i += 1) {
      h.clock.advance(320_000);
      h.consul.answer([], { index: 1, unchanged: true });
    }
    assert.equal(h.dns.running, false);
    assert.equal(h.failovers.length, 0);
  });

  it('fails over when a failure streak has lasted failoverAfterMs, counted from its first failure', () => {
    const h = harness({ failoverAfterMs: 30_000, failoverAfterFailures: 1_000 });
    h.consul.answer(workers(1), { index: 1 });
    h.clock.advance(300_000);
    h.consul.fail();
    h.clock.advance(20_000);
    h.consul.fail();
    h.clock.advance(9_000);
    assert.equal(h.dns.running, false, '29 s into the streak');
    h.clock.advance(2000);
    assert.equal(h.dns.running, true);
    assert.equal(h.failovers[0]!.reason, 'consul-no-contact');
    // A success ends the streak and cancels the timer: the next streak starts from zero.
    h.consul.answer(workers(1), { index: 2 });
    assert.equal(h.dns.running, false);
    h.consul.fail();
    h.clock.advance(29_000);
    assert.equal(h.dns.running, false);
  });

  it('without a DNS source, Consul failures keep the last good set', () => {
    const h = harness({ dns: undefined });
    h.consul.answer(workers(2), { index: 1 });
    for (let i = 0; i < 5; i += 1) h.consul.fail();
    assert.equal(h.failovers.length, 0);
    assert.equal(h.engine.current.urls.length, 2);
  });

  it('uses DNS as the primary when no Consul is configured', () => {
    const h = harness({ consul: undefined });
    assert.equal(h.dns.running, true);
    h.dns.answer(workers(2));
    assert.equal(h.engine.current.source, 'dns');
  });

  it('publishes the static list as a last resort when every source failed before any answer', () => {
    const h = harness({ staticWorkers: [worker(9)] });
    h.consul.fail();
    h.consul.fail();
    assert.equal(h.engine.current.version, 0);
    h.consul.fail();
    h.dns.fail(ErrorCode.DNS_SERVFAIL);
    assert.equal(h.engine.current.source, 'static');
    assert.deepEqual(hosts(h), ['10.0.0.9:8080']);
    h.dns.answer(workers(2));
    assert.equal(h.engine.current.source, 'dns');
  });

  it('publishes a static-only configuration at start and never marks it stale', () => {
    const h = harness({ consul: undefined, dns: undefined, staticWorkers: workers(2) });
    assert.equal(h.engine.current.version, 1);
    assert.equal(h.engine.current.source, 'static');
    h.clock.advance(10 * 60_000);
    assert.equal(h.engine.current.stale, false);
  });
});

describe('engine: mass-failure guard', () => {
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

describe('engine: flap damping', () => {
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

describe('engine: lifecycle', () => {
  it('close() stops sources and cancels timers; later outcomes are ignored', async () => {
    const h = harness({ minPublishIntervalMs: 1000, failoverAfterMs: 5000 });
    h.consul.answer(workers(1), { index: 1 });
    h.consul.answer(workers(2), { index: 2 });
    await h.engine.close();
    assert.equal(h.consul.running, false);
    assert.equal(h.clock.pendingTimers, 0);
    await h.engine.close();
  });

  it('isolates throwing observers and subscribers', () => {
    const h = harness({
      observers: [
        {
          onPublish: () => {
            throw new Error('boom');
          },
        },
      ],
    });
    let seen = 0;
    h.engine.subscribe(() => {
      throw new Error('boom');
    });
    h.engine.subscribe(() => {
      seen += 1;
    });
    h.consul.answer(workers(1), { index: 1 });
    assert.equal(seen, 1);
    assert.equal(h.engine.current.version, 1);
  });
});

describe('engine: large full builds run in event-loop turns (issue #13)', () => {
  /** `n` workers on distinct addresses, all on `port`. */
  function many(n: number, port = 8080): WorkerCandidate[] {
    return Array.from({ length: n }, (_, i) => {
      const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      return { ...worker(1), url: `http://${address}:${port}`, id: `w${i}`, node: `n${i}`, address, port };
    });
  }

  /** Resolves once nothing is left to do but `until()` is true, counting the turns it waited. */
  async function turnsUntil(until: () => boolean): Promise<number> {
    let turns = 0;
    while (!until()) {
      await new Promise((resolve) => setImmediate(resolve));
      turns += 1;
      if (turns > 100_000) throw new Error('gave up waiting');
    }
    return turns;
  }

  it('publishes a 20,000-worker first answer after other callbacks ran, exactly as built in one go', async () => {
    const h = harness();
    const list = many(20_000);
    h.consul.answer(list, { index: 1 });
    assert.equal(h.engine.current.version, 0, 'not built in the turn that brought the answer');
    const turns = await turnsUntil(() => h.engine.current.version === 1);
    assert.ok(turns >= 2, `the event loop ran ${turns} turns while it was built`);
    assert.deepEqual(
      h.engine.current.urls.map((u) => u.href),
      buildWorkerSet(list).urls.map((u) => u.href),
    );
    assert.equal(h.publishes.length, 1);
    // The next answer (one worker gone) is incremental from the sliced build: at once.
    h.consul.answer(list.slice(1), { index: 2 });
    assert.equal(h.engine.current.version, 2);
    assert.equal(h.publishes[1]?.diff.removed.length, 1);
  });

  it('takes the outcomes that arrive during the build after it, in their order', async () => {
    const refreshes: RefreshEvent[] = [];
    const h = harness({ observers: [{ onRefresh: (e: RefreshEvent) => refreshes.push(e) }] });
    h.consul.answer(many(20_000), { index: 1 });
    h.consul.answer(workers(3), { index: 2 });
    h.consul.fail();
    assert.equal(refreshes.length, 0);
    await turnsUntil(() => refreshes.length === 3);
    assert.deepEqual(
      refreshes.map((e) => (e.outcome.ok ? e.outcome.index : e.outcome.error.code)),
      [1, 2, ErrorCode.CONSUL_UNREACHABLE],
    );
    assert.equal(h.engine.current.version, 2);
    assert.deepEqual(hosts(h), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080']);
  });

  it('holds the rest behind a held outcome that needs a build in turns of its own', async () => {
    const sizes: number[] = [];
    const h = harness({ observers: [{ onPublish: (e: PublishEvent) => sizes.push(e.snapshot.urls.length) }] });
    h.consul.answer(many(20_000, 8080), { index: 1 });
    h.consul.answer(many(20_000, 9090), { index: 2 }); // every URL new: a full build again
    h.consul.answer(workers(2), { index: 3 });
    await turnsUntil(() => h.engine.current.consulIndex === 3);
    assert.deepEqual(sizes, [20_000, 20_000, 2]);
    assert.equal(h.engine.current.urls.length, 2);
  });

  it('close() during the build: nothing is published, later outcomes are ignored', async () => {
    const h = harness();
    h.consul.answer(many(20_000), { index: 1 });
    const consul = h.consul;
    const sink = consul.sink;
    await h.engine.close();
    sink?.onOutcome({
      ok: true,
      source: 'consul',
      workers: workers(1),
      rejected: 0,
      index: 2,
      unchanged: false,
      durationMs: 1,
      blocking: false,
    });
    for (let i = 0; i < 50; i += 1) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(h.engine.current.version, 0);
    assert.equal(h.publishes.length, 0);
  });
});
