/**
 * Contract suite, the library end to end: `createWorkerResolver` against each backend (the dev
 * server and a real Consul agent), so what the resolver publishes from an answer is shown on
 * real Consul, not only on the double (docs/design.md §11).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver, WorkerResolverOptions } from '../../src/index.js';
import { backends } from '../helpers/contract-backends.js';
import type { Backend } from '../helpers/contract-backends.js';
import { waitFor } from '../helpers/wait.js';
import { silentLogger } from '../helpers/dev-workers.js';

for (const factory of backends) {
  describe(`contract: the resolver on ${factory.name}`, { timeout: 120_000 }, () => {
    let backend: Backend;
    const open: DiscoveringWorkerResolver[] = [];
    const resolver = (options: Omit<WorkerResolverOptions, 'logger' | 'env'>): DiscoveringWorkerResolver => {
      const r = createWorkerResolver({ logger: silentLogger, env: {}, minPublishIntervalMs: 0, ...options });
      open.push(r);
      return r;
    };
    const consul = (service: string, more: Record<string, unknown> = {}): Omit<WorkerResolverOptions, 'logger'> => ({
      service,
      consul: { address: backend.address, waitMs: 2000, ...more },
    });
    const urls = (r: DiscoveringWorkerResolver): string[] =>
      r
        .getUrls()
        .map((u) => u.href)
        .sort();

    before(async () => {
      backend = await factory.start();
      for (let n = 1; n <= 12; n += 1) {
        await backend.api.registerService({
          Name: 'workers',
          ID: `w-${n}`,
          Address: `127.0.9.${n}`,
          Port: 9000 + n,
          Tags: n <= 3 ? ['V2', 'gpu'] : n <= 6 ? ['v2'] : ['v1'],
          Check: { CheckID: `w-${n}-ttl`, TTL: '1h', Status: 'passing' },
        });
      }
    });
    after(async () => {
      await Promise.all(open.map((r) => r.close()));
      await backend?.stop();
    });

    it('publishes every passing instance, and follows a check going critical', async () => {
      const r = resolver(consul('workers'));
      await r.ready({ timeoutMs: 20_000 });
      assert.equal(r.getUrls().length, 12);
      assert.equal(r.snapshot().source, 'consul');
      await backend.api.setCheckStatus('w-12-ttl', 'critical');
      await waitFor(() => r.getUrls().length === 11, 'the critical instance to leave', 20_000);
      assert.ok(!urls(r).includes('http://127.0.9.12:9012/'));
      await backend.api.setCheckStatus('w-12-ttl', 'passing');
      await waitFor(() => r.getUrls().length === 12, 'the instance to come back', 20_000);
    });

    it('one rule for any number of tags: case-insensitive, all must match', async () => {
      const one = resolver({ ...consul('workers'), consul: { address: backend.address, tags: ['v2'] } });
      const two = resolver({ ...consul('workers'), consul: { address: backend.address, tags: ['v2', 'GPU'] } });
      await one.ready({ timeoutMs: 20_000 });
      await two.ready({ timeoutMs: 20_000 });
      assert.equal(one.getUrls().length, 6);
      assert.deepEqual(urls(two), ['http://127.0.9.1:9001/', 'http://127.0.9.2:9002/', 'http://127.0.9.3:9003/']);
    });

    it("tagged addresses in Consul's order, port 0 = the service port; hostnames as hosts", async () => {
      await backend.api.catalogRegister({
        Node: 'addr-node',
        Address: '127.0.12.1',
        TaggedAddresses: { lan: '127.0.12.1', wan: '127.0.13.1' },
        Service: {
          ID: 'a-1',
          Service: 'addressed',
          Address: '127.0.12.11',
          Port: 9500,
          TaggedAddresses: { wan: { Address: '127.0.13.11', Port: 0 } },
        },
        Check: { CheckID: 'a-1-check', Name: 'alive', Status: 'passing', ServiceID: 'a-1' },
      });
      await backend.api.catalogRegister({
        Node: 'addr-node',
        Address: '127.0.12.1',
        TaggedAddresses: { lan: '127.0.12.1', wan: '127.0.13.1' },
        Service: { ID: 'a-2', Service: 'addressed', Port: 9501 },
        Check: { CheckID: 'a-2-check', Name: 'alive', Status: 'passing', ServiceID: 'a-2' },
      });
      await backend.api.catalogRegister({
        Node: 'host-node',
        Address: 'node-b.workers.internal',
        Service: { ID: 'a-3', Service: 'addressed', Address: 'worker_a.workers.internal', Port: 9502 },
        Check: { CheckID: 'a-3-check', Name: 'alive', Status: 'passing', ServiceID: 'a-3' },
      });
      await backend.api.catalogRegister({
        Node: 'host-node',
        Address: 'node-b.workers.internal',
        Service: { ID: 'a-4', Service: 'addressed', Port: 9503 },
        Check: { CheckID: 'a-4-check', Name: 'alive', Status: 'passing', ServiceID: 'a-4' },
      });
      const plain = resolver(consul('addressed'));
      const wan = resolver({ ...consul('addressed'), consul: { address: backend.address, taggedAddress: 'wan' } });
      const lan = resolver({ ...consul('addressed'), consul: { address: backend.address, taggedAddress: 'lan' } });
      await Promise.all([plain, wan, lan].map((r) => r.ready({ timeoutMs: 20_000 })));
      const expectedPlain = [
        'http://127.0.12.11:9500/',
        'http://127.0.12.1:9501/',
        'http://node-b.workers.internal:9503/',
        'http://worker_a.workers.internal:9502/',
      ];
      assert.deepEqual(urls(plain), expectedPlain);
      assert.deepEqual(urls(lan), expectedPlain, 'lan: Service.Address, then the node lan address (= Node.Address)');
      assert.deepEqual(urls(wan), [
        'http://127.0.13.11:9500/',
        'http://127.0.13.1:9501/',
        'http://node-b.workers.internal:9503/',
        'http://worker_a.workers.internal:9502/',
      ]);
    });

    it(`DNS SRV with the default transport: all 12 instances, not Consul's 3-record UDP cut`, async () => {
      const r = resolver({
        service: 'workers',
        dns: { name: '_workers._tcp.service.consul', servers: [backend.dnsAddr] },
      });
      await r.ready({ timeoutMs: 20_000 });
      assert.equal(r.snapshot().source, 'dns');
      assert.equal(r.getUrls().length, 12);
    });
  });
}
