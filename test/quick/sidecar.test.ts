/**
 * The sidecar HTTP API, in-process, with a real resolver polling the Consul dev server over
 * loopback. Timing checks use generous bounds: they prove "answered on the publish, not at
 * the end of the wait" and "not before the wait", never exact latencies.
 */
import { describe, it, before, after } from 'node:test';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver } from '../../src/index.js';
import { startSidecar } from '../../src/sidecar.js';
import type { Sidecar } from '../../src/sidecar.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { httpGet, within } from '../fixtures/cli-http.js';
import { promtool } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait.js';
import { freeTcpPort as closedPort } from '../helpers/ports.js';
import { silentLogger } from '../helpers/dev-workers.js';

function register(consul: ConsulDevServer, n: number): void {
  consul.registerService({
    Name: 'worker',
    ID: `worker-${n}`,
    Address: `127.0.1.${n}`,
    Port: 9000 + n,
    Tags: ['v1'],
    Meta: { zone: 'a' },
    Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
  });
}

interface WorkersBody {
  index: number;
  source: string;
  stale: boolean;
  updatedAt: string | null;
  workers: { url: string; id: string; node: string; tags: string[]; meta: Record<string, string>; status: string }[];
}

describe('sidecar', () => {
  let consul: ConsulDevServer;
  let registry: Registry;
  let resolver: DiscoveringWorkerResolver;
  let sidecar: Sidecar;
  let next = 3;

  before(async () => {
    consul = await ConsulDevServer.start({ dns: false });
    register(consul, 1);
    register(consul, 2);
    registry = new Registry();
    resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      env: {},
      registry,
      minPublishIntervalMs: 0,
      logger: silentLogger,
    });
    await resolver.ready({ timeoutMs: 10_000 });
    sidecar = await startSidecar({ resolver, port: 0, registry });
  });
  after(async () => {
    await sidecar.close();
    await resolver.close();
    await consul.stop();
  });

  it('GET /v1/workers answers the snapshot as JSON with X-Worker-Resolver-Index', async () => {
    const res = await httpGet(`${sidecar.url}/v1/workers`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = JSON.parse(res.body) as WorkersBody;
    const snapshot = resolver.snapshot();
    assert.equal(res.headers['x-worker-resolver-index'], String(snapshot.version));
    assert.equal(body.index, snapshot.version);
    assert.equal(body.source, 'consul');
    assert.equal(body.stale, false);
    assert.equal(body.updatedAt, new Date(snapshot.updatedAt).toISOString());
    // consulLeader once the first leader check ended (it may not have yet).
    const { consulLeader, ...rest } = body as WorkersBody & { consulLeader?: unknown };
    assert.deepEqual(Object.keys(rest).sort(), ['index', 'source', 'stale', 'updatedAt', 'workers']);
    if (consulLeader !== undefined) assert.deepEqual(consulLeader, { leader: 'known', lastContactSeconds: 0 });
    assert.deepEqual(body.workers[0], {
      url: 'http://127.0.1.1:9001/',
      id: 'worker-1',
      node: 'dev-node',
      tags: ['v1'],
      meta: { zone: 'a' },
      status: 'passing',
    });
    assert.equal(body.workers.length, 2);
    assert.ok(res.body.endsWith('}\n') && !res.body.slice(0, -1).includes('\n'), 'one line of JSON');
  });

  it('a long poll is answered by the next publish, with a higher index', async () => {
    const before = resolver.snapshot().version;
    const poll = httpGet(`${sidecar.url}/v1/workers?index=${before}&wait=60s`);
    await waitFor(() => sidecar.openLongPolls() === 1, 'the poll to be held');
    register(consul, next++);
    const res = await within(poll, 10_000, 'the long poll');
    const body = JSON.parse(res.body) as WorkersBody;
    assert.equal(res.status, 200);
    assert.ok(body.index > before, `index ${body.index} > ${before}`);
    assert.equal(res.headers['x-worker-resolver-index'], String(body.index));
    assert.ok(body.workers.some((w) => w.id === `worker-${next - 1}`));
    assert.equal(sidecar.openLongPolls(), 0);
  });

  it('a long poll without a change is answered unchanged when its wait ends, not before', async () => {
    const index = resolver.snapshot().version;
    const res = await within(httpGet(`${sidecar.url}/v1/workers?index=${index}&wait=300ms`), 10_000, 'the poll');
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-worker-resolver-index'], String(index));
    assert.equal((JSON.parse(res.body) as WorkersBody).index, index);
    assert.ok(res.elapsedMs >= 290, `answered after ${res.elapsedMs} ms, not before the 300 ms wait`);
  });

  it('an index behind the current version, or without a wait, is answered at once', async () => {
    const current = resolver.snapshot().version;
    const res = await within(httpGet(`${sidecar.url}/v1/workers?index=${current - 1}`), 5_000, 'the answer');
    assert.equal((JSON.parse(res.body) as WorkersBody).index, current);
    const ahead = await within(httpGet(`${sidecar.url}/v1/workers?index=${current + 100}`), 5_000, 'the answer');
    assert.equal(ahead.headers['x-worker-resolver-index'], String(current), 'a restarted sidecar: index went back');
  });

  it('rejects bad parameters with a one-line 400 ERR_BAD_REQUEST', async () => {
    const bad = ['index=-1', 'index=abc', 'index=1.5', 'index=1&wait=forever', 'foo=1', 'index=1&index=2'];
    bad.push(`index=1&wait=${'1'.repeat(300)}s`);
    for (const query of bad) {
      const res = await httpGet(`${sidecar.url}/v1/workers?${query}`);
      assert.equal(res.status, 400, query);
      const body = JSON.parse(res.body) as { error: string; code: string };
      assert.equal(body.code, 'ERR_BAD_REQUEST', query);
      assert.ok(body.error.length > 0);
      assert.equal(res.body.trimEnd().split('\n').length, 1, query);
    }
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    assert.equal((await httpGet(`${sidecar.url}/v1/nope`)).status, 404);
    const post = await httpGet(`${sidecar.url}/v1/workers`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers['allow'], 'GET, HEAD');
  });

  it('/metrics serves the resolver registry merged with process metrics, and passes promtool', async () => {
    await httpGet(`${sidecar.url}/healthz`);
    const res = await httpGet(`${sidecar.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.match(res.body, /^worker_resolver_workers\{[^}]*service="worker"[^}]*\} \d+$/m);
    assert.match(res.body, /^process_cpu_seconds_total /m);
    assert.match(res.body, /^worker_resolver_sidecar_requests_total\{route="\/healthz",code="200"\} \d+$/m);
    assert.match(res.body, /^worker_resolver_sidecar_long_polls \d+$/m);
    const { status, output } = promtool(['check', 'metrics'], res.body);
    assert.equal(status, 0, `promtool check metrics failed:\n${output}`);
  });

  it('/healthz is 200 and /readyz is 200 while the snapshot is fresh', async () => {
    assert.equal((await httpGet(`${sidecar.url}/healthz`)).status, 200);
    const ready = await httpGet(`${sidecar.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal((JSON.parse(ready.body) as { status: string }).status, 'ready');
  });

  it('/readyz is 503 before the first snapshot, and 200 with stale: true while a last good set is served', async () => {
    const never = createWorkerResolver({
      service: 'worker',
      consul: { address: `127.0.0.1:${await closedPort()}`, backoff: { baseMs: 1000, capMs: 1000 } },
      env: {},
      logger: silentLogger,
    });
    const stale = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      maxStalenessMs: 200,
      env: {},
      logger: silentLogger,
    });
    const a = await startSidecar({ resolver: never, port: 0 });
    const b = await startSidecar({ resolver: stale, port: 0 });
    try {
      const notYet = await httpGet(`${a.url}/readyz`);
      assert.equal(notYet.status, 503);
      assert.match((JSON.parse(notYet.body) as { reason: string }).reason, /no worker snapshot/);
      await stale.ready({ timeoutMs: 10_000 });
      // The blocking query holds for minutes, so nothing answers within 200 ms: stale.
      await waitFor(() => stale.snapshot().stale, 'the snapshot to go stale');
      const res = await httpGet(`${b.url}/readyz`);
      assert.equal(res.status, 200, 'a stale last good set is still a useful answer: ready');
      const body = JSON.parse(res.body) as { status: string; stale: boolean; lastContactAt: string | null };
      assert.equal(body.status, 'ready');
      assert.equal(body.stale, true, 'freshness is reported in the body');
      assert.ok(body.lastContactAt !== null && !Number.isNaN(Date.parse(body.lastContactAt)));
      assert.equal((JSON.parse((await httpGet(`${b.url}/v1/workers`)).body) as WorkersBody).stale, true);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await Promise.all([never.close(), stale.close()]);
    }
  });

  it('before the first snapshot /v1/workers is a 503 "not known yet", and an index=0 long poll waits for it', async () => {
    // A Consul that answers its first request only after 500 ms.
    let release: (() => void) | undefined;
    const slow = http.createServer((req, res) => {
      const answer = (): void => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': '5' });
        res.end(
          JSON.stringify([
            {
              Node: { Node: 'n1', Address: '127.0.2.1' },
              Service: { ID: 'w1', Service: 'worker', Address: '', Port: 9100, Tags: [], Meta: {} },
              Checks: [],
            },
          ]),
        );
      };
      if (new URL(req.url ?? '/', 'http://x').searchParams.has('index')) return; // held until close
      release = answer;
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const late = createWorkerResolver({
      service: 'worker',
      consul: { address: `127.0.0.1:${(slow.address() as AddressInfo).port}` },
      env: {},
      logger: silentLogger,
      minPublishIntervalMs: 0,
    });
    const c = await startSidecar({ resolver: late, port: 0 });
    try {
      const notYet = await httpGet(`${c.url}/v1/workers`);
      assert.equal(notYet.status, 503);
      assert.equal(notYet.headers['retry-after'], '1');
      assert.equal(notYet.headers['x-worker-resolver-index'], '0');
      assert.equal((JSON.parse(notYet.body) as { code: string }).code, 'ERR_NOT_READY');
      const short = await httpGet(`${c.url}/v1/workers?index=0&wait=50ms`);
      assert.equal(short.status, 503, 'a wait that ends before the first snapshot is still "not known yet"');
      const poll = httpGet(`${c.url}/v1/workers?index=0&wait=60s`);
      await waitFor(() => release !== undefined && c.openLongPolls() === 1, 'the poll to be held');
      release!();
      const first = await poll;
      assert.equal(first.status, 200);
      const body = JSON.parse(first.body) as WorkersBody;
      assert.equal(body.index, 1);
      assert.deepEqual(
        body.workers.map((w) => w.url),
        ['http://127.0.2.1:9100/'],
      );
    } finally {
      await c.close();
      await late.close();
      slow.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    }
  });

  it('answers 200 concurrent long polls after one publish', async () => {
    const index = resolver.snapshot().version;
    const polls = Array.from({ length: 200 }, () => httpGet(`${sidecar.url}/v1/workers?index=${index}&wait=60s`));
    await waitFor(() => sidecar.openLongPolls() === 200, 'all 200 polls to be held', 20_000);
    register(consul, next++);
    const answers = await within(Promise.all(polls), 20_000, 'all 200 answers');
    for (const res of answers) {
      assert.equal(res.status, 200);
      assert.ok(Number(res.headers['x-worker-resolver-index']) > index);
    }
    assert.equal(new Set(answers.map((r) => r.body)).size, 1, 'every poll saw the same snapshot');
    assert.equal(sidecar.openLongPolls(), 0);
  });

  it('a client that disconnects mid-poll frees its slot at once', async () => {
    const controller = new AbortController();
    const poll = httpGet(`${sidecar.url}/v1/workers?index=${resolver.snapshot().version}&wait=60s`, {
      signal: controller.signal,
    });
    await waitFor(() => sidecar.openLongPolls() === 1, 'the poll to be held');
    controller.abort();
    await assert.rejects(poll);
    await waitFor(() => sidecar.openLongPolls() === 0, 'the slot to be freed', 2_000);
  });

  it('close() answers open long polls with the current body, stops listening, and is idempotent', async () => {
    const own = await startSidecar({ resolver, port: 0 });
    const index = resolver.snapshot().version;
    const polls = [1, 2, 3].map(() => httpGet(`${own.url}/v1/workers?index=${index}&wait=60s`));
    await waitFor(() => own.openLongPolls() === 3, 'three held polls');
    await within(Promise.all([own.close(), own.close()]), 10_000, 'close()');
    for (const res of await within(Promise.all(polls), 5_000, 'the answers')) {
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-worker-resolver-index'], String(index));
      assert.equal(res.headers['connection'], 'close');
    }
    assert.equal(own.openLongPolls(), 0);
    await assert.rejects(httpGet(`${own.url}/healthz`), /ECONNREFUSED/);
  });
});

describe('sidecar: a large /v1/workers body (700 workers, over 64 KiB)', () => {
  it('is answered whole, with its exact Content-Length, to plain GETs, HEAD and woken long polls', async () => {
    const consul = await ConsulDevServer.start({ dns: false });
    const add = (n: number): void =>
      consul.registerService({
        Name: 'worker',
        ID: `worker-${n}`,
        Address: `127.1.${n >> 8}.${n & 255}`,
        Port: 9000,
        Tags: ['v1'],
        Meta: { zone: 'a' },
        Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
      });
    for (let n = 1; n <= 700; n += 1) add(n);
    const resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      env: {},
      minPublishIntervalMs: 0,
      logger: silentLogger,
    });
    const sidecar = await startSidecar({ resolver, port: 0 });
    try {
      await resolver.ready({ timeoutMs: 10_000 });
      await waitFor(() => resolver.snapshot().workers.length === 700, 'all 700 workers', 10_000);
      const plain = await httpGet(`${sidecar.url}/v1/workers`);
      assert.equal(plain.status, 200);
      assert.ok(Buffer.byteLength(plain.body) > 64 * 1024, `body of ${Buffer.byteLength(plain.body)} bytes`);
      assert.equal(Number(plain.headers['content-length']), Buffer.byteLength(plain.body));
      assert.equal((JSON.parse(plain.body) as WorkersBody).workers.length, 700);
      // Byte for byte the plain serialisation of the documented shape (the body is assembled from per-worker parts).
      const s = resolver.snapshot();
      const leader = resolver.consulLeader();
      const plainJson = JSON.stringify({
        index: s.version,
        source: s.source,
        stale: s.stale,
        updatedAt: new Date(s.updatedAt).toISOString(),
        ...(leader === undefined
          ? {}
          : { consulLeader: { leader: leader.leader, lastContactSeconds: Math.round(leader.lastContactMs / 1000) } }),
        workers: s.workers.map((w) => ({
          url: w.url.href,
          id: w.id,
          node: w.node,
          tags: w.tags,
          meta: w.meta,
          status: w.status,
        })),
      });
      assert.equal(plain.body, `${plainJson}\n`);
      const head = await httpGet(`${sidecar.url}/v1/workers`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.body, '');
      assert.equal(head.headers['content-length'], plain.headers['content-length']);

      const index = resolver.snapshot().version;
      const polls = Array.from({ length: 20 }, () => httpGet(`${sidecar.url}/v1/workers?index=${index}&wait=60s`));
      await waitFor(() => sidecar.openLongPolls() === 20, 'all 20 polls to be held', 10_000);
      add(701);
      const answers = await within(Promise.all(polls), 20_000, 'all 20 answers');
      for (const res of answers) {
        assert.equal(res.status, 200);
        assert.equal(Number(res.headers['content-length']), Buffer.byteLength(res.body));
        assert.equal((JSON.parse(res.body) as WorkersBody).workers.length, 701);
      }
      // The next body reuses the parts of the 700 unchanged workers and is still the whole, current answer.
      const after = JSON.parse(answers[0]!.body) as WorkersBody;
      assert.deepEqual(
        after.workers.map((w) => w.id).sort(),
        [...Array.from({ length: 701 }, (_, i) => `worker-${i + 1}`)].sort(),
      );
    } finally {
      await sidecar.close();
      await resolver.close();
      await consul.stop();
    }
  });
});
