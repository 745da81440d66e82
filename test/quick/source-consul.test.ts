import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ConsulDevServer } from '../../src/testing/index.js';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver, RefreshEvent, SourceFailure, WorkerResolverOptions } from '../../src/index.js';
import { ErrorCode } from '../../src/errors.js';
import { delay, waitFor } from '../helpers/wait.js';
import { silentLogger } from '../helpers/dev-workers.js';
import { freeTcpPort } from '../helpers/ports.js';

interface Ctx {
  consul: ConsulDevServer;
  resolver: DiscoveringWorkerResolver | undefined;
  refreshes: RefreshEvent[];
}

function register(consul: ConsulDevServer, n: number, extra: Record<string, unknown> = {}): void {
  consul.registerService({
    Name: 'worker',
    ID: `worker-${n}`,
    Address: `127.0.0.${n}`,
    Port: 9000 + n,
    Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
    ...extra,
  });
}

function failures(ctx: Ctx): SourceFailure[] {
  return ctx.refreshes.map((r) => r.outcome).filter((o): o is SourceFailure => !o.ok);
}

function start(ctx: Ctx, options: Partial<WorkerResolverOptions> & { consul?: WorkerResolverOptions['consul'] } = {}) {
  const resolver = createWorkerResolver({
    service: 'worker',
    minPublishIntervalMs: 0,
    massFailureGuard: false,
    logger: silentLogger,
    env: {},
    observers: [{ onRefresh: (e) => ctx.refreshes.push(e) }],
    ...options,
    consul: {
      address: ctx.consul.httpAddr,
      waitMs: 2000,
      timeoutMarginMs: 1000,
      backoff: { baseMs: 20, capMs: 200 },
      ...options.consul,
    },
  });
  ctx.resolver = resolver;
  return resolver;
}

const hosts = (r: DiscoveringWorkerResolver): string[] => r.getUrls().map((u) => u.host);

describe('Consul source against the Consul dev server', () => {
  const ctx = {} as Ctx;
  beforeEach(async () => {
    ctx.consul = await ConsulDevServer.start({ dns: false });
    ctx.resolver = undefined;
    ctx.refreshes = [];
  });
  afterEach(async () => {
    await ctx.resolver?.close();
    await ctx.consul.stop();
  });

  it('publishes the healthy instances, then follows changes through blocking queries', async () => {
    register(ctx.consul, 1);
    register(ctx.consul, 2);
    const r = start(ctx);
    const first = await r.ready({ timeoutMs: 5000 });
    assert.equal(first.source, 'consul');
    assert.deepEqual(hosts(r), ['127.0.0.1:9001', '127.0.0.2:9002']);
    assert.ok(first.consulIndex !== undefined && first.consulIndex >= 1);

    await waitFor(() => ctx.consul.openLongPolls() === 1, 'a held long poll');
    register(ctx.consul, 3);
    await waitFor(() => r.getUrls().length === 3, 'the new worker');
    assert.equal(r.snapshot().version, 2);

    const health = ctx.consul.requests.filter((q) => q.path.startsWith('/v1/health/service/'));
    assert.equal(health[0]!.query['index'], undefined, 'the first request does not block');
    assert.equal(health[1]!.query['index'], String(first.consulIndex), 'then it blocks on the last X-Consul-Index');
    assert.equal(health[1]!.query['wait'], '2s');
    assert.ok('stale' in health[0]!.query, 'stale reads by default');
    assert.equal(health[0]!.query['passing'], '1');
  });

  it('an unchanged index (wait elapsed) publishes nothing and keeps the same URL array', async () => {
    register(ctx.consul, 1);
    const r = start(ctx, { consul: { waitMs: 150 } });
    await r.ready({ timeoutMs: 5000 });
    const urls = r.getUrls();
    await waitFor(
      () => ctx.refreshes.filter((e) => e.outcome.ok && e.outcome.unchanged).length >= 3,
      'three idle wake-ups',
    );
    assert.equal(r.snapshot().version, 1);
    assert.equal(r.getUrls(), urls);
    assert.equal(failures(ctx).length, 0, 'a long poll that runs its full wait is never cut by the client timeout');
  });

  it('a moved index with identical content publishes nothing', async () => {
    register(ctx.consul, 1);
    const r = start(ctx);
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => ctx.consul.openLongPolls() === 1, 'a held long poll');
    const before = ctx.refreshes.length;
    const indexBefore = r.snapshot().consulIndex!;
    ctx.consul.bumpIndex('worker');
    await waitFor(() => ctx.refreshes.length > before, 'the wake-up');
    const last = ctx.refreshes.at(-1)!.outcome;
    // The body is byte-identical to the last one used: reported unchanged, not parsed, but its index is taken.
    assert.ok(last.ok && last.unchanged, 'a byte-identical body is an unchanged answer');
    assert.ok(last.index! > indexBefore, 'the index moved');
    assert.equal(r.snapshot().version, 1);
    assert.equal(r.snapshot().consulIndex, last.index, 'the snapshot carries the new index');
    await waitFor(() => ctx.consul.openLongPolls() === 1, 'the next long poll blocks on the new index');
    const blocked = ctx.consul.requests.filter((q) => q.path.startsWith('/v1/health/service/')).at(-1)!;
    assert.equal(blocked.query['index'], String(last.index));
  });

  it('resets the index to 0 when it goes backwards (Consul restart)', async () => {
    register(ctx.consul, 1);
    register(ctx.consul, 2);
    for (let i = 0; i < 20; i += 1) ctx.consul.bumpIndex('worker');
    const r = start(ctx, { consul: { waitMs: 200 } });
    await r.ready({ timeoutMs: 5000 });
    const highIndex = r.snapshot().consulIndex!;
    ctx.consul.resetIndex(1);
    await waitFor(() => (r.snapshot().consulIndex ?? Infinity) < highIndex, 'the lower index to be adopted');
    const nonBlockingAfterStart = (): number =>
      ctx.consul.requests.filter(
        (q, i) => i > 0 && q.path.startsWith('/v1/health/service/') && q.query['index'] === undefined,
      ).length;
    await waitFor(
      () => nonBlockingAfterStart() >= 1,
      'a non-blocking request (index reset to 0) after the backwards index',
    );
    assert.deepEqual(hosts(r), ['127.0.0.1:9001', '127.0.0.2:9002']);
    register(ctx.consul, 3);
    await waitFor(() => r.getUrls().length === 3, 'changes after the reset');
  });

  it('never sends index=0 when Consul answers a zero index: it uses 1', async () => {
    register(ctx.consul, 1);
    ctx.consul.failNext(1, {
      status: 200,
      body: '[]',
      headers: { 'X-Consul-Index': '0' },
      path: '/v1/health/service/',
    });
    const r = start(ctx, { consul: { waitMs: 100 } });
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => ctx.consul.requestCount('/v1/health/service/') >= 2, 'a second request');
    const second = ctx.consul.requests.filter((q) => q.path.startsWith('/v1/health/service/'))[1]!;
    assert.equal(second.query['index'], '1');
  });

  it('paces the loop with the token bucket when the index moves on every request (consul#4810)', async () => {
    register(ctx.consul, 1);
    ctx.consul.setIndexChurn(true);
    const r = start(ctx, { consul: { rateLimit: { ratePerSecond: 5, burst: 2 } } });
    await r.ready({ timeoutMs: 5000 });
    const startCount = ctx.consul.requestCount('/v1/health/service/');
    await delay(1500);
    const made = ctx.consul.requestCount('/v1/health/service/') - startCount;
    // 1.5 s at 5/s plus a burst of 2: a hot loop would make hundreds.
    assert.ok(made >= 3 && made <= 2 + 8 + 2, `${made} requests in 1.5 s`);
    assert.equal(r.snapshot().version, 1, 'churn with identical content publishes nothing');
  });

  it('backs off exponentially with full jitter on errors, and recovers', async () => {
    register(ctx.consul, 1);
    const r = start(ctx, { random: () => 0.999, consul: { backoff: { baseMs: 10, capMs: 80 } } });
    await r.ready({ timeoutMs: 5000 });
    ctx.consul.failNext(6, { status: 500, body: 'rpc error: No cluster leader', path: '/v1/health/service/' });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 6, 'six failures');
    assert.deepEqual(
      failures(ctx).map((f) => f.retryInMs),
      [9, 19, 39, 79, 79, 79],
    );
    assert.ok(failures(ctx).every((f) => f.error.code === ErrorCode.CONSUL_HTTP && f.error.status === 500));
    assert.deepEqual(hosts(r), ['127.0.0.1:9001'], 'last-known-good kept');
    register(ctx.consul, 2);
    await waitFor(() => r.getUrls().length === 2, 'recovery');
  });

  it('a request that reached no server (refused, or "No known Consul servers") waits < 500 ms and does not grow the backoff; 5xx still backs off', async () => {
    const port = await freeTcpPort(); // nothing listens: every connection is refused
    const r = start(ctx, {
      random: () => 0.999,
      consul: { address: `127.0.0.1:${port}`, backoff: { baseMs: 250, capMs: 30_000 } },
    });
    await waitFor(() => failures(ctx).length >= 8, 'eight refused connections', 20_000);
    const refused = failures(ctx).slice(0, 8);
    assert.ok(refused.every((f) => f.error.code === ErrorCode.CONSUL_UNREACHABLE && f.error.reachedNoServer));
    // Before: the full-jitter backoff, 249, 499, 999, … up to 30 s after six refusals.
    assert.deepEqual(
      refused.map((f) => f.retryInMs),
      Array.from({ length: 8 }, () => 499),
    );
    await r.close();
    ctx.resolver = undefined;
    ctx.refreshes.length = 0;
    register(ctx.consul, 1);
    const again = start(ctx, { random: () => 0.999, consul: { backoff: { baseMs: 10, capMs: 80 } } });
    await again.ready({ timeoutMs: 5000 });
    ctx.consul.failNext(2, { status: 500, body: 'No known Consul servers', path: '/v1/health/service/' });
    ctx.consul.failNext(2, { status: 500, body: 'rpc error: No cluster leader', path: '/v1/health/service/' });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 4, 'four 500s');
    assert.deepEqual(
      failures(ctx).map((f) => [f.error.reachedNoServer, f.retryInMs]),
      [
        [true, 499],
        [true, 499],
        [false, 9], // the backoff starts where it was: the agent's own 500s did not count
        [false, 19],
      ],
    );
  });

  it('429 honours Retry-After; without it, plain backoff', async () => {
    register(ctx.consul, 1);
    const r = start(ctx, { random: () => 0.5 });
    await r.ready({ timeoutMs: 5000 });
    ctx.consul.failNext(1, { status: 429, headers: { 'Retry-After': '1' }, path: '/v1/health/service/' });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 1, 'the 429');
    const f = failures(ctx)[0]!;
    assert.equal(f.error.code, ErrorCode.CONSUL_RATE_LIMITED);
    assert.equal(f.error.errorType, 'rate_limited');
    assert.equal(f.retryInMs, 1000);
    const requestsAt429 = ctx.consul.requestCount('/v1/health/service/');
    await delay(500);
    assert.equal(ctx.consul.requestCount('/v1/health/service/'), requestsAt429, 'no request during Retry-After');
    ctx.consul.failNext(1, { status: 429, path: '/v1/health/service/' });
    await waitFor(() => failures(ctx).length === 2, 'the second 429');
    assert.equal(
      failures(ctx)[1]!.retryInMs,
      20,
      'second consecutive failure: ceiling 40 ms × 0.5, no Retry-After floor',
    );
  });

  it('403 is an ACL error, retried slowly, and the token never shows in it', async () => {
    await ctx.consul.stop();
    ctx.consul = await ConsulDevServer.start({ dns: false, aclToken: 'right-token-s3cr3t' });
    register(ctx.consul, 1);
    const r = start(ctx, { consul: { token: 'wrong-token-s3cr3t', aclRetryMs: 60_000 } });
    await waitFor(() => failures(ctx).length === 1, 'the 403');
    const f = failures(ctx)[0]!;
    assert.equal(f.error.code, ErrorCode.CONSUL_ACL);
    assert.equal(f.error.errorType, 'acl');
    assert.ok(f.retryInMs >= 60_000);
    assert.ok(!f.error.message.includes('s3cr3t') && !String(f.error.stack).includes('s3cr3t'));
    assert.equal(r.snapshot().version, 0);
    await r.close();

    const ok = start(ctx, { consul: { token: 'right-token-s3cr3t' } });
    await ok.ready({ timeoutMs: 5000 });
    assert.equal(ok.getUrls().length, 1);
    assert.ok(
      ctx.consul.requests.every((q) => !JSON.stringify(q).includes('s3cr3t')),
      'the token travels in a header only',
    );
  });

  it('an answer filtered by ACLs (token without node:read) is an ACL error, never an empty worker list', async () => {
    await ctx.consul.stop();
    ctx.consul = await ConsulDevServer.start({
      dns: false,
      aclToken: 'full-token',
      aclFilteredTokens: ['no-node-read'],
    });
    register(ctx.consul, 1);
    register(ctx.consul, 2);
    const r = start(ctx, { consul: { token: 'no-node-read', aclRetryMs: 60_000 } });
    await waitFor(() => failures(ctx).length === 1, 'the filtered answer');
    const f = failures(ctx)[0]!;
    assert.equal(f.error.code, ErrorCode.CONSUL_ACL);
    assert.match(f.error.message, /node:read/);
    assert.ok(f.retryInMs >= 60_000, 'retried slowly, like a 403');
    assert.equal(r.snapshot().version, 0, 'the empty, filtered list was not published');
    assert.ok(!f.error.message.includes('no-node-read'), 'the token is not in the message');
  });

  it('malformed, truncated and oversized answers are errors that keep the last good set', async () => {
    for (let n = 1; n <= 30; n += 1) register(ctx.consul, n);
    const r = start(ctx, { consul: { maxResponseBytes: 64 * 1024 } });
    await r.ready({ timeoutMs: 5000 });
    assert.equal(r.getUrls().length, 30);
    const path = '/v1/health/service/';

    ctx.consul.failNext(1, { status: 200, body: '[{"Node":', headers: { 'X-Consul-Index': '999' }, path });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 1, 'the malformed answer');
    assert.equal(failures(ctx)[0]!.error.code, ErrorCode.CONSUL_MALFORMED);

    ctx.consul.failNext(1, { status: 200, body: '{"not":"an array"}', headers: { 'X-Consul-Index': '1000' }, path });
    await waitFor(() => failures(ctx).length === 2, 'the non-array answer');
    assert.equal(failures(ctx)[1]!.error.code, ErrorCode.CONSUL_MALFORMED);

    ctx.consul.truncateNext(1, { path });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 3, 'the truncated answer');
    assert.equal(failures(ctx)[2]!.error.code, ErrorCode.CONSUL_MALFORMED);

    ctx.consul.failNext(1, {
      status: 200,
      body: `[${'"x",'.repeat(40_000)}"x"]`,
      headers: { 'X-Consul-Index': '1001' },
      path,
    });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 4, 'the oversized answer');
    assert.equal(failures(ctx)[3]!.error.code, ErrorCode.CONSUL_BODY_TOO_LARGE);

    assert.equal(r.getUrls().length, 30, 'no bad answer ever emptied the list');
    register(ctx.consul, 31);
    await waitFor(() => r.getUrls().length === 31, 'recovery');
  });

  it('an empty 200 is a real answer: zero workers', async () => {
    register(ctx.consul, 1);
    const r = start(ctx);
    await r.ready({ timeoutMs: 5000 });
    ctx.consul.deregisterService('worker-1');
    await waitFor(() => r.getUrls().length === 0, 'the empty set');
    assert.equal(r.snapshot().version, 2);
  });

  it('a hung Consul is cut by the client timeout and reported as ERR_CONSUL_TIMEOUT', async () => {
    register(ctx.consul, 1);
    const r = start(ctx, { consul: { waitMs: 100, timeoutMarginMs: 200 } });
    await r.ready({ timeoutMs: 5000 });
    ctx.consul.hangNext(1, { path: '/v1/health/service/' });
    await waitFor(() => failures(ctx).length === 1, 'the timeout');
    const f = failures(ctx)[0]!;
    assert.equal(f.error.code, ErrorCode.CONSUL_TIMEOUT);
    assert.ok(
      f.durationMs >= 100 + 100 / 16 + 200 - 5,
      `cut after ${f.durationMs} ms, not before wait + wait/16 + margin`,
    );
    assert.equal(r.getUrls().length, 1);
  });

  it('a dropped connection is ERR_CONSUL_UNREACHABLE and the loop goes on', async () => {
    register(ctx.consul, 1);
    const r = start(ctx);
    await r.ready({ timeoutMs: 5000 });
    ctx.consul.dropNext(1, { path: '/v1/health/service/' });
    ctx.consul.bumpIndex('worker');
    await waitFor(() => failures(ctx).length === 1, 'the drop');
    assert.equal(failures(ctx)[0]!.error.code, ErrorCode.CONSUL_UNREACHABLE);
    register(ctx.consul, 2);
    await waitFor(() => r.getUrls().length === 2, 'recovery');
  });

  it('passing only by default; warning on request; maintenance always excluded', async () => {
    register(ctx.consul, 1);
    register(ctx.consul, 2);
    register(ctx.consul, 3);
    ctx.consul.setCheckStatus('check-2', 'warning');
    const r = start(ctx);
    await r.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(r), ['127.0.0.1:9001', '127.0.0.3:9003']);
    ctx.consul.setServiceMaintenance('worker-3', true, 'rolling restart');
    await waitFor(() => r.getUrls().length === 1, 'the drained worker to leave');
    await r.close();

    const warn = start(ctx, { consul: { includeWarning: true } });
    await warn.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(warn), ['127.0.0.1:9001', '127.0.0.2:9002']);
    assert.equal(warn.snapshot().workers.find((w) => w.id === 'worker-2')!.status, 'warning');
    ctx.consul.setServiceMaintenance('worker-3', false);
    await waitFor(() => warn.getUrls().length === 3, 'the worker back from maintenance');
  });

  it('tags, filter and version meta select the workers', async () => {
    register(ctx.consul, 1, { Tags: ['gpu', 'ssd'], Meta: { version: '2' } });
    register(ctx.consul, 2, { Tags: ['gpu'], Meta: { version: '2' } });
    register(ctx.consul, 3, { Tags: ['gpu', 'ssd'], Meta: { version: '1' } });
    const one = start(ctx, { consul: { tags: ['ssd'] } });
    await one.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(one), ['127.0.0.1:9001', '127.0.0.3:9003']);
    await one.close();
    const two = start(ctx, { consul: { tags: ['gpu', 'ssd'], metaMatch: { key: 'version', values: ['2'] } } });
    await two.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(two), ['127.0.0.1:9001']);
    await two.close();
    const filtered = start(ctx, { consul: { filter: 'Service.Meta.version == "1"' } });
    await filtered.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(filtered), ['127.0.0.3:9003']);
  });

  it('tags match case-insensitively, as Consul matches tag=, whether one tag or several', async () => {
    register(ctx.consul, 1, { Tags: ['v2', 'gpu'] });
    register(ctx.consul, 2, { Tags: ['v2'] });
    const one = start(ctx, { consul: { tags: ['V2'] } });
    await one.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(one), ['127.0.0.1:9001', '127.0.0.2:9002']);
    await one.close();
    const two = start(ctx, { consul: { tags: ['V2', 'GPU'] } });
    await two.ready({ timeoutMs: 5000 });
    assert.deepEqual(hosts(two), ['127.0.0.1:9001']);
  });

  it('no token under default-deny ACLs (an empty 200 from Consul) is an ACL error, never an empty worker list', async () => {
    const acl = await ConsulDevServer.start({ dns: false, aclToken: 'mgmt-token-7777' });
    try {
      register(acl, 1);
      const r = createWorkerResolver({
        service: 'worker',
        env: {},
        logger: silentLogger,
        minPublishIntervalMs: 0,
        observers: [{ onRefresh: (e) => ctx.refreshes.push(e) }],
        consul: { address: acl.httpAddr, backoff: { baseMs: 20, capMs: 50 }, aclRetryMs: 50 },
      });
      ctx.resolver = r;
      await waitFor(() => failures(ctx).length >= 2, 'the ACL errors');
      const f = failures(ctx)[0]!;
      assert.equal(f.error.code, ErrorCode.CONSUL_ACL);
      assert.match(f.error.message, /without a token/);
      assert.equal(r.snapshot().version, 0, 'no empty snapshot was published');
      // With the token, the same service is read.
      const ok = createWorkerResolver({
        service: 'worker',
        env: {},
        logger: silentLogger,
        consul: { address: acl.httpAddr, token: 'mgmt-token-7777' },
      });
      try {
        assert.equal((await ok.ready({ timeoutMs: 5000 })).urls.length, 1);
      } finally {
        await ok.close();
      }
    } finally {
      await ctx.resolver?.close();
      ctx.resolver = undefined;
      await acl.stop();
    }
  });

  it("a bad filter (Consul's 500 'Failed to create boolean expression evaluator') is ERR_CONSUL_BAD_REQUEST", async () => {
    register(ctx.consul, 1);
    start(ctx, { consul: { filter: 'Service.Tags contains' } });
    await waitFor(() => failures(ctx).length >= 1, 'the error');
    const f = failures(ctx)[0]!;
    assert.equal(f.error.code, ErrorCode.CONSUL_BAD_REQUEST);
    assert.equal(f.error.status, 500);
    assert.match(f.error.message, /boolean expression/);
  });

  it('close() aborts the in-flight long poll and the server sees it go', async () => {
    register(ctx.consul, 1);
    const r = start(ctx, { consul: { waitMs: 300_000 } });
    await r.ready({ timeoutMs: 5000 });
    await waitFor(() => ctx.consul.openLongPolls() === 1, 'a held long poll');
    await r.close();
    await waitFor(() => ctx.consul.openLongPolls() === 0, 'the long poll to be closed');
    await r.close();
  });
});
