import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  defaultMaxStalenessMs,
  parseConsulAddress,
  resolveConsul,
  resolveDns,
  resolveGuard,
  resolveStatic,
} from '../../src/options.js';
import type { WorkerResolverOptions } from '../../src/options.js';
import { createWorkerResolver } from '../../src/resolver.js';
import type { Logger } from '../../src/events.js';
import { delay, waitFor } from '../helpers/wait.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { InvalidOptionError } from '../../src/errors.js';

const clock = new ManualClock();
const resolve = (o: Parameters<typeof resolveConsul>[0], env: Record<string, string> = {}) =>
  resolveConsul(o, 'worker', env, clock, undefined);

function throwsOption(fn: () => unknown, option: string): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof InvalidOptionError, String(err));
    assert.ok(err instanceof TypeError);
    assert.equal(err.code, 'ERR_INVALID_OPTION');
    assert.equal(err.option, option);
    assert.ok(!err.message.includes('\n'), 'one-line message');
    return true;
  });
}

describe('Consul options', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wr-options-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults: http://127.0.0.1:8500, stale reads, passing only, 5 m wait', () => {
    const c = resolve({});
    assert.equal(c.client.address.href, 'http://127.0.0.1:8500/');
    assert.equal(c.query.consistency, 'stale');
    assert.equal(c.query.passingOnly, true);
    assert.equal(c.waitMs, 300_000);
    assert.equal(c.client.token, undefined);
  });

  it('reads CONSUL_HTTP_ADDR (host:port and URLs) and CONSUL_HTTP_SSL', () => {
    assert.equal(resolve({}, { CONSUL_HTTP_ADDR: '10.0.0.5:8500' }).client.address.href, 'http://10.0.0.5:8500/');
    assert.equal(
      resolve({}, { CONSUL_HTTP_ADDR: '10.0.0.5:8501', CONSUL_HTTP_SSL: 'true' }).client.address.href,
      'https://10.0.0.5:8501/',
    );
    assert.equal(
      resolve({ address: 'http://127.0.0.2:8500' }, { CONSUL_HTTP_ADDR: '10.0.0.5:8500' }).client.address.host,
      '127.0.0.2:8500',
      'the option wins over the environment',
    );
  });

  it('rejects bad addresses naming the option or the variable', () => {
    throwsOption(() => resolve({ address: 'ftp://x' }), 'consul.address');
    throwsOption(() => resolve({ address: 'http://user:pw@x:1' }), 'consul.address');
    throwsOption(() => resolve({}, { CONSUL_HTTP_ADDR: 'unix:///tmp/consul.sock' }), 'CONSUL_HTTP_ADDR');
    throwsOption(() => parseConsulAddress('http://x:1/v1', 'a', false), 'a');
  });

  it('takes the token from the option, CONSUL_HTTP_TOKEN, or CONSUL_HTTP_TOKEN_FILE, in that order', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'from-file\n');
    assert.equal(resolve({ token: 'opt' }, { CONSUL_HTTP_TOKEN: 'env' }).client.token, 'opt');
    assert.equal(resolve({}, { CONSUL_HTTP_TOKEN: 'env', CONSUL_HTTP_TOKEN_FILE: file }).client.token, 'env');
    assert.equal(resolve({}, { CONSUL_HTTP_TOKEN_FILE: file }).client.token, 'from-file');
  });

  it('a missing token file names the variable and never the token', () => {
    throwsOption(() => resolve({}, { CONSUL_HTTP_TOKEN_FILE: join(dir, 'missing') }), 'CONSUL_HTTP_TOKEN_FILE');
    assert.throws(
      () => resolve({ token: 'secret\nline' }),
      (err: Error) => !err.message.includes('secret'),
    );
  });

  it('reads TLS files from the CONSUL_* variables for https addresses', () => {
    writeFileSync(join(dir, 'ca.pem'), 'CA');
    writeFileSync(join(dir, 'cert.pem'), 'CERT');
    writeFileSync(join(dir, 'key.pem'), 'KEY');
    const c = resolve(
      { address: 'https://127.0.0.1:8501' },
      {
        CONSUL_CACERT: join(dir, 'ca.pem'),
        CONSUL_CLIENT_CERT: join(dir, 'cert.pem'),
        CONSUL_CLIENT_KEY: join(dir, 'key.pem'),
        CONSUL_TLS_SERVER_NAME: 'consul.internal',
        CONSUL_HTTP_SSL_VERIFY: 'false',
      },
    );
    assert.deepEqual(c.client.tls, {
      ca: 'CA',
      cert: 'CERT',
      key: 'KEY',
      serverName: 'consul.internal',
      verify: false,
    });
    throwsOption(
      () => resolve({ address: 'https://x:1' }, { CONSUL_CLIENT_CERT: join(dir, 'cert.pem') }),
      'consul.tls',
    );
    throwsOption(
      () => resolve({ address: 'https://x:1' }, { CONSUL_HTTP_SSL_VERIFY: 'maybe' }),
      'CONSUL_HTTP_SSL_VERIFY',
    );
  });

  it("tags become one tag parameter each (one rule for any number); the filter stays the user's", () => {
    assert.deepEqual(resolve({ tags: ['gpu'] }).query.tags, ['gpu']);
    const several = resolve({ tags: ['gpu', 'ssd'], filter: 'Service.Meta.version == "2"' }).query;
    assert.deepEqual(several.tags, ['gpu', 'ssd']);
    assert.equal(several.filter, 'Service.Meta.version == "2"');
    assert.equal(resolve({ filter: 'Node.Node == "a"' }).query.filter, 'Node.Node == "a"');
    assert.equal(resolve({}).query.filter, undefined);
  });

  it('validates numbers, enums and shapes up front', () => {
    throwsOption(() => resolve({ waitMs: 700_000 }), 'consul.waitMs');
    throwsOption(() => resolve({ waitMs: Number.NaN }), 'consul.waitMs');
    throwsOption(() => resolve({ consistency: 'eventual' as 'stale' }), 'consul.consistency');
    throwsOption(() => resolve({ tags: ['a', ''] }), 'consul.tags');
    throwsOption(() => resolve({ scheme: 'HTTP://' }), 'consul.scheme');
    throwsOption(() => resolve({ rateLimit: { burst: 0 } }), 'consul.rateLimit.burst');
    throwsOption(() => resolve({ metaMatch: { key: 'version', values: [] } }), 'consul.metaMatch.values');
    throwsOption(() => resolve({ nodeMeta: { 'a:b': 'c' } }), 'consul.nodeMeta');
  });
});

describe('other options', () => {
  it('guard defaults, off switch and validation', () => {
    assert.deepEqual(resolveGuard(undefined), { threshold: 0.5, minWorkers: 3, holdMs: 60_000 });
    assert.equal(resolveGuard(false), undefined);
    throwsOption(() => resolveGuard({ threshold: 2 }), 'massFailureGuard.threshold');
  });

  it("consul.readInThread: 'auto' by default, true or false, anything else rejected", () => {
    assert.equal(resolve({}).readInThread, 'auto');
    assert.equal(resolve({ readInThread: true }).readInThread, true);
    assert.equal(resolve({ readInThread: false }).readInThread, false);
    for (const bad of ['yes', 1, null]) {
      throwsOption(() => resolve({ readInThread: bad as unknown as boolean }), 'consul.readInThread');
    }
  });

  it('static URLs must be absolute with a host', () => {
    assert.equal(resolveStatic(['http://[::1]:9000'])[0]!.address, '::1');
    throwsOption(() => resolveStatic(['not a url']), 'static[0]');
    throwsOption(() => resolveStatic('http://x'), 'static');
  });
});

describe('durations and the timer range', () => {
  const consul = { address: 'http://127.0.0.1:1' };
  const create = (o: Partial<WorkerResolverOptions>) =>
    createWorkerResolver({ service: 'worker', env: {}, consul, ...o });

  it('rejects every duration a Node timer cannot wait (> 2^31−1 ms), naming the option', () => {
    const days30 = 30 * 24 * 3600 * 1000;
    throwsOption(() => create({ maxStalenessMs: days30 }), 'maxStalenessMs');
    throwsOption(() => create({ failoverAfterMs: days30 }), 'failoverAfterMs');
    throwsOption(() => create({ minPublishIntervalMs: days30 }), 'minPublishIntervalMs');
    throwsOption(() => create({ massFailureGuard: { holdMs: days30 } }), 'massFailureGuard.holdMs');
    throwsOption(() => resolve({ requestTimeoutMs: 2 ** 31 }), 'consul.requestTimeoutMs');
    throwsOption(() => resolve({ aclRetryMs: 2 ** 31 }), 'consul.aclRetryMs');
    throwsOption(() => resolve({ backoff: { capMs: 2 ** 31 } }), 'consul.backoff.capMs');
    throwsOption(() => resolve({ timeoutMarginMs: 2 ** 31 - 1 }), 'consul.timeoutMarginMs');
    throwsOption(() => resolveDns({ name: '_w._tcp.x', maxRefreshMs: 2 ** 31 }, clock, undefined), 'dns.maxRefreshMs');
    throwsOption(() => resolveDns({ name: '_w._tcp.x', timeoutMs: 2 ** 32 }, clock, undefined), 'dns.timeoutMs');
    // The largest allowed values are accepted.
    assert.equal(resolve({ requestTimeoutMs: 2 ** 31 - 1 }).requestTimeoutMs, 2 ** 31 - 1);
  });

  it('timeoutMarginMs 0 is rejected: Consul jitters up to wait/16, the margin is the room beyond it', () => {
    throwsOption(() => resolve({ timeoutMarginMs: 0 }), 'consul.timeoutMarginMs');
    assert.equal(resolve({ timeoutMarginMs: 100 }).timeoutMarginMs, 100);
  });

  it('ready() takes Infinity or a timer-sized timeout', async () => {
    const r = createWorkerResolver({ service: 'worker', env: {}, static: ['http://10.0.0.1:80'] });
    try {
      await r.ready({ timeoutMs: Number.POSITIVE_INFINITY });
      assert.throws(
        () => void r.ready({ timeoutMs: 2 ** 31 }),
        (e) => e instanceof InvalidOptionError,
      );
    } finally {
      await r.close();
    }
  });

  it('the default staleness bound covers the DNS refresh bound too (no stale flip every DNS cycle)', () => {
    const dnsOnly = resolveDns({ name: '_w._tcp.x', minRefreshMs: 1000, maxRefreshMs: 120_000 }, clock, undefined);
    assert.ok(defaultMaxStalenessMs(undefined, dnsOnly) > 120_000 + dnsOnly.timeoutMs);
    const both = defaultMaxStalenessMs(resolve({ waitMs: 10_000 }), dnsOnly);
    assert.ok(both > 120_000, 'the larger silence applies when either may be the source');
    assert.equal(defaultMaxStalenessMs(resolve({}), undefined), 300_000 + 300_000 / 16 + 15_000 + 60_000);
  });
});

describe('logger and observers', () => {
  it('a logger missing a method is rejected up front, naming it', () => {
    const partial = { info() {}, warn() {}, error() {} } as unknown as Logger;
    throwsOption(
      () => createWorkerResolver({ service: 'worker', env: {}, static: ['http://10.0.0.1:80'], logger: partial }),
      'logger.debug',
    );
    throwsOption(
      () => createWorkerResolver({ service: 'worker', env: {}, static: ['http://10.0.0.1:80'], logger: 7 as never }),
      'logger',
    );
  });

  it('a logger that throws never breaks the Consul loop nor reaches the host process', async () => {
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown): void => {
      rejections.push(reason);
    };
    process.on('unhandledRejection', onRejection);
    const calls: string[] = [];
    const boom = (level: string) => () => {
      calls.push(level);
      throw new Error(`logger ${level} is broken`);
    };
    const r = createWorkerResolver({
      service: 'worker',
      env: {},
      consul: { address: 'http://127.0.0.1:1', backoff: { baseMs: 1, capMs: 5 }, requestTimeoutMs: 500 },
      dns: { name: '_w._tcp.x', servers: ['127.0.0.1:1'], timeoutMs: 100, backoff: { baseMs: 1, capMs: 5 } },
      failoverAfter: 1,
      logger: { debug: boom('debug'), info: boom('info'), warn: boom('warn'), error: boom('error') },
    });
    try {
      await waitFor(() => calls.filter((c) => c === 'warn').length >= 2, 'two warnings through the broken logger');
      await delay(100);
      assert.deepEqual(rejections, []);
    } finally {
      await r.close();
      process.off('unhandledRejection', onRejection);
    }
  });
});
