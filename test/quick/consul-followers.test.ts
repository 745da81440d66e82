/**
 * What a Consul follower can answer that the dev server never does: an older state after an
 * error (a lagging `stale` read), an index that really went backwards (a restart with a fresh
 * data dir), and a server without a leader (`X-Consul-KnownLeader: false`). A scripted HTTP
 * server on loopback plays each answer in turn and records what was asked, so the tests see
 * exactly which reads the source makes.
 */
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver, WorkerSnapshot } from '../../src/index.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from '../helpers/dev-workers.js';

interface Reply {
  readonly status?: number;
  readonly index: number;
  readonly workers?: readonly number[];
  readonly knownLeader?: boolean;
  readonly lastContactMs?: number;
  /** Answer as a Consul ≥ 1.10 agent's streaming backend does (`X-Consul-Query-Backend: streaming`). */
  readonly streaming?: boolean;
}

interface Asked {
  readonly index: string | null;
  readonly stale: boolean;
}

function entry(n: number): unknown {
  return {
    Node: { Node: `node-${n}`, Address: `10.0.0.${n}`, TaggedAddresses: {} },
    Service: { ID: `w-${n}`, Service: 'worker', Address: '', Port: 8080, Tags: [], Meta: {} },
    Checks: [{ CheckID: 'serfHealth', Status: 'passing' }],
  };
}

/** Answers health requests from `script` in order; once it is used up, holds requests until closed. */
async function scriptedConsul(
  script: readonly Reply[],
  leader: { address: string } = { address: '10.0.0.1:8300' },
): Promise<{ url: string; asked: Asked[]; leaderChecks: () => number; close(): Promise<void> }> {
  const asked: Asked[] = [];
  let leaderChecks = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/v1/status/leader') {
      leaderChecks += 1;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(leader.address));
      return;
    }
    if (!url.pathname.startsWith('/v1/health/service/')) {
      res.writeHead(404).end();
      return;
    }
    asked.push({ index: url.searchParams.get('index'), stale: url.searchParams.has('stale') });
    const reply = script[asked.length - 1];
    if (reply === undefined) return; // hold: the resolver's close() aborts it
    const status = reply.status ?? 200;
    res.writeHead(status, {
      'Content-Type': status === 200 ? 'application/json' : 'text/plain',
      'X-Consul-Index': String(reply.index),
      'X-Consul-KnownLeader': String(reply.knownLeader ?? true),
      'X-Consul-LastContact': String(reply.lastContactMs ?? 0),
      ...(reply.streaming === true ? { 'X-Consul-Query-Backend': 'streaming' } : {}),
    });
    res.end(status === 200 ? JSON.stringify((reply.workers ?? []).map(entry)) : 'No cluster leader');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    asked,
    leaderChecks: () => leaderChecks,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const hosts = (s: WorkerSnapshot): string[] => s.urls.map((u) => u.hostname);

describe('Consul followers: older answers, backwards indexes, lost leaders', () => {
  let resolver: DiscoveringWorkerResolver | undefined;
  let consul: Awaited<ReturnType<typeof scriptedConsul>> | undefined;
  afterEach(async () => {
    await resolver?.close();
    await consul?.close();
    resolver = undefined;
    consul = undefined;
  });

  function start(maxStaleMs?: number, registry?: Registry, leaderCheckMs?: number): DiscoveringWorkerResolver {
    resolver = createWorkerResolver({
      service: 'worker',
      env: {},
      logger: silentLogger,
      minPublishIntervalMs: 0,
      massFailureGuard: false,
      ...(registry === undefined ? {} : { registry }),
      consul: {
        address: consul!.url,
        waitMs: 1000,
        backoff: { baseMs: 1, capMs: 5 },
        ...(maxStaleMs === undefined ? {} : { maxStaleMs }),
        ...(leaderCheckMs === undefined ? {} : { leaderCheckMs }),
      },
    });
    return resolver;
  }

  it('never publishes a lagging follower’s older state after an error: the leader confirms it is older', async () => {
    consul = await scriptedConsul([
      { index: 100, workers: [1, 2] },
      { status: 500, index: 100 },
      { index: 90, workers: [1] }, // a follower behind the state already published
      { index: 100, workers: [1, 2] }, // the leader's read
    ]);
    const r = start();
    const published: WorkerSnapshot[] = [];
    r.subscribe((s) => published.push(s));
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => consul!.asked.length >= 5, 'the loop to go on after the leader read');
    assert.deepEqual(
      consul.asked.slice(0, 4).map((a) => [a.index, a.stale]),
      [
        [null, true],
        ['100', true],
        [null, true], // after the error: at once, from any server
        [null, false], // older than index 100: re-read from the leader
      ],
    );
    assert.deepEqual(consul.asked[4], { index: '100', stale: true }, 'then blocks on the confirmed index');
    assert.equal(r.snapshot().version, 1, 'nothing was published');
    assert.deepEqual(hosts(r.snapshot()), ['10.0.0.1', '10.0.0.2']);
    assert.deepEqual(
      published.map((p) => p.version),
      [1],
      'only the first state was ever published',
    );
  });

  it('an index that really went backwards (confirmed by the leader) is taken at once', async () => {
    consul = await scriptedConsul([
      { index: 100, workers: [1, 2] },
      { status: 500, index: 100 },
      { index: 5, workers: [3] }, // a restarted Consul with a fresh data dir
      { index: 5, workers: [3] }, // the leader says the same
    ]);
    const r = start();
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => r.snapshot().version === 2, 'the restarted state to be published');
    assert.deepEqual(hosts(r.snapshot()), ['10.0.0.3']);
    assert.equal(r.snapshot().consulIndex, 5);
    assert.equal(consul.asked[3]?.stale, false);
  });

  it('the leader state comes from /v1/status/leader, never from a streaming answer’s leader headers', async () => {
    // What a healthy Consul ≥ 1.10 agent answers to a blocking read: KnownLeader false, LastContact 0.
    consul = await scriptedConsul([
      { index: 7, workers: [1] },
      { index: 8, workers: [1, 2], knownLeader: false, lastContactMs: 0, streaming: true },
    ]);
    const registry = new Registry();
    const r = start(undefined, registry);
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => r.snapshot().version === 2 && r.consulLeader() !== undefined, 'the streaming answer');
    assert.equal(r.consulLeader()?.leader, 'known');
    assert.equal(r.consulLeader()?.lastContactMs, 0);
    assert.ok(!('consulKnownLeader' in r.snapshot()), 'the snapshot carries no leader headers');
    const text = await registry.metrics();
    assert.match(text, /^worker_resolver_consul_known_leader\{service="worker"\} 1$/m);
    assert.match(text, /^worker_resolver_consul_last_contact_seconds\{service="worker"\} 0$/m);
  });

  it('a cluster without a leader shows as none, with the time since one was seen; it clears when one is back', async () => {
    const leader = { address: '10.0.0.1:8300' };
    consul = await scriptedConsul([{ index: 7, workers: [1] }], leader);
    const registry = new Registry();
    const r = start(undefined, registry, 1000);
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => r.consulLeader()?.leader === 'known', 'a first check');
    leader.address = '';
    await waitFor(() => r.consulLeader()?.leader === 'none', 'the lost leader', 10_000);
    await waitFor(() => (r.consulLeader()?.lastContactMs ?? 0) >= 1000, 'the last contact to grow', 10_000);
    assert.match(await registry.metrics(), /^worker_resolver_consul_known_leader\{service="worker"\} 0$/m);
    assert.equal(r.snapshot().version, 1, 'the last good set is kept, no publish');
    leader.address = '10.0.0.2:8300';
    await waitFor(() => r.consulLeader()?.leader === 'known', 'the leader back', 10_000);
    assert.match(await registry.metrics(), /^worker_resolver_consul_known_leader\{service="worker"\} 1$/m);
  });

  it('with maxStaleMs, streaming answers of a healthy cluster are never re-read from the leader', async () => {
    consul = await scriptedConsul([
      { index: 10, workers: [1] },
      { index: 11, workers: [1, 2], knownLeader: false, streaming: true },
      { index: 12, workers: [1, 2, 3], knownLeader: false, streaming: true },
    ]);
    const registry = new Registry();
    const r = start(5000, registry);
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => r.snapshot().version === 3, 'both streaming answers used');
    assert.deepEqual(
      consul.asked.slice(0, 3).map((a) => a.stale),
      [true, true, true],
      'no leader read',
    );
    assert.doesNotMatch(await registry.metrics(), /^worker_resolver_consul_leader_rereads_total\{[^}]*\} [1-9]/m);
  });

  it('with maxStaleMs, a read from a server out of touch with the leader is re-read from the leader', async () => {
    consul = await scriptedConsul([
      { index: 10, workers: [1, 2] },
      { index: 11, workers: [1], lastContactMs: 60_000 }, // 60 s behind: too stale
      { status: 500, index: 0 }, // the leader read: no leader
    ]);
    const registry = new Registry();
    const r = start(5000, registry);
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => consul!.asked.length >= 3, 'the leader re-read');
    assert.deepEqual(consul.asked[2], { index: null, stale: false });
    await waitFor(() => consul!.asked.length >= 4, 'the loop to go on after the failed re-read');
    assert.deepEqual(hosts(r.snapshot()), ['10.0.0.1', '10.0.0.2'], 'the too-stale answer was never used');
    assert.equal(r.snapshot().version, 1);
  });

  it('with maxStaleMs, a fresh re-read replaces the too-stale answer and is counted', async () => {
    consul = await scriptedConsul([
      { index: 10, workers: [1, 2], knownLeader: false },
      { index: 12, workers: [1, 2, 3] },
    ]);
    const registry = new Registry();
    const r = start(5000, registry);
    const s = await r.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(s), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    assert.equal(s.consulIndex, 12);
    assert.match(
      await registry.metrics(),
      /^worker_resolver_consul_leader_rereads_total\{service="worker",reason="max-stale"\} 1$/m,
    );
  });
});
