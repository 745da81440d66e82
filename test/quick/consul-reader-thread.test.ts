/**
 * The Consul reader thread (`readInThread`): the same answers as the in-thread reader on
 * random answer sequences served over HTTP, the Consul source's loop through it against the
 * dev server, a crash of the thread (an error that keeps the last good set, then a restarted
 * thread), and close() leaving no thread behind.
 */
import { describe, it, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { systemClock } from '../../src/clock.js';
import { ConsulHealthClient } from '../../src/consul/client.js';
import type { HealthQuery } from '../../src/consul/client.js';
import type { ConsulWorkerPolicy } from '../../src/consul/health.js';
import { ConsulReaderThread } from '../../src/consul/reader-thread.js';
import { AutoConsulReader } from '../../src/consul/reader-auto.js';
import { InThreadConsulReader } from '../../src/consul/reader.js';
import type { ReaderAnswer } from '../../src/consul/reader.js';
import { Engine } from '../../src/engine.js';
import type { ResolverObserver } from '../../src/events.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import type { BuiltWorkerSet } from '../../src/worker-cache.js';
import { WorkerResolverError } from '../../src/errors.js';
import { resolveConsul } from '../../src/consul/options.js';
import { ConsulSource } from '../../src/consul/source.js';
import type { SourceOutcome } from '../../src/source.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from '../helpers/dev-workers.js';

const policy: ConsulWorkerPolicy = {
  taggedAddress: undefined,
  scheme: 'http',
  schemeMetaKey: undefined,
  includeWarning: true,
  metaMatch: undefined,
};
const query: HealthQuery = {
  service: 'worker',
  passingOnly: true,
  tags: [],
  filter: undefined,
  datacenter: undefined,
  near: undefined,
  nodeMeta: [],
  namespace: undefined,
  partition: undefined,
  consistency: 'default',
};
/** An engine over one Consul source: no DNS, no guard, no damping, real time. */
function threadEngine(source: ConsulSource, observers: ResolverObserver[] = []): Engine {
  return new Engine({
    service: 'worker',
    consul: source,
    dns: undefined,
    staticWorkers: undefined,
    failoverAfterFailures: 3,
    failoverAfterMs: undefined,
    maxStalenessMs: 3_600_000,
    guard: undefined,
    minPublishIntervalMs: 0,
    clock: systemClock,
    logger: silentLogger,
    observers,
  });
}

/** A server that answers every request with the current body and an index that moves with it. */
async function bodyServer(): Promise<{ url: URL; set(body: string): void; close(): Promise<void> }> {
  let body = '[]';
  let index = 1;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': String(index) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}`),
    set(b) {
      body = b;
      index += 1;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const entry = fc
  .record({
    id: fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,5}$/), fc.constant('')),
    a: fc.integer({ min: 0, max: 40 }),
    port: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constant(0)),
    status: fc.constantFrom('passing', 'warning', 'critical'),
    tags: fc.array(fc.stringMatching(/^[a-z]{1,3}$/), { maxLength: 2 }),
  })
  .map((e) => ({
    Node: { Node: `n-${e.id}`, Address: `10.0.0.${e.a}` },
    Service: { ID: e.id, Port: e.port, Tags: e.tags },
    Checks: [{ CheckID: 'c', Status: e.status }],
  }));

const shape = (a: ReaderAnswer | WorkerResolverError): unknown =>
  a instanceof WorkerResolverError
    ? a.code
    : a.body === 'read'
      ? { body: a.body, index: a.index, workers: a.workers, rejected: a.rejected }
      : { body: a.body, index: a.index };

describe('Consul reader thread', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('answers exactly like the in-thread reader on random answer sequences', async () => {
    const server = await bodyServer();
    const config = { address: server.url, token: undefined, tls: undefined, maxResponseBytes: 1 << 24 };
    const thread = new ConsulReaderThread(config, policy);
    const local = new InThreadConsulReader(new ConsulHealthClient(config), policy);
    cleanup.push(
      () => server.close(),
      () => thread.close(),
      () => local.close(),
    );
    const signal = new AbortController().signal;
    const read = { index: 0, waitMs: 1000, timeoutMs: 5000, signal, compareBody: true };
    let edits = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(entry, { maxLength: 8 }), { minLength: 1, maxLength: 5 }), async (bodies) => {
        let built: BuiltWorkerSet | undefined;
        for (const list of [...bodies, bodies[0]!]) {
          server.set(JSON.stringify(list));
          const [a, b] = [await thread.health(query, read), await local.health(query, read)];
          assert.deepEqual(shape(a), shape(b));
          if (a instanceof WorkerResolverError || a.body !== 'read') continue;
          // The thread's edit says exactly how this answer differs from the previous one read ...
          if (a.edit !== undefined) {
            edits += 1;
            const kept = a.edit.from.filter((c) => !a.edit!.removed.includes(c));
            assert.deepEqual(new Set(a.workers), new Set([...kept, ...a.edit.added]));
            assert.equal(a.workers.length, kept.length + a.edit.added.length);
            for (const c of a.edit.added) assert.ok(!a.edit.from.includes(c));
          }
          // ... and the engine's build through it equals a full build, URLs included.
          const next = buildWorkerSet(a.workers, built?.cache, a.edit);
          const full = buildWorkerSet(a.workers);
          assert.deepEqual(next.workers, full.workers);
          assert.deepEqual(
            next.urls,
            full.workers.map((w) => w.url),
          );
          assert.ok(Object.isFrozen(next.workers) && Object.isFrozen(next.urls));
          built = next;
        }
      }),
      { numRuns: 60 },
    );
    assert.ok(edits > 0, 'the thread sent edits');
    // Unchanged entries are the same candidate objects on this side too.
    server.set(JSON.stringify([{ Node: { Node: 'x', Address: '10.1.1.1' }, Service: { ID: 'x', Port: 1 } }]));
    const first = await thread.health(query, read);
    server.set(
      JSON.stringify([
        { Node: { Node: 'x', Address: '10.1.1.1' }, Service: { ID: 'x', Port: 1 } },
        { Node: { Node: 'y', Address: '10.1.1.2' }, Service: { ID: 'y', Port: 1 } },
      ]),
    );
    const second = await thread.health(query, read);
    assert.ok(first instanceof Object && 'workers' in first && 'workers' in second);
    assert.equal(second.workers[0], first.workers[0]);
  });

  it('auto: reads in-thread until an answer reaches the threshold, then through the thread, with the same answers', async () => {
    const server = await bodyServer();
    const config = { address: server.url, token: undefined, tls: undefined, maxResponseBytes: 1 << 24 };
    const auto = new AutoConsulReader(config, policy, 200);
    const local = new InThreadConsulReader(new ConsulHealthClient(config), policy);
    cleanup.push(
      () => server.close(),
      () => auto.close(),
      () => local.close(),
    );
    const read = { index: 0, waitMs: 1000, timeoutMs: 5000, signal: new AbortController().signal, compareBody: true };
    const small = [{ Node: { Node: 'a', Address: '10.0.0.1' }, Service: { ID: 'a', Port: 1 } }];
    const large = Array.from({ length: 5 }, (_, i) => ({
      Node: { Node: `n${i}`, Address: `10.0.0.${i + 1}` },
      Service: { ID: `w${i}`, Port: 8080 },
    }));
    const changed = large.map((e, i) => (i === 2 ? { ...e, Service: { ...e.Service, Port: 8081 } } : e));
    let autoWorkers: readonly unknown[] = [];
    let localWorkers: unknown;
    for (const [list, mode, body] of [
      [small, 'in-thread', 'read'],
      [large, 'thread', 'read'], // read in-thread; the thread takes over with this body and its candidates
      [large, 'thread', 'same'], // so the thread knows this body already
      [changed, 'thread', 'read'],
      [small, 'thread', 'read'],
    ] as const) {
      server.set(JSON.stringify(list));
      const [a, b] = [await auto.health(query, read), await local.health(query, read)];
      assert.ok(!(a instanceof WorkerResolverError) && !(b instanceof WorkerResolverError));
      assert.equal(a.body, body);
      assert.equal(auto.mode, mode);
      if (a.body === 'read') {
        if (list === changed) {
          // The thread's first read is an edit of the candidates the in-thread reader handed over.
          assert.equal(a.edit?.from, autoWorkers);
          assert.equal(a.edit.removed.length, 1);
          assert.equal(a.edit.added.length, 1);
          assert.equal(a.workers[0], autoWorkers[0]);
        }
        autoWorkers = a.workers;
      }
      if (b.body === 'read') localWorkers = b.workers;
      assert.deepEqual(autoWorkers, localWorkers);
    }
  });

  it('drives the Consul source against the dev server; close() leaves no thread', async () => {
    const dev = await ConsulDevServer.start({ dns: false });
    cleanup.push(() => dev.stop());
    for (let n = 1; n <= 3; n += 1) {
      dev.registerService({
        Name: 'worker',
        ID: `w-${n}`,
        Address: `127.0.0.${n}`,
        Port: 9000,
        Check: { CheckID: `c-${n}`, TTL: '1h', Status: 'passing' },
      });
    }
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Worker').length;
    const config = {
      ...resolveConsul({ address: dev.httpAddr, waitMs: 60_000 }, 'worker', {}, systemClock, undefined),
    };
    const source = new ConsulSource({ ...config, readInThread: true });
    const engine = threadEngine(source);
    engine.start();
    try {
      await waitFor(() => engine.current.workers.length === 3, 'the first snapshot');
      dev.deregisterService('w-2');
      await waitFor(() => engine.current.workers.length === 2, 'the change through the thread');
      assert.deepEqual(
        engine.current.workers.map((w) => w.url.host),
        ['127.0.0.1:9000', '127.0.0.3:9000'],
      );
      const version = engine.current.version;
      dev.bumpIndex('worker');
      await waitFor(() => dev.openLongPolls() === 1 && engine.current.consulIndex === dev.index, 'the same body');
      assert.equal(engine.current.version, version, 'a byte-identical body publishes nothing');
    } finally {
      await engine.close();
    }
    assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Worker').length, before, 'no thread left');
  });

  it('a request aborted while a large answer streams over leaves both sides in step', async () => {
    const server = await bodyServer();
    const config = { address: server.url, token: undefined, tls: undefined, maxResponseBytes: 1 << 24 };
    const thread = new ConsulReaderThread(config, policy);
    const local = new InThreadConsulReader(new ConsulHealthClient(config), policy);
    cleanup.push(
      () => server.close(),
      () => thread.close(),
      () => local.close(),
    );
    // Out of step, the reader would reset the thread: count that.
    let resets = 0;
    const reset = thread.reset.bind(thread);
    thread.reset = () => {
      resets += 1;
      reset();
    };
    // 3,500 entries, new names each round: the thread sends their candidates ahead in several messages.
    const body = (round: number, port: number): string =>
      JSON.stringify(
        Array.from({ length: 3_500 }, (_, i) => ({
          Node: { Node: `n${round}-${i}`, Address: `10.1.${i >> 8}.${i & 255}` },
          Service: { ID: `w${i}`, Port: i === 7 ? port : 8080 },
        })),
      );
    const read = (signal: AbortSignal) => ({ index: 0, waitMs: 1000, timeoutMs: 5000, signal, compareBody: true });
    for (const [round, delayMs] of [0, 2, 5, 10, 20, 40].entries()) {
      server.set(body(round, 9000));
      const abort = new AbortController();
      const aborted = thread.health(query, read(abort.signal));
      setTimeout(() => abort.abort(), delayMs);
      const first = await aborted;
      assert.ok(first instanceof WorkerResolverError || first.body === 'read', 'aborted, or answered before the abort');
      // The next answer (one entry changed) is what the in-thread reader reads from scratch.
      server.set(body(round, 8000));
      const signal = new AbortController().signal;
      const [a, b] = [await thread.health(query, read(signal)), await local.health(query, read(signal))];
      assert.deepEqual(shape(a), shape(b), `round ${round} (abort after ${delayMs} ms)`);
    }
    assert.equal(resets, 0, 'the two sides never went out of step');
  });

  it("sends an answer's fresh candidates one message at a time, each after this side took the last", async () => {
    const server = await bodyServer();
    const config = { address: server.url, token: undefined, tls: undefined, maxResponseBytes: 1 << 24 };
    const thread = new ConsulReaderThread(config, policy);
    cleanup.push(
      () => server.close(),
      () => thread.close(),
    );
    // This side takes each message 30 ms late: a thread that does not wait for it sends the
    // rest meanwhile (they would all arrive in one turn, which is what the pacing prevents).
    const events: { type: string; at: 'arrived' | 'taken' }[] = [];
    const target = thread as unknown as { onMessage(m: { type: string }): void };
    const take = target.onMessage.bind(thread);
    let queue = Promise.resolve();
    target.onMessage = (m) => {
      events.push({ type: m.type, at: 'arrived' });
      queue = queue.then(async () => {
        if (m.type === 'fresh') await new Promise((resolve) => setTimeout(resolve, 30));
        events.push({ type: m.type, at: 'taken' });
        take(m);
      });
    };
    server.set(
      JSON.stringify(
        Array.from({ length: 3_500 }, (_, i) => ({
          Node: { Node: `n${i}`, Address: `10.1.${i >> 8}.${i & 255}` },
          Service: { ID: `w${i}`, Port: 8080 },
        })),
      ),
    );
    const signal = new AbortController().signal;
    const answer = await thread.health(query, { index: 0, waitMs: 1000, timeoutMs: 5000, signal, compareBody: true });
    assert.ok(!(answer instanceof WorkerResolverError) && answer.body === 'read');
    assert.equal(answer.workers.length, 3_500);
    // 3 messages of 1,000 ahead of the answer; each one arrives after the one before was taken.
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.at}`),
      [
        'fresh arrived',
        'fresh taken',
        'fresh arrived',
        'fresh taken',
        'fresh arrived',
        'fresh taken',
        'answer arrived',
        'answer taken',
      ],
    );
  });

  for (const how of ['throw', 'unsendable'] as const) {
    it(`a crash of the thread (${how === 'throw' ? 'an uncaught error' : 'a reply that cannot be posted'}) is ERR_CONSUL_READER, keeps the last good set, and the next request restarts it`, async () => {
      const dev = await ConsulDevServer.start({ dns: false });
      cleanup.push(() => dev.stop());
      dev.registerService({
        Name: 'worker',
        ID: 'w-1',
        Address: '127.0.0.1',
        Port: 9000,
        Check: { CheckID: 'c-1', TTL: '1h', Status: 'passing' },
      });
      const outcomes: SourceOutcome[] = [];
      const config = resolveConsul(
        { address: dev.httpAddr, waitMs: 60_000, backoff: { baseMs: 10, capMs: 20 } },
        'worker',
        {},
        systemClock,
        undefined,
      );
      const source = new ConsulSource({ ...config, readInThread: true });
      const engine = threadEngine(source, [{ onRefresh: (e) => outcomes.push(e.outcome) }]);
      engine.start();
      try {
        await waitFor(() => engine.current.workers.length === 1 && dev.openLongPolls() === 1, 'a held long poll');
        const kept = engine.current;
        (source as unknown as { reader: ConsulReaderThread }).reader.crashForTests(how);
        await waitFor(() => outcomes.some((o) => !o.ok), 'the crash reported');
        const failure = outcomes.find((o) => !o.ok);
        assert.ok(failure !== undefined && !failure.ok);
        assert.equal(failure.error.code, 'ERR_CONSUL_READER');
        assert.equal(engine.current.urls, kept.urls, 'the last good set is kept');
        dev.registerService({
          Name: 'worker',
          ID: 'w-2',
          Address: '127.0.0.2',
          Port: 9000,
          Check: { CheckID: 'c-2', TTL: '1h', Status: 'passing' },
        });
        await waitFor(() => engine.current.workers.length === 2, 'a restarted thread reads the next answer');
      } finally {
        await engine.close();
      }
    });
  }

  after(() => undefined);
});
