import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Resolver } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import Consul from 'consul';
import { ConsulDevServer } from '../../src/testing/index.js';
import type { HealthServiceEntry } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection (no keep-alive pool left behind). */
function request(
  base: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method: opts.method ?? 'GET', headers: opts.headers, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.end(opts.body);
  });
}

const health = async (dev: ConsulDevServer, query: string): Promise<HealthServiceEntry[]> =>
  JSON.parse((await request(dev.httpAddr, `/v1/health/service/${query}`)).body) as HealthServiceEntry[];
const ids = (entries: HealthServiceEntry[]): string[] => entries.map((e) => e.Service.ID);

describe('ConsulDevServer: registration, checks and health queries', { timeout: 60_000 }, () => {
  let dev: ConsulDevServer;
  let consul: Consul;
  before(async () => {
    dev = await ConsulDevServer.start({ checkIntervalFloorMs: 20 });
    consul = new Consul({ host: '127.0.0.1', port: dev.port });
  });
  after(() => dev.stop(), { timeout: 10_000 });

  it('registers and deregisters through the consul package, answering Consul-shaped entries', async () => {
    await consul.agent.service.register({
      name: 'web',
      id: 'web-1',
      port: 8080,
      address: '10.0.0.1',
      tags: ['v1'],
      meta: { version: '1' },
      check: { name: 'ttl', ttl: '30s', status: 'passing', timeout: '1s' },
    });
    const entries = (await consul.health.service({ service: 'web' })) as HealthServiceEntry[];
    assert.equal(entries.length, 1);
    const [entry] = entries as [HealthServiceEntry];
    assert.equal(entry.Node.Node, 'dev-node');
    assert.equal(entry.Node.Datacenter, 'dc1');
    assert.deepEqual(
      {
        ID: entry.Service.ID,
        Service: entry.Service.Service,
        Port: entry.Service.Port,
        Address: entry.Service.Address,
        Tags: entry.Service.Tags,
        Meta: entry.Service.Meta,
      },
      { ID: 'web-1', Service: 'web', Port: 8080, Address: '10.0.0.1', Tags: ['v1'], Meta: { version: '1' } },
    );
    assert.deepEqual(entry.Service.Weights, { Passing: 1, Warning: 1 });
    assert.deepEqual(entry.Service.TaggedAddresses?.['lan_ipv4'], { Address: '10.0.0.1', Port: 8080 });
    assert.deepEqual(
      entry.Checks.map((c) => [c.CheckID, c.Status, c.ServiceID]),
      [
        ['serfHealth', 'passing', ''],
        ['service:web-1', 'passing', 'web-1'],
      ],
    );
    assert.ok(entry.Service.CreateIndex >= 1 && entry.Service.ModifyIndex >= entry.Service.CreateIndex);
    const services = (await consul.catalog.service.list()) as Record<string, string[]>;
    assert.deepEqual(services['web'], ['v1']);

    await consul.agent.service.deregister('web-1');
    assert.deepEqual(await consul.health.service('web'), []);
    const unknown = await request(dev.httpAddr, '/v1/health/service/never-seen');
    assert.equal(unknown.status, 200);
    assert.equal(unknown.body, '[]');
    assert.ok(Number(unknown.headers['x-consul-index']) >= 1);
  });

  it('TTL pass/warn/fail change health; `passing` keeps only all-passing instances', async () => {
    await consul.agent.service.register({
      name: 'ttl',
      id: 'ttl-1',
      port: 1,
      check: { name: 'ttl', ttl: '30s', timeout: '1s' },
    });
    await consul.agent.service.register({
      name: 'ttl',
      id: 'ttl-2',
      port: 2,
      checks: [
        { name: 'ttl a', ttl: '30s', status: 'passing', timeout: '1s' },
        { name: 'ttl b', ttl: '30s', status: 'passing', timeout: '1s' },
      ],
    });
    const all = await health(dev, 'ttl');
    assert.deepEqual(ids(all), ['ttl-1', 'ttl-2']);
    assert.equal(all[0]!.Checks[1]!.Status, 'critical', 'a TTL check starts critical without Status');
    assert.deepEqual(
      all[1]!.Checks.map((c) => c.CheckID),
      ['serfHealth', 'service:ttl-2:1', 'service:ttl-2:2'],
    );
    assert.deepEqual(ids(await health(dev, 'ttl?passing')), ['ttl-2']);

    await consul.agent.check.pass({ id: 'service:ttl-1', note: 'all good' });
    assert.deepEqual(ids(await health(dev, 'ttl?passing=1')), ['ttl-1', 'ttl-2']);
    assert.equal((await health(dev, 'ttl'))[0]!.Checks[1]!.Output, 'all good');
    await consul.agent.check.warn('service:ttl-2:1');
    assert.deepEqual(ids(await health(dev, 'ttl?passing=true')), ['ttl-1']);
    assert.deepEqual(
      ids(await health(dev, 'ttl?passing=false')),
      ['ttl-1', 'ttl-2'],
      'passing=false disables the filter',
    );
    await consul.agent.check.fail('service:ttl-1');
    assert.deepEqual(ids(await health(dev, 'ttl?passing')), []);

    const update = await request(dev.httpAddr, '/v1/agent/check/update/service:ttl-2:1', {
      method: 'PUT',
      body: JSON.stringify({ Status: 'passing', Output: 'ok' }),
    });
    assert.equal(update.status, 200);
    assert.deepEqual(ids(await health(dev, 'ttl?passing')), ['ttl-2']);
    const unknown = await request(dev.httpAddr, '/v1/agent/check/pass/nope', { method: 'PUT' });
    assert.equal(unknown.status, 404);
    assert.match(unknown.body, /^Unknown check ID "nope"/);
    assert.equal(
      (await request(dev.httpAddr, '/v1/agent/check/pass/serfHealth', { method: 'PUT' })).status,
      500,
      'not a TTL check',
    );
  });

  it('a TTL check that is not refreshed turns critical', async () => {
    dev.registerService({ Name: 'expiring', Check: { CheckID: 'exp', TTL: '150ms', Status: 'passing' } });
    assert.equal((await health(dev, 'expiring?passing')).length, 1);
    await waitFor(() => dev.healthyInstances('expiring')?.length === 0, 'the TTL expiry');
    const check = (await health(dev, 'expiring'))[0]!.Checks.find((c) => c.CheckID === 'exp')!;
    assert.equal(check.Status, 'critical');
    assert.match(check.Output, /^TTL expired/);
    dev.setCheckStatus('exp', 'passing');
    assert.equal(dev.healthyInstances('expiring')?.length, 1, 'a refresh revives it (and restarts the timer)');
  });

  it('HTTP checks poll a loopback URL: 2xx passing, 429 warning, 500 critical; other targets are refused', async (t) => {
    let status = 200;
    let hits = 0;
    const target = http.createServer((_req, res) => {
      hits += 1;
      res.writeHead(status).end('state');
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => target.close(() => resolve())));
    const url = `http://127.0.0.1:${(target.address() as AddressInfo).port}/health`;
    await consul.agent.service.register({
      name: 'probed',
      id: 'probed-1',
      port: 1,
      check: { name: 'probe', http: url, interval: '30ms', timeout: '1s' },
    });
    const served = (includeWarning: boolean): boolean =>
      dev.healthyInstances('probed', { includeWarning })?.length === 1;
    await waitFor(() => served(false), 'the check to pass');
    assert.ok(hits >= 1);
    status = 429;
    await waitFor(() => !served(false) && served(true), 'the check to warn');
    status = 500;
    await waitFor(() => !served(true), 'the check to fail');
    const check = (await health(dev, 'probed'))[0]!.Checks[1]!;
    assert.equal(check.Type, 'http');
    assert.match(check.Output, /500/);

    dev.registerService({
      Name: 'remote',
      Check: { CheckID: 'remote-http', HTTP: 'http://192.0.2.1:80/', Interval: '30ms', Status: 'passing' },
    });
    await waitFor(() => dev.healthyInstances('remote')?.length === 0, 'the refused probe to be critical');
    assert.match((await health(dev, 'remote'))[0]!.Checks[1]!.Output, /non-loopback/);
  });

  it('service and node maintenance exclude instances from `passing` and from DNS-style lookups', async () => {
    dev.registerNode({ Node: 'other', Address: '10.1.0.2', Meta: { rack: 'r2' } });
    dev.registerService({ Name: 'maint', ID: 'maint-1', Port: 1, Check: { TTL: '1h', Status: 'passing' } });
    dev.registerService(
      { Name: 'maint', ID: 'maint-2', Port: 2, Check: { TTL: '1h', Status: 'passing' } },
      { node: 'other' },
    );
    assert.deepEqual(ids(await health(dev, 'maint?passing')), ['maint-1', 'maint-2']);

    await consul.agent.service.maintenance({ id: 'maint-1', enable: true, reason: 'drain' });
    const entries = await health(dev, 'maint');
    const maint = entries[0]!.Checks.find((c) => c.CheckID === '_service_maintenance:maint-1')!;
    assert.deepEqual([maint.Status, maint.Notes, maint.ServiceID], ['critical', 'drain', 'maint-1']);
    assert.deepEqual(ids(await health(dev, 'maint?passing')), ['maint-2']);
    dev.setNodeMaintenance('other', true, 'kernel upgrade');
    assert.deepEqual(ids(await health(dev, 'maint?passing')), []);
    assert.deepEqual(dev.healthyInstances('maint', { includeWarning: true }), []);

    await consul.agent.service.maintenance({ id: 'maint-1', enable: false });
    dev.setNodeMaintenance('other', false);
    assert.deepEqual(ids(await health(dev, 'maint?passing')), ['maint-1', 'maint-2']);
    await consul.agent.maintenance({ enable: true, reason: 'agent node' });
    assert.deepEqual(ids(await health(dev, 'maint?passing')), ['maint-2']);
    await consul.agent.maintenance({ enable: false });
    const missing = await request(dev.httpAddr, '/v1/agent/service/maintenance/nope?enable=true', { method: 'PUT' });
    assert.equal(missing.status, 404);
    assert.equal((await request(dev.httpAddr, '/v1/agent/service/maintenance/maint-1', { method: 'PUT' })).status, 400);
  });

  it('tag (AND, case-insensitive), filter, node-meta, near and dc select and order entries', async () => {
    dev.registerNode({ Node: 'a-node', Address: '10.2.0.1', Meta: { zone: 'a' } });
    dev.registerNode({ Node: 'z-node', Address: '10.2.0.2', Meta: { zone: 'b' } });
    dev.registerNode({ Node: 'far', Address: '10.9.0.1', Datacenter: 'dc2' });
    const reg = (id: string, node: string, tags: string[], version: string): void =>
      dev.registerService(
        { Name: 'sel', ID: id, Port: 9000, Tags: tags, Meta: { version }, Check: { TTL: '1h', Status: 'passing' } },
        { node },
      );
    reg('sel-1', 'a-node', ['gpu', 'ssd'], '2');
    reg('sel-2', 'z-node', ['GPU'], '2');
    reg('sel-3', 'a-node', ['gpu', 'ssd'], '1');
    reg('sel-4', 'far', ['gpu'], '2');

    assert.deepEqual(ids(await health(dev, 'sel?tag=gpu')), ['sel-1', 'sel-3', 'sel-2']);
    assert.deepEqual(ids(await health(dev, 'sel?tag=gpu&tag=ssd')), ['sel-1', 'sel-3']);
    const filter = encodeURIComponent('Service.Meta.version == "2" and "ssd" in Service.Tags');
    assert.deepEqual(ids(await health(dev, `sel?filter=${filter}`)), ['sel-1']);
    assert.deepEqual(ids(await health(dev, `sel?filter=${encodeURIComponent('Node.Meta.zone != a')}`)), ['sel-2']);
    assert.deepEqual(ids(await health(dev, 'sel?node-meta=zone:b')), ['sel-2']);
    assert.deepEqual(ids(await health(dev, 'sel?near=z-node')), ['sel-2', 'sel-1', 'sel-3']);
    assert.deepEqual(ids(await health(dev, 'sel?dc=dc2')), ['sel-4']);
    const noDc = await request(dev.httpAddr, '/v1/health/service/sel?dc=nowhere');
    assert.deepEqual([noDc.status, noDc.body], [500, 'No path to datacenter']);
    const badFilter = await request(
      dev.httpAddr,
      `/v1/health/service/sel?filter=${encodeURIComponent('Service.Meta.version ==')}`,
    );
    assert.equal(badFilter.status, 500, 'Consul 1.16 answers a bad filter with a 500');
    assert.match(badFilter.headers['content-type'] ?? '', /^text\/plain/);
    assert.match(badFilter.body, /^Failed to create boolean expression evaluator/);
    const badSelector = await request(
      dev.httpAddr,
      `/v1/health/service/sel?filter=${encodeURIComponent('Service.Nope == "x"')}`,
    );
    assert.equal(badSelector.status, 500);
    const viaClient = (await consul.health.service({
      service: 'sel',
      filter: 'Service.ID == "sel-3"',
    })) as HealthServiceEntry[];
    assert.deepEqual(ids(viaClient), ['sel-3']);
  });

  it('catalog register/deregister model other nodes, with their own addresses', async () => {
    const body = {
      Node: 'ext-1',
      Address: '192.168.7.1',
      TaggedAddresses: { lan: '192.168.7.1', wan: '203.0.113.7' },
      NodeMeta: { external: 'true' },
      Service: { Service: 'ext', ID: 'ext-a', Port: 7000, Tags: ['x'] },
      Check: { CheckID: 'ext-ok', ServiceID: 'ext-a', Status: 'passing' },
    };
    const reg = await request(dev.httpAddr, '/v1/catalog/register', { method: 'PUT', body: JSON.stringify(body) });
    assert.deepEqual([reg.status, reg.body], [200, 'true']);
    const [entry] = await health(dev, 'ext?passing');
    assert.deepEqual(
      [entry!.Node.Address, entry!.Node.TaggedAddresses['wan'], entry!.Node.Meta['external']],
      ['192.168.7.1', '203.0.113.7', 'true'],
    );
    assert.deepEqual(
      entry!.Checks.map((c) => c.CheckID),
      ['ext-ok'],
      'a catalog-registered node has no serfHealth',
    );
    const catalog = JSON.parse((await request(dev.httpAddr, '/v1/catalog/service/ext')).body) as Array<
      Record<string, unknown>
    >;
    assert.deepEqual(
      [catalog[0]!['ServiceID'], catalog[0]!['ServicePort'], catalog[0]!['Address']],
      ['ext-a', 7000, '192.168.7.1'],
    );
    await request(dev.httpAddr, '/v1/catalog/deregister', { method: 'PUT', body: JSON.stringify({ Node: 'ext-1' }) });
    assert.deepEqual(await health(dev, 'ext'), []);
  });

  it('rejects invalid options up front with a TypeError naming the option', async () => {
    await assert.rejects(ConsulDevServer.start({ port: 70_000 }), { name: 'InvalidOptionError', option: 'port' });
    await assert.rejects(ConsulDevServer.start({ maxWaitMs: 0 }), { option: 'maxWaitMs' });
    await assert.rejects(ConsulDevServer.start({ aclToken: '' }), TypeError);
    assert.throws(() => dev.setIdleTimeout(-1), TypeError);
  });

  it('serves status, agent self/checks, and Consul-style 404/405', async () => {
    assert.equal(await consul.status.leader(), '127.0.0.1:8300');
    assert.deepEqual(await consul.status.peers(), ['127.0.0.1:8300']);
    const self = (await consul.agent.self()) as { Config: { Datacenter: string; NodeName: string } };
    assert.deepEqual([self.Config.Datacenter, self.Config.NodeName], ['dc1', 'dev-node']);
    const checks = JSON.parse((await request(dev.httpAddr, '/v1/agent/checks')).body) as Record<string, unknown>;
    assert.ok('serfHealth' in checks);
    const notFound = await request(dev.httpAddr, '/v1/kv/anything');
    assert.equal(notFound.status, 404);
    assert.match(notFound.headers['content-type'] ?? '', /^text\/plain/);
    const wrongMethod = await request(dev.httpAddr, '/v1/health/service/web', { method: 'PUT' });
    assert.equal(wrongMethod.status, 405);
    assert.equal(
      (await request(dev.httpAddr, '/v1/agent/service/register', { method: 'PUT', body: '{"Port": 1}' })).status,
      400,
    );
    assert.equal(
      (await request(dev.httpAddr, '/v1/agent/service/register', { method: 'PUT', body: '{not json' })).status,
      400,
    );
  });

  it('answers SRV lookups from the same state on its DNS interface', async () => {
    dev.registerService({
      Name: 'dnsvc',
      ID: 'dnsvc-1',
      Port: 7001,
      Address: '127.0.0.11',
      Weights: { Passing: 5, Warning: 1 },
      Check: { CheckID: 'd1', TTL: '1h', Status: 'passing' },
    });
    dev.registerService({
      Name: 'dnsvc',
      ID: 'dnsvc-2',
      Port: 7002,
      Check: { CheckID: 'd2', TTL: '1h', Status: 'warning' },
    });
    dev.registerService({
      Name: 'dnsvc',
      ID: 'dnsvc-3',
      Port: 7003,
      Check: { CheckID: 'd3', TTL: '1h', Status: 'critical' },
    });
    assert.deepEqual(
      dev.healthyInstances('dnsvc', { includeWarning: true })!.map((i) => [i.port, i.weight, i.serviceAddress]),
      [
        [7001, 5, '127.0.0.11'],
        [7002, 1, ''],
      ],
    );
    assert.equal(dev.healthyInstances('no-such-service'), undefined);
    assert.ok(dev.dnsPort !== undefined && dev.dnsAddr === `127.0.0.1:${dev.dnsPort}`);
    const resolver = new Resolver({ timeout: 2000, tries: 2 });
    resolver.setServers([dev.dnsAddr]);
    const srv = await resolver.resolveSrv('dnsvc.service.consul');
    assert.deepEqual(srv.map((r) => r.port).sort(), [7001, 7002], 'warning served, critical not');
    dev.setServiceMaintenance('dnsvc-1', true);
    dev.setCheckStatus('d2', 'critical');
    await assert.rejects(resolver.resolveSrv('dnsvc.service.consul'), { code: 'ENOTFOUND' });
  });
});

describe('ConsulDevServer: headers, consistency modes and ACLs', { timeout: 60_000 }, () => {
  let dev: ConsulDevServer;
  const token = 'secret-token-123';
  before(async () => {
    dev = await ConsulDevServer.start({ dns: false, aclToken: token });
    dev.registerService({ Name: 'api', Check: { TTL: '1h', Status: 'passing' } });
  });
  after(() => dev.stop(), { timeout: 10_000 });
  const auth = { 'X-Consul-Token': token };

  it('every query answer carries index >= 1, KnownLeader, LastContact, JSON and the effective consistency', async () => {
    for (const [query, consistency] of [
      ['', 'leader'],
      ['?stale', 'stale'],
      ['?consistent', 'consistent'],
    ] as const) {
      for (const path of [
        `/v1/health/service/api${query}`,
        `/v1/health/service/unknown${query}`,
        `/v1/catalog/services${query}`,
        `/v1/catalog/service/api${query}`,
      ]) {
        const res = await request(dev.httpAddr, path, { headers: auth });
        assert.equal(res.status, 200, path);
        assert.ok(Number(res.headers['x-consul-index']) >= 1, path);
        assert.equal(res.headers['x-consul-knownleader'], 'true', path);
        assert.equal(res.headers['x-consul-lastcontact'], '0', path);
        assert.equal(res.headers['x-consul-effective-consistency'], consistency, path);
        assert.equal(res.headers['content-type'], 'application/json', path);
      }
    }
    const conflict = await request(dev.httpAddr, '/v1/health/service/api?stale&consistent', { headers: auth });
    assert.equal(conflict.status, 400);
  });

  it('?cached answers X-Cache MISS, then HIT with an Age while the index is unchanged', async () => {
    const first = await request(dev.httpAddr, '/v1/health/service/api?cached', { headers: auth });
    assert.equal(first.headers['x-cache'], 'MISS');
    const second = await request(dev.httpAddr, '/v1/health/service/api?cached', { headers: auth });
    assert.equal(second.headers['x-cache'], 'HIT');
    assert.match(String(second.headers['age']), /^\d+$/);
    assert.equal(second.headers['x-consul-effective-consistency'], 'stale');
    dev.bumpIndex('api');
    assert.equal(
      (await request(dev.httpAddr, '/v1/health/service/api?cached', { headers: auth })).headers['x-cache'],
      'MISS',
    );
  });

  it('no token = anonymous (reads filtered to [], flag masked, writes 403); a wrong one 403; the right one in any of the three forms', async () => {
    const none = await request(dev.httpAddr, '/v1/health/service/api');
    assert.deepEqual([none.status, none.body], [200, '[]'], 'Consul filters the anonymous read, it does not deny it');
    assert.equal(none.headers['x-consul-results-filtered-by-acls'], undefined, 'masked without a token, as in Consul');
    const wrong = await request(dev.httpAddr, '/v1/health/service/api', { headers: { 'X-Consul-Token': 'wrong' } });
    assert.deepEqual([wrong.status, wrong.body], [403, 'ACL not found']);
    assert.match(wrong.headers['content-type'] ?? '', /^text\/plain/);
    assert.equal((await request(dev.httpAddr, '/v1/health/service/api?token=wrong')).status, 403);
    const write = await request(dev.httpAddr, '/v1/agent/service/register', { method: 'PUT', body: '{"Name":"x"}' });
    assert.deepEqual([write.status, write.body], [403, 'Permission denied']);
    assert.equal((await request(dev.httpAddr, '/v1/health/service/api', { headers: auth })).status, 200);
    assert.equal(
      (await request(dev.httpAddr, '/v1/health/service/api', { headers: { Authorization: `Bearer ${token}` } })).status,
      200,
    );
    assert.equal((await request(dev.httpAddr, `/v1/health/service/api?token=${token}`)).status, 200);
    assert.equal((await request(dev.httpAddr, '/v1/status/leader')).status, 200, 'status endpoints need no token');
    const client = new Consul({ host: '127.0.0.1', port: dev.port, defaults: { token } });
    assert.equal(((await client.health.service('api')) as unknown[]).length, 1);
    assert.deepEqual(await new Consul({ host: '127.0.0.1', port: dev.port }).health.service('api'), []);
    await assert.rejects(
      new Consul({ host: '127.0.0.1', port: dev.port, defaults: { token: 'wrong' } }).health.service('api'),
      (err: Error & { statusCode?: number }) => err.statusCode === 403,
    );

    const recorded = dev.requests.filter((r) => r.path === '/v1/health/service/api');
    assert.ok(recorded.some((r) => r.hadToken) && recorded.some((r) => !r.hadToken));
    assert.ok(!JSON.stringify(dev.requests).includes(token), 'the token value is never recorded');
  });
});

describe('ConsulDevServer: ACL-filtered reads', () => {
  it('a valid token without node:read gets 200 [] with X-Consul-Results-Filtered-By-ACLs, the full token the entries', async () => {
    const consul = await ConsulDevServer.start({ dns: false, aclToken: 'full', aclFilteredTokens: ['partial'] });
    try {
      consul.registerService({ Name: 'web', ID: 'web-1', Address: '127.0.0.1', Port: 80 });
      const read = async (token: string): Promise<{ status: number; filtered: string | null; body: unknown }> => {
        const res = await fetch(`${consul.httpAddr}/v1/health/service/web`, { headers: { 'X-Consul-Token': token } });
        return {
          status: res.status,
          filtered: res.headers.get('x-consul-results-filtered-by-acls'),
          body: await res.json(),
        };
      };
      const partial = await read('partial');
      assert.deepEqual([partial.status, partial.filtered, partial.body], [200, 'true', []]);
      const full = await read('full');
      assert.equal(full.status, 200);
      assert.equal(full.filtered, null);
      assert.equal((full.body as unknown[]).length, 1);
      const unknown = await fetch(`${consul.httpAddr}/v1/health/service/web`, {
        headers: { 'X-Consul-Token': 'nope' },
      });
      assert.equal(unknown.status, 403);
    } finally {
      await consul.stop();
    }
  });
});
