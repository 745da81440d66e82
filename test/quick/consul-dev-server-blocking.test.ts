import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Consul from 'consul';
import { ConsulDevServer } from '../../src/testing/index.js';
import { blockingDeadlineMs } from '../../src/testing/consul-dev-reads.js';
import { delay, waitFor } from '../helpers/wait.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** Milliseconds from sending to the end of the body. */
  ms: number;
}

/** One request on a fresh connection; `timeoutMs` makes the client give up (rejecting). */
function request(base: string, path: string, opts: { method?: string; timeoutMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request(`${base}${path}`, { method: opts.method ?? 'GET', agent: false });
    if (opts.timeoutMs !== undefined) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - started }),
      );
    });
    req.end();
  });
}

/** Tracks whether a promise settled, without awaiting it. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  const tracked = promise.finally(() => (settled = true));
  tracked.catch(() => {});
  return { promise: tracked, settled: () => settled };
}

const indexOf = (a: Answer): number => Number(a.headers['x-consul-index']);
const register = (dev: ConsulDevServer, id: string): void =>
  dev.registerService({ Name: 'blk', ID: id, Port: 1, Check: { TTL: '1h', Status: 'passing' } });

describe('ConsulDevServer: blocking queries', { timeout: 60_000 }, () => {
  let dev: ConsulDevServer;
  // Jitter pinned at its maximum, so that "not before wait + jitter" is deterministic.
  before(async () => (dev = await ConsulDevServer.start({ dns: false, random: () => 0.999 })));
  after(() => dev.stop(), { timeout: 10_000 });

  it('holds a request until a write raises the index past the client index', async () => {
    register(dev, 'blk-1');
    const first = await request(dev.httpAddr, '/v1/health/service/blk');
    const pending = track(request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(first)}&wait=30s`));
    await waitFor(() => dev.openLongPolls() === 1, 'the held request');
    await delay(200);
    assert.equal(pending.settled(), false, 'not answered before the change');
    register(dev, 'blk-2');
    const woken = await pending.promise;
    assert.ok(indexOf(woken) > indexOf(first));
    assert.equal((JSON.parse(woken.body) as unknown[]).length, 2);
    assert.equal(dev.openLongPolls(), 0);
  });

  it('answers the unchanged result and index once wait + jitter (<= wait/16) elapsed', async () => {
    const first = await request(dev.httpAddr, '/v1/health/service/blk');
    const timedOut = await request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(first)}&wait=320ms`);
    assert.equal(indexOf(timedOut), indexOf(first));
    assert.equal(timedOut.body, first.body);
    assert.ok(timedOut.ms >= 320 + 19 - 2, `answered after ${timedOut.ms} ms, not before wait + jitter`);
    assert.ok(timedOut.ms < 320 + 20 + 5000, `answered after ${timedOut.ms} ms`);
  });

  it('bounds the jitter by wait/16 and caps wait at maxWaitMs (default 5m when absent)', async () => {
    assert.equal(
      blockingDeadlineMs(1600, 600_000, () => 0),
      1600,
    );
    assert.equal(
      blockingDeadlineMs(1600, 600_000, () => 0.999_999),
      1600 + 99,
    );
    assert.equal(
      blockingDeadlineMs(0, 600_000, () => 0),
      300_000,
    );
    assert.equal(
      blockingDeadlineMs(3_600_000, 600_000, () => 0),
      600_000,
    );
    const capped = await ConsulDevServer.start({ dns: false, maxWaitMs: 150, random: () => 0 });
    try {
      const res = await request(capped.httpAddr, `/v1/health/service/x?index=${capped.index + 5}&wait=10m`);
      assert.ok(res.ms >= 148 && res.ms < 5000, `capped wait answered after ${res.ms} ms`);
    } finally {
      await capped.stop();
    }
  });

  it('an index above the current one holds until wait, then answers the lower index', async () => {
    const current = indexOf(await request(dev.httpAddr, '/v1/health/service/blk'));
    const res = await request(dev.httpAddr, `/v1/health/service/blk?index=${current + 1000}&wait=200ms`);
    assert.equal(indexOf(res), current);
    assert.ok(res.ms >= 198, `held ${res.ms} ms`);
  });

  it('bumpIndex wakes waiters with an identical body and a higher index', async () => {
    const first = await request(dev.httpAddr, '/v1/health/service/blk');
    const pending = track(request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(first)}&wait=30s`));
    await waitFor(() => dev.openLongPolls() === 1, 'the held request');
    dev.bumpIndex('blk');
    const woken = await pending.promise;
    assert.ok(indexOf(woken) > indexOf(first));
    assert.equal(woken.body, first.body);
  });

  it('writes to another service do not wake a waiter; catalog/services blocks too', async () => {
    const first = await request(dev.httpAddr, '/v1/health/service/blk');
    const pending = track(request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(first)}&wait=30s`));
    const catalog = await request(dev.httpAddr, '/v1/catalog/services');
    const catalogWait = track(request(dev.httpAddr, `/v1/catalog/services?index=${indexOf(catalog)}&wait=30s`));
    await waitFor(() => dev.openLongPolls() === 2, 'two held requests');
    dev.registerService({ Name: 'unrelated', Port: 2 });
    const services = JSON.parse((await catalogWait.promise).body) as Record<string, string[]>;
    assert.ok('unrelated' in services);
    await delay(100);
    assert.equal(pending.settled(), false, 'the blk waiter still holds');
    register(dev, 'blk-3');
    assert.ok(indexOf(await pending.promise) > indexOf(first));
  });

  it('resetIndex drops every index; a waiter on the old high index holds until wait', async () => {
    for (let i = 0; i < 10; i += 1) dev.bumpIndex('blk');
    const high = indexOf(await request(dev.httpAddr, '/v1/health/service/blk'));
    assert.ok(high > 10);
    dev.resetIndex();
    assert.equal(dev.index, 1);
    const after = await request(dev.httpAddr, '/v1/health/service/blk');
    assert.equal(indexOf(after), 1);
    const held = await request(dev.httpAddr, `/v1/health/service/blk?index=${high}&wait=150ms`);
    assert.equal(indexOf(held), 1);
    assert.ok(held.ms >= 148);
    register(dev, 'blk-4');
    assert.equal(
      indexOf(await request(dev.httpAddr, '/v1/health/service/blk')),
      2,
      'writes continue from the reset index',
    );
  });

  it('rejects an invalid wait or index with 400, like Consul', async () => {
    const wait = await request(dev.httpAddr, '/v1/health/service/blk?index=1&wait=soon');
    assert.deepEqual([wait.status, wait.body], [400, 'Invalid wait time']);
    const index = await request(dev.httpAddr, '/v1/health/service/blk?index=-3');
    assert.deepEqual([index.status, index.body], [400, 'Invalid index']);
    assert.equal(
      (await request(dev.httpAddr, '/v1/health/service/blk?index=0&wait=1h')).status,
      200,
      'index=0 answers at once',
    );
  });
});

describe('ConsulDevServer: fault injection', { timeout: 60_000 }, () => {
  let dev: ConsulDevServer;
  let consul: Consul;
  before(async () => {
    dev = await ConsulDevServer.start({ dns: false });
    register(dev, 'f-1');
    consul = new Consul({ host: '127.0.0.1', port: dev.port });
  });
  after(() => dev.stop(), { timeout: 10_000 });

  it('failNext answers the next N matching requests with the canned status, body and headers', async () => {
    dev.failNext(2, { status: 429, headers: { 'Retry-After': '2' }, path: '/v1/health/service/' });
    for (let i = 0; i < 2; i += 1) {
      await assert.rejects(
        consul.health.service('blk'),
        (err: Error & { statusCode?: number; response?: { headers: Record<string, string> } }) => {
          assert.equal(err.statusCode, 429);
          assert.equal(err.response?.headers['retry-after'], '2');
          return true;
        },
      );
    }
    assert.equal(((await consul.health.service('blk')) as unknown[]).length, 1, 'the third one is served');
    dev.failNext(1, { status: 500, body: 'rpc error: No cluster leader', path: '/v1/catalog/' });
    assert.equal((await request(dev.httpAddr, '/v1/health/service/blk')).status, 200, 'other paths are not affected');
    const failed = await request(dev.httpAddr, '/v1/catalog/services');
    assert.deepEqual([failed.status, failed.body], [500, 'rpc error: No cluster leader']);
    dev.failNext(1, { status: 200, body: '[{"Node":' });
    const malformed = await request(dev.httpAddr, '/v1/health/service/blk');
    assert.deepEqual([malformed.status, malformed.body], [200, '[{"Node":']);
    assert.ok(indexOf(malformed) >= 1, 'a canned 2xx still carries an index');
    dev.failNext(3, { status: 403 });
    dev.clearFaults();
    assert.equal((await request(dev.httpAddr, '/v1/health/service/blk')).status, 200, 'clearFaults disarms');
  });

  it('hangNext accepts and never answers; dropNext resets the connection', async () => {
    dev.hangNext(1, { path: '/v1/health/service/' });
    await assert.rejects(request(dev.httpAddr, '/v1/health/service/blk', { timeoutMs: 300 }), /client timeout/);
    assert.equal((await request(dev.httpAddr, '/v1/health/service/blk')).status, 200);
    dev.dropNext(1);
    await assert.rejects(request(dev.httpAddr, '/v1/health/service/blk'), { code: 'ECONNRESET' });
    await assert.rejects(
      (async () => {
        dev.dropNext(1, { path: '/v1/health/' });
        await consul.health.service('blk');
      })(),
      /ECONNRESET|socket hang up/,
    );
  });

  it('truncateNext sends the real Content-Length and half the body, then closes', async () => {
    const full = await request(dev.httpAddr, '/v1/health/service/blk');
    dev.truncateNext(1, { path: '/v1/health/service/' });
    const outcome = await new Promise<{ length: number; received: number; error: boolean }>((resolve) => {
      const req = http.get(`${dev.httpAddr}/v1/health/service/blk`, { agent: false }, (res) => {
        let received = 0;
        const done = (error: boolean): void =>
          resolve({ length: Number(res.headers['content-length']), received, error });
        res.on('data', (chunk: Buffer) => (received += chunk.length));
        res.on('error', () => done(true));
        res.on('end', () => done(false));
        res.on('aborted', () => done(true));
      });
      req.on('error', () => resolve({ length: -1, received: -1, error: true }));
    });
    assert.equal(outcome.error, true, 'the client sees a premature close');
    assert.equal(outcome.length, Buffer.byteLength(full.body));
    assert.ok(outcome.received < outcome.length, `${outcome.received} of ${outcome.length} bytes`);
  });

  it('an idle timeout cuts held long polls, like a proxy', async () => {
    const first = await request(dev.httpAddr, '/v1/health/service/blk');
    dev.setIdleTimeout(150);
    await assert.rejects(
      request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(first)}&wait=30s`),
      /socket hang up|ECONNRESET/,
    );
    await waitFor(() => dev.openLongPolls() === 0, 'the cut long poll to be released');
    dev.setIdleTimeout(undefined);
    const res = await request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(first)}&wait=300ms`);
    assert.equal(res.status, 200, 'without the timeout the long poll runs its full wait');
  });

  it('index churn: every health query sees a new index with identical content, so blocking returns at once', async () => {
    dev.setIndexChurn(true);
    const a = await request(dev.httpAddr, '/v1/health/service/blk');
    const b = await request(dev.httpAddr, '/v1/health/service/blk');
    assert.ok(indexOf(b) > indexOf(a));
    assert.equal(b.body, a.body);
    const blocking = await request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(b)}&wait=60s`, {
      timeoutMs: 10_000,
    });
    assert.ok(indexOf(blocking) > indexOf(b));
    dev.setIndexChurn(false);
    const held = track(request(dev.httpAddr, `/v1/health/service/blk?index=${indexOf(blocking)}&wait=30s`));
    await waitFor(() => dev.openLongPolls() === 1, 'a held request once churn is off');
    dev.bumpIndex('blk');
    await held.promise;
    assert.ok(dev.requestCount('/v1/health/service/blk') >= 4);
  });
});

describe('ConsulDevServer: stop()', { timeout: 60_000 }, () => {
  it('ends held long polls and hung requests, and leaves no handle behind', async (t) => {
    const count = (): number =>
      process.getActiveResourcesInfo().filter((r) => r !== 'PipeWrap' && r !== 'TTYWrap').length;
    const baseline = count();
    const dev = await ConsulDevServer.start({ checkIntervalFloorMs: 10 });
    t.after(() => dev.stop());
    dev.registerService({ Name: 's', Check: { TTL: '10m' } });
    // A running probe (on another service, so that its writes do not wake the poll on `s`).
    dev.registerService({ Name: 'probed', Check: { HTTP: 'http://127.0.0.1:9/', Interval: '10ms' } });
    const index = indexOf(await request(dev.httpAddr, '/v1/health/service/s'));
    const poll = track(request(dev.httpAddr, `/v1/health/service/s?index=${index}&wait=10m`));
    await waitFor(() => dev.openLongPolls() === 1, 'the held request');
    dev.hangNext(1);
    const hung = track(request(dev.httpAddr, '/v1/catalog/services'));
    await waitFor(() => dev.requestCount('/v1/catalog/') === 1, 'the hung request');
    const stopping = dev.stop();
    assert.equal(dev.stop(), stopping, 'idempotent');
    await stopping;
    await assert.rejects(poll.promise);
    await assert.rejects(hung.promise);
    assert.equal(dev.openLongPolls(), 0);
    await waitFor(
      () => count() <= baseline,
      `handles back to the baseline (${process.getActiveResourcesInfo().join(', ')})`,
    );
  });

  it('a process that stops the server with a held long poll exits by itself', async (t) => {
    const entry = fileURLToPath(new URL('../../src/testing/index.ts', import.meta.url));
    const script = `
      import http from 'node:http';
      const { ConsulDevServer } = await import(${JSON.stringify(entry)});
      const dev = await ConsulDevServer.start();
      dev.registerService({ Name: 's', Check: { TTL: '10m' } });
      http.get(dev.httpAddr + '/v1/health/service/s?index=' + dev.index + '&wait=10m').on('error', () => {});
      while (dev.openLongPolls() === 0) await new Promise((r) => setTimeout(r, 5));
      await dev.stop();
      console.log('stopped');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    t.after(() => {
      clearTimeout(killer);
      child.kill('SIGKILL');
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 0, `the child did not exit cleanly by itself: ${out}`);
    assert.match(out, /stopped/);
  });
});
