import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConsulAddress, resolveConsul, resolveGuard, resolveStatic } from '../src/options.js';
import { ManualClock } from './helpers/manual-clock.js';
import { InvalidOptionError } from '../src/errors.js';

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

  it('one tag uses the tag parameter; several tags become a filter combined with the user filter', () => {
    assert.equal(resolve({ tags: ['gpu'] }).query.tag, 'gpu');
    const several = resolve({ tags: ['gpu', 'ssd'], filter: 'Service.Meta.version == "2"' }).query;
    assert.equal(several.tag, undefined);
    assert.equal(several.filter, '(Service.Meta.version == "2") and "gpu" in Service.Tags and "ssd" in Service.Tags');
    assert.equal(resolve({ filter: 'Node.Node == "a"' }).query.filter, 'Node.Node == "a"');
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

  it('static URLs must be absolute with a host', () => {
    assert.equal(resolveStatic(['http://[::1]:9000'])[0]!.address, '::1');
    throwsOption(() => resolveStatic(['not a url']), 'static[0]');
    throwsOption(() => resolveStatic('http://x'), 'static');
  });
});
