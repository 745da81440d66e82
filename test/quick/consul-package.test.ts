/**
 * The private surface of the `consul` npm package that `src/consul/client.ts` relies on, pinned
 * and checked: `consul._get` (its papi request primitive, not in its typings), the `ctx`
 * 'cancel' event that aborts a request, the `agent` option, and `http.Agent#addRequest` (the
 * hook our body-size and truncation guard wraps). The package is pinned to an exact version in
 * package.json; an upgrade that changes any of this fails here, loudly, before it can fail in
 * production as a hung or unbounded request.
 */
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import Consul from 'consul';
import { ConsulHealthClient } from '../../src/consul/client.js';
import type { HealthQuery } from '../../src/consul/client.js';
import { ErrorCode, isWorkerResolverError } from '../../src/errors.js';

const require = createRequire(import.meta.url);

interface Seen {
  readonly url: string;
  readonly token: string | undefined;
}

const query: HealthQuery = {
  service: 'worker',
  passingOnly: true,
  tags: ['v2', 'gpu'],
  filter: undefined,
  datacenter: undefined,
  near: undefined,
  nodeMeta: ['rack:a', 'zone:1'],
  namespace: undefined,
  partition: undefined,
  consistency: 'stale',
};

describe('the consul package: the private API we use', () => {
  const seen: Seen[] = [];
  let server: http.Server;
  let base: string;
  before(async () => {
    server = http.createServer((req, res) => {
      seen.push({ url: req.url ?? '', token: req.headers['x-consul-token'] as string | undefined });
      if (req.url?.includes('hang') === true || req.url?.includes('index=') === true) return; // held
      if (req.url?.includes('huge') === true) {
        res.writeHead(200, { 'X-Consul-Index': '3' });
        res.end(`[${'"x",'.repeat(1000)}"x"]`);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Consul-Index': '7' });
      res.end('[]');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('is pinned to the exact version whose private API this file checks', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const installed = (require('consul/package.json') as { version: string }).version;
    assert.equal(pkg.dependencies['consul'], '2.0.1', 'an exact pin, not a range');
    assert.equal(installed, pkg.dependencies['consul']);
  });

  it('a Consul instance has the papi methods _get and destroy', () => {
    const consul = new (Consul as unknown as new (o: object) => Record<string, unknown>)({ baseUrl: `${base}/v1` });
    assert.equal(typeof consul['_get'], 'function', 'consul._get is gone: src/consul/client.ts must change');
    assert.equal(typeof consul['destroy'], 'function');
    assert.equal(
      typeof (http.Agent.prototype as unknown as Record<string, unknown>)['addRequest'],
      'function',
      'http.Agent#addRequest is gone',
    );
  });

  it('sends our path, repeated query parameters and the token header through _get', async () => {
    const client = new ConsulHealthClient({
      address: new URL(base),
      token: 'secret-token',
      tls: undefined,
      maxResponseBytes: 1 << 20,
    });
    try {
      const res = await client.healthService(query, {
        index: 0,
        waitMs: 1000,
        timeoutMs: 5000,
        signal: new AbortController().signal,
      });
      assert.equal(res.index, 7);
      const last = seen.at(-1)!;
      const url = new URL(last.url, base);
      assert.equal(url.pathname, '/v1/health/service/worker');
      assert.deepEqual(url.searchParams.getAll('tag'), ['v2', 'gpu']);
      assert.deepEqual(url.searchParams.getAll('node-meta'), ['rack:a', 'zone:1']);
      assert.ok(url.searchParams.has('stale') && url.searchParams.get('passing') === '1');
      assert.equal(last.token, 'secret-token');
      assert.ok(!last.url.includes('secret-token'), 'the token never travels in the query string');
    } finally {
      client.destroy();
    }
  });

  it("ctx 'cancel' aborts a held request (our AbortSignal is wired through it)", async () => {
    const client = new ConsulHealthClient({
      address: new URL(base),
      token: undefined,
      tls: undefined,
      maxResponseBytes: 1 << 20,
    });
    const abort = new AbortController();
    try {
      const pending = client.healthService(query, {
        index: 5,
        waitMs: 60_000,
        timeoutMs: 120_000,
        signal: abort.signal,
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      abort.abort();
      await assert.rejects(pending);
    } finally {
      client.destroy();
    }
    // The same primitive, directly: papi listens for 'cancel' on ctx.
    const consul = new (
      Consul as unknown as new (o: object) => {
        _get(o: object): Promise<unknown>;
        destroy(): void;
      }
    )({ baseUrl: `${base}/v1` });
    const ctx = new EventEmitter();
    const held = consul._get({
      name: 't',
      path: '/hang',
      params: {},
      query: {},
      headers: {},
      ctx,
      timeout: 60_000,
      buffer: true,
    });
    setTimeout(() => ctx.emit('cancel'), 20);
    await assert.rejects(held, (err: Error & { isAbort?: boolean }) => err.isAbort === true);
    consul.destroy();
  });

  it('the agent hook bounds the body: the addRequest wrapper sees every request', async () => {
    const client = new ConsulHealthClient({
      address: new URL(base),
      token: undefined,
      tls: undefined,
      maxResponseBytes: 1024,
    });
    try {
      await assert.rejects(
        client.healthService(
          { ...query, service: 'huge' },
          { index: 0, waitMs: 1000, timeoutMs: 5000, signal: new AbortController().signal },
        ),
        (err) => isWorkerResolverError(err, ErrorCode.CONSUL_BODY_TOO_LARGE),
      );
    } finally {
      client.destroy();
    }
  });
});
