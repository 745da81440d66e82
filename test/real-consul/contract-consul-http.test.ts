/**
 * Contract suite, HTTP API: the same tests against the dev server and a real Consul agent
 * (docs/design.md §11). A behaviour the dev server claims is one these tests show on both backends.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { backends } from '../helpers/contract-backends.js';
import type { Backend } from '../helpers/contract-backends.js';
import type { ConsulRequestOptions, ConsulResponse } from '../helpers/consul-api.js';

interface Entry {
  Node: { Node: string; Address: string; Meta: Record<string, string>; TaggedAddresses: Record<string, string> | null };
  Service: {
    ID: string;
    Service: string;
    Address: string;
    Port: number;
    Tags: string[] | null;
    TaggedAddresses: Record<string, { Address: string; Port: number }> | null;
  };
  Checks: { CheckID: string; Status: string; ServiceID: string }[];
}

async function health(
  backend: Backend,
  service: string,
  query: ConsulRequestOptions['query'] = {},
  opts: ConsulRequestOptions = {},
): Promise<ConsulResponse & { entries: Entry[]; index: number; ids: string[] }> {
  const res = await backend.api.request('GET', `/v1/health/service/${service}`, { ...opts, query });
  const entries = res.status === 200 ? (res.json as Entry[]) : [];
  return {
    ...res,
    entries,
    index: Number(res.headers['x-consul-index']),
    ids: entries.map((e) => e.Service.ID).sort(),
  };
}

/** An agent-registered instance with a TTL check in the given initial status. */
async function instance(
  backend: Backend,
  name: string,
  id: string,
  fields: Record<string, unknown> = {},
  status = 'passing',
): Promise<void> {
  await backend.api.registerService({
    Name: name,
    ID: id,
    Address: '127.0.0.1',
    Port: 9000,
    Check: { CheckID: `${id}-ttl`, TTL: '1h', Status: status },
    ...fields,
  });
}

for (const factory of backends) {
  describe(`contract: Consul HTTP API (${factory.name})`, { timeout: 120_000 }, () => {
    let backend: Backend;
    before(async () => {
      backend = await factory.start();
    });
    after(() => backend?.stop());

    it('query answers carry X-Consul-Index >= 1, KnownLeader, LastContact, JSON, for known and unknown services', async () => {
      await instance(backend, 'meta-svc', 'meta-1');
      for (const [query, consistency] of [
        [{}, 'leader'],
        [{ stale: '' }, 'stale'],
        [{ consistent: '' }, 'consistent'],
      ] as const) {
        for (const service of ['meta-svc', 'no-such-service']) {
          const res = await health(backend, service, query);
          const what = `${service} ${JSON.stringify(query)}`;
          assert.equal(res.status, 200, what);
          assert.equal(res.headers['x-consul-effective-consistency'], consistency, what);
          assert.ok(res.index >= 1, what);
          assert.equal(res.headers['x-consul-knownleader'], 'true', what);
          assert.equal(res.headers['x-consul-lastcontact'], '0', what);
          assert.match(res.headers['content-type'] ?? '', /^application\/json/, what);
        }
      }
      assert.deepEqual((await health(backend, 'no-such-service')).entries, []);
    });

    it('a blocking health read is served by the streaming backend: its leader headers say nothing (KnownLeader false, LastContact 0)', async () => {
      await instance(backend, 'stream-svc', 'stream-1');
      for (const query of [{}, { stale: '' }]) {
        const plain = await health(backend, 'stream-svc', query);
        assert.equal(plain.headers['x-consul-query-backend'], 'blocking-query');
        assert.equal(plain.headers['x-consul-knownleader'], 'true', 'a non-blocking read: the server’s own view');
        const blocking = await health(backend, 'stream-svc', { ...query, index: plain.index, wait: '100ms' });
        assert.equal(blocking.status, 200);
        assert.equal(blocking.headers['x-consul-query-backend'], 'streaming');
        assert.equal(blocking.headers['x-consul-knownleader'], 'false', 'whatever the cluster: it has a leader');
        assert.equal(blocking.headers['x-consul-lastcontact'], '0');
      }
      const leader = await backend.api.request('GET', '/v1/status/leader');
      assert.equal(leader.status, 200);
      assert.ok(typeof leader.json === 'string' && leader.json !== '', `a leader: ${leader.text}`);
    });

    it('a blocking query on an unchanged index is held for the wait, then answers the same index and body', async () => {
      await instance(backend, 'block-idle', 'block-idle-1');
      const first = await health(backend, 'block-idle');
      const startedAt = performance.now();
      const held = await health(backend, 'block-idle', { index: first.index, wait: '1s' });
      const elapsed = performance.now() - startedAt;
      assert.equal(held.status, 200);
      assert.equal(held.index, first.index, 'the index did not move');
      assert.deepEqual(held.ids, first.ids);
      // A lower bound only (Consul adds up to wait/16 of jitter; a loaded machine adds more).
      assert.ok(elapsed >= 950, `held ${Math.round(elapsed)} ms, at least the 1 s wait`);
    });

    it('a blocking query returns when the service changes, with a higher index and the new state', async () => {
      await instance(backend, 'block-change', 'block-change-1');
      const first = await health(backend, 'block-change', { passing: '' });
      assert.deepEqual(first.ids, ['block-change-1']);
      const pending = health(backend, 'block-change', { passing: '', index: first.index, wait: '60s' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      await backend.api.setCheckStatus('block-change-1-ttl', 'critical');
      const changed = await pending;
      assert.ok(changed.index > first.index, `${changed.index} > ${first.index}`);
      assert.deepEqual(changed.ids, []);
    });

    it('a snapshot restore does not answer a held long poll: it ends at its wait, with the restored lower index', async () => {
      // Consul 1.16's agent serves blocking health reads from its streaming backend: a restore
      // resets the view but the request is held until the index passes the client's or the
      // wait ends. (With use_streaming_backend = false the restore answers at once, but with
      // the old index and body, so the client still learns the lower index one wait later.)
      await instance(backend, 'restored', 'restored-1');
      const restore = await backend.snapshot();
      for (let i = 0; i < 6; i += 1)
        await backend.api.setCheckStatus('restored-1-ttl', i % 2 === 0 ? 'warning' : 'passing');
      const high = (await health(backend, 'restored')).index;
      const startedAt = performance.now();
      const pending = health(backend, 'restored', { index: high, wait: '2s' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await restore();
      const answer = await pending;
      const elapsed = performance.now() - startedAt;
      assert.ok(elapsed >= 1950, `held ${Math.round(elapsed)} ms: the restore did not answer it, its 2 s wait did`);
      assert.ok(answer.index < high, `the restored index ${answer.index} < ${high}`);
      assert.deepEqual(answer.ids, ['restored-1']);
    });

    it('index=0 (or no index) answers at once; an invalid wait or index is a 400', async () => {
      await instance(backend, 'block-zero', 'block-zero-1');
      assert.equal((await health(backend, 'block-zero', { index: 0, wait: '60s' })).status, 200);
      assert.equal((await health(backend, 'block-zero', { wait: '60s' })).status, 200);
      assert.equal((await health(backend, 'block-zero', { index: 1, wait: 'soon' })).status, 400);
      assert.equal((await health(backend, 'block-zero', { index: 'abc' })).status, 400);
    });

    it('passing, warning, critical and maintenance: ?passing keeps only all-passing instances', async () => {
      await instance(backend, 'states', 'st-pass', {}, 'passing');
      await instance(backend, 'states', 'st-warn', {}, 'warning');
      await instance(backend, 'states', 'st-crit', {}, 'critical');
      await instance(backend, 'states', 'st-maint', {}, 'passing');
      await backend.api.setServiceMaintenance('st-maint', true, 'draining');
      const all = await health(backend, 'states');
      assert.deepEqual(all.ids, ['st-crit', 'st-maint', 'st-pass', 'st-warn']);
      const status = (id: string, check: string): string | undefined =>
        all.entries.find((e) => e.Service.ID === id)?.Checks.find((c) => c.CheckID === check)?.Status;
      assert.equal(status('st-warn', 'st-warn-ttl'), 'warning');
      assert.equal(status('st-crit', 'st-crit-ttl'), 'critical');
      assert.equal(status('st-maint', '_service_maintenance:st-maint'), 'critical', 'maintenance is a critical check');
      assert.equal(status('st-pass', 'serfHealth'), 'passing', "the node's serfHealth check is in every entry");
      assert.deepEqual((await health(backend, 'states', { passing: '' })).ids, ['st-pass']);
      assert.deepEqual((await health(backend, 'states', { passing: 'true' })).ids, ['st-pass']);
      assert.equal((await health(backend, 'states', { passing: 'false' })).ids.length, 4);

      await backend.api.setServiceMaintenance('st-maint', false);
      await backend.api.setCheckStatus('st-warn-ttl', 'passing');
      assert.deepEqual((await health(backend, 'states', { passing: '' })).ids, ['st-maint', 'st-pass', 'st-warn']);
    });

    /** Blocks on the service until `predicate` holds for an answer (each wait at most 5 s, 30 s in all). */
    const until = async (
      service: string,
      predicate: (res: Awaited<ReturnType<typeof health>>) => boolean,
      what: string,
    ): Promise<void> => {
      let res = await health(backend, service);
      const deadline = Date.now() + 30_000;
      while (!predicate(res)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        res = await health(backend, service, { index: res.index, wait: '5s' });
      }
    };
    const checkStatus =
      (id: string, status: string) =>
      (res: Awaited<ReturnType<typeof health>>): boolean =>
        res.entries.some((e) => e.Checks.some((c) => c.CheckID === id && c.Status === status));

    it('a TTL check that is not updated within its TTL turns critical', async () => {
      await instance(backend, 'ttl-svc', 'ttl-1', { Check: { CheckID: 'ttl-1-ttl', TTL: '1s', Status: 'passing' } });
      await until('ttl-svc', checkStatus('ttl-1-ttl', 'critical'), 'the TTL to expire');
      await backend.api.setCheckStatus('ttl-1-ttl', 'passing');
      await until('ttl-svc', checkStatus('ttl-1-ttl', 'passing'), 'the TTL update');
    });

    it('an HTTP check is run by the agent itself: 2xx passing, 429 warning, 5xx critical', async () => {
      let status = 200;
      const target = http.createServer((_req, res) => {
        res.statusCode = status;
        res.end('ok');
      });
      await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
      const { port } = target.address() as AddressInfo;
      try {
        await instance(backend, 'http-checked', 'hc-1', {
          Check: { CheckID: 'hc-1-http', HTTP: `http://127.0.0.1:${port}/health`, Interval: '1s' },
        });
        await until('http-checked', checkStatus('hc-1-http', 'passing'), 'the first passing run');
        status = 429;
        await until('http-checked', checkStatus('hc-1-http', 'warning'), 'a 429 to warn');
        status = 503;
        await until('http-checked', checkStatus('hc-1-http', 'critical'), 'a 503 to fail');
      } finally {
        await backend.api.deregisterService('hc-1');
        target.closeAllConnections();
        await new Promise<void>((resolve) => target.close(() => resolve()));
      }
    });

    it('one tag and several tags (repeated tag=): all must match, case-insensitively', async () => {
      await instance(backend, 'tagged', 'tg-a', { Tags: ['v2', 'gpu'] });
      await instance(backend, 'tagged', 'tg-b', { Tags: ['V2'] });
      await instance(backend, 'tagged', 'tg-c', { Tags: ['v1', 'GPU'] });
      assert.deepEqual((await health(backend, 'tagged', { tag: 'v2' })).ids, ['tg-a', 'tg-b']);
      assert.deepEqual((await health(backend, 'tagged', { tag: 'V2' })).ids, ['tg-a', 'tg-b']);
      assert.deepEqual((await health(backend, 'tagged', { tag: ['v2', 'gpu'] })).ids, ['tg-a']);
      assert.deepEqual((await health(backend, 'tagged', { tag: ['GPU', 'V2'] })).ids, ['tg-a']);
      assert.deepEqual((await health(backend, 'tagged', { tag: ['gpu'] })).ids, ['tg-a', 'tg-c']);
      assert.deepEqual((await health(backend, 'tagged', { tag: ['v1', 'v2'] })).ids, []);
    });

    it("filter: Service.Tags, Service.Meta, Node and Checks; case-sensitive; a bad expression is an error with Consul's message", async () => {
      await instance(backend, 'filtered', 'fl-a', { Tags: ['gpu'], Meta: { version: '2' } });
      await instance(backend, 'filtered', 'fl-b', { Tags: ['GPU'], Meta: { version: '1' } });
      const ids = async (filter: string): Promise<string[]> => {
        const res = await health(backend, 'filtered', { filter });
        assert.equal(res.status, 200, `${filter}: ${res.text}`);
        return res.ids;
      };
      assert.deepEqual(await ids('"gpu" in Service.Tags'), ['fl-a'], 'filter is case-sensitive, unlike tag=');
      assert.deepEqual(await ids('Service.Meta.version == "1"'), ['fl-b']);
      assert.deepEqual(await ids('Service.Meta.version != "1" and Service.ID matches "^fl-"'), ['fl-a']);
      assert.deepEqual(await ids(`Node.Node == "${backend.nodeName}"`), ['fl-a', 'fl-b']);
      await backend.api.setCheckStatus('fl-b-ttl', 'warning');
      // A selector into a list matches when any element does: fl-a's serfHealth is "passing" too.
      assert.deepEqual(await ids('Checks.Status == "warning"'), ['fl-b']);
      assert.deepEqual(await ids('Checks.Status != "warning"'), ['fl-a', 'fl-b']);
      const bad = await health(backend, 'filtered', { filter: 'Service.Tags contains' });
      assert.match(bad.text, /^Failed to create boolean expression evaluator: /);
      // Consul 1.16 answers a bad filter on /v1/health/service with a 500 (the error comes back from
      // the RPC layer); the dev server does the same, and the library reads it as a bad request.
      assert.equal(bad.status, 500);
    });

    it('node-meta (repeatable, all must match) on catalog-registered nodes', async () => {
      const node = (name: string, address: string, meta: Record<string, string>): Promise<void> =>
        backend.api.catalogRegister({
          Node: name,
          Address: address,
          NodeMeta: meta,
          Service: { ID: `nm-${name}`, Service: 'node-meta-svc', Port: 9100 },
          Check: { CheckID: `nm-${name}-check`, Name: 'alive', Status: 'passing', ServiceID: `nm-${name}` },
        });
      await node('nm-1', '127.0.5.1', { rack: 'r1', zone: 'a' });
      await node('nm-2', '127.0.5.2', { rack: 'r2', zone: 'a' });
      assert.deepEqual((await health(backend, 'node-meta-svc')).ids, ['nm-nm-1', 'nm-nm-2']);
      assert.deepEqual((await health(backend, 'node-meta-svc', { 'node-meta': 'rack:r1' })).ids, ['nm-nm-1']);
      assert.deepEqual((await health(backend, 'node-meta-svc', { 'node-meta': ['zone:a', 'rack:r2'] })).ids, [
        'nm-nm-2',
      ]);
      assert.deepEqual((await health(backend, 'node-meta-svc', { 'node-meta': 'rack:r3' })).ids, []);
      const res = await health(backend, 'node-meta-svc', { passing: '' });
      assert.deepEqual(
        res.ids,
        ['nm-nm-1', 'nm-nm-2'],
        'a catalog node without serfHealth is healthy by its own checks',
      );
      assert.deepEqual(res.entries.find((e) => e.Node.Node === 'nm-1')?.Node.Meta, { rack: 'r1', zone: 'a' });
    });

    it('tagged addresses (service- and node-level, lan/wan, port 0) and hostnames come back as registered', async () => {
      await backend.api.catalogRegister({
        Node: 'ta-node',
        Address: '127.0.6.1',
        TaggedAddresses: { lan: '127.0.6.1', wan: '127.0.7.1' },
        Service: {
          ID: 'ta-1',
          Service: 'tagged-addr',
          Address: '127.0.6.11',
          Port: 9200,
          TaggedAddresses: { lan: { Address: '127.0.6.11', Port: 9201 }, wan: { Address: '127.0.7.11', Port: 0 } },
        },
      });
      await backend.api.catalogRegister({
        Node: 'ta-host-node',
        Address: 'node-b.workers.internal',
        Service: { ID: 'ta-2', Service: 'tagged-addr', Address: 'worker-a.workers.internal', Port: 9300 },
      });
      await backend.api.catalogRegister({
        Node: 'ta-host-node',
        Address: 'node-b.workers.internal',
        Service: { ID: 'ta-3', Service: 'tagged-addr', Port: 9301 },
      });
      const res = await health(backend, 'tagged-addr');
      assert.deepEqual(res.ids, ['ta-1', 'ta-2', 'ta-3']);
      const byId = (id: string): Entry => res.entries.find((e) => e.Service.ID === id)!;
      const one = byId('ta-1');
      assert.equal(one.Node.TaggedAddresses?.['lan'], '127.0.6.1');
      assert.equal(one.Node.TaggedAddresses?.['wan'], '127.0.7.1');
      assert.deepEqual(one.Service.TaggedAddresses?.['lan'], { Address: '127.0.6.11', Port: 9201 });
      assert.deepEqual(one.Service.TaggedAddresses?.['wan'], { Address: '127.0.7.11', Port: 0 }, 'port 0 is kept');
      assert.equal(byId('ta-2').Service.Address, 'worker-a.workers.internal');
      assert.equal(byId('ta-2').Node.Address, 'node-b.workers.internal');
      assert.equal(byId('ta-3').Service.Address, '', 'no service address: the node address applies');
    });

    it('agent-registered instances get lan_ipv4/wan_ipv4 service tagged addresses when their address is an IP', async () => {
      await instance(backend, 'auto-tagged', 'at-ip', { Address: '127.0.8.1', Port: 9400 });
      await instance(backend, 'auto-tagged', 'at-host', { Address: 'host.workers.internal', Port: 9401 });
      const res = await health(backend, 'auto-tagged');
      const tagged = (id: string): unknown => res.entries.find((e) => e.Service.ID === id)?.Service.TaggedAddresses;
      assert.deepEqual(tagged('at-ip'), {
        lan_ipv4: { Address: '127.0.8.1', Port: 9400 },
        wan_ipv4: { Address: '127.0.8.1', Port: 9400 },
      });
      assert.ok(
        [null, undefined].includes(tagged('at-host') as null) || Object.keys(tagged('at-host') ?? {}).length === 0,
      );
    });

    it('catalog services and service: names with their tags, the flat CatalogService shape; an unknown dc is a 500', async () => {
      await instance(backend, 'cat-svc', 'cat-1', { Tags: ['b', 'a'], Address: '127.0.15.1', Port: 9600 });
      const services = await backend.api.request('GET', '/v1/catalog/services');
      assert.equal(services.status, 200);
      assert.deepEqual((services.json as Record<string, string[]>)['cat-svc']?.slice().sort(), ['a', 'b']);
      assert.ok(Number(services.headers['x-consul-index']) >= 1);
      const service = await backend.api.request('GET', '/v1/catalog/service/cat-svc');
      const [entry] = service.json as Record<string, unknown>[];
      assert.equal(entry?.['ServiceID'], 'cat-1');
      assert.equal(entry?.['ServiceName'], 'cat-svc');
      assert.equal(entry?.['ServiceAddress'], '127.0.15.1');
      assert.equal(entry?.['ServicePort'], 9600);
      assert.equal(entry?.['Node'], backend.nodeName);
      assert.equal(entry?.['Address'], '127.0.0.1');
      const noDc = await health(backend, 'cat-svc', { dc: 'nowhere' });
      assert.equal(noDc.status, 500);
      assert.match(noDc.text, /No path to datacenter/);
    });

    it('?cached: served by the agent cache, X-Cache MISS then HIT (with Age)', async () => {
      await instance(backend, 'cached-svc', 'cached-1');
      const first = await health(backend, 'cached-svc', { cached: '' });
      assert.equal(first.status, 200);
      const second = await health(backend, 'cached-svc', { cached: '' });
      assert.equal(first.headers['x-cache'], 'MISS');
      assert.equal(second.headers['x-cache'], 'HIT');
      assert.match(String(second.headers['age']), /^\d+$/);
      assert.deepEqual(second.ids, ['cached-1']);
      assert.equal((await health(backend, 'cached-svc', { cached: '', consistent: '' })).status, 400);
    });
  });
}
