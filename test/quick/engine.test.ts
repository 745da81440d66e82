/**
 * The engine (`engine.ts`): which source's answer counts (failover, failback, the static last
 * resort), its lifecycle, and large first answers built in event-loop turns. What happens to
 * that answer on its way to the snapshot is `publisher.test.ts`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PublishEvent, RefreshEvent } from '../../src/events.js';
import { ErrorCode } from '../../src/errors.js';
import type { WorkerCandidate } from '../../src/source.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import { worker, workers } from '../helpers/fake-source.js';
import { hosts, recordingEngine as harness } from '../helpers/engine-harness.js';

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

describe('engine: large full builds run in event-loop turns (large answers, docs/performance.md)', () => {
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
