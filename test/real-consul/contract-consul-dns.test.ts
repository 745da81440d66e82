/**
 * Contract suite, DNS interface: the same questions to the dev server's DNS and a real Consul
 * agent's (docs/design.md §11), over UDP (with and without EDNS) and TCP, with 12 instances — what Consul
 * really cuts, what it puts in the Additional section, how it answers hostnames.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Answer, SrvData } from 'dns-packet';
import { backends } from '../helpers/contract-backends.js';
import type { Backend } from '../helpers/contract-backends.js';
import { dnsQuery } from '../helpers/dns-query.js';
import type { DnsAnswer, DnsQueryOptions } from '../helpers/dns-query.js';

const MANY = 12;

const srv = (answer: DnsAnswer): SrvData[] =>
  (answer.answers ?? []).flatMap((a) => (a.type === 'SRV' ? [a.data] : [])).sort((x, y) => x.port - y.port);
const trimDot = (name: string): string => name.replace(/\.$/, '').toLowerCase();
/** A/AAAA records of the Additional section, by owner name. */
const addresses = (answer: DnsAnswer): Map<string, string> =>
  new Map(
    (answer.additionals ?? []).flatMap((a: Answer) =>
      a.type === 'A' || a.type === 'AAAA' ? [[trimDot(a.name), a.data] as const] : [],
    ),
  );

for (const factory of backends) {
  describe(`contract: Consul DNS (${factory.name})`, { timeout: 120_000 }, () => {
    let backend: Backend;
    const ask = (name: string, type: 'SRV' | 'A', opts: DnsQueryOptions = {}): Promise<DnsAnswer> =>
      dnsQuery(backend.dnsAddr, name, type, opts);

    before(async () => {
      backend = await factory.start();
      for (let n = 1; n <= MANY; n += 1) {
        await backend.api.registerService({
          Name: 'many',
          ID: `many-${n}`,
          Address: `127.0.3.${n}`,
          Port: 9000 + n,
          Tags: n % 2 === 1 ? ['odd'] : ['even'],
          Check: { CheckID: `many-${n}-ttl`, TTL: '1h', Status: 'passing' },
        });
      }
    });
    after(() => backend?.stop());

    it(`UDP without EDNS: ${MANY} instances are cut to 3 answers and TC is not set`, async () => {
      const answer = await ask('many.service.consul', 'SRV');
      assert.equal(answer.rcode, 'NOERROR');
      assert.equal(srv(answer).length, 3);
      assert.equal(answer.truncated, false, 'Consul does not set TC unless enable_truncate is on');
      const extra = addresses(answer);
      for (const record of srv(answer)) {
        const n = record.port - 9000;
        assert.equal(trimDot(record.target), `7f0003${n.toString(16).padStart(2, '0')}.addr.dc1.consul`);
        assert.equal(extra.get(trimDot(record.target)), `127.0.3.${n}`, 'the A record is in Additional');
        assert.equal(record.priority, 1);
        assert.equal(record.weight, 1);
      }
      assert.equal(srv(await ask('many.service.consul', 'SRV', { ednsSize: 512 })).length, 3, 'EDNS 512 is no EDNS');
      assert.equal((await ask('many.service.consul', 'A')).answers?.length, 3, 'A answers are cut the same way');
    });

    it(`UDP with EDNS (1232 or 4096) and TCP: all ${MANY} instances, each with its A record`, async () => {
      for (const opts of [{ ednsSize: 1232 }, { ednsSize: 4096 }, { transport: 'tcp' as const }]) {
        const answer = await ask('many.service.consul', 'SRV', opts);
        const what = JSON.stringify(opts);
        assert.equal(answer.truncated, false, what);
        const records = srv(answer);
        assert.deepEqual(
          records.map((r) => r.port),
          Array.from({ length: MANY }, (_, i) => 9001 + i),
          what,
        );
        const extra = addresses(answer);
        for (const r of records) assert.equal(extra.get(trimDot(r.target)), `127.0.3.${r.port - 9000}`, what);
      }
    });

    it('the RFC 2782 name and the tag form', async () => {
      assert.equal(srv(await ask('_many._tcp.service.consul', 'SRV', { transport: 'tcp' })).length, MANY);
      assert.equal(srv(await ask('_many._tcp.service.dc1.consul', 'SRV', { transport: 'tcp' })).length, MANY);
      const odd = srv(await ask('odd.many.service.consul', 'SRV', { transport: 'tcp' }));
      assert.deepEqual(
        odd.map((r) => r.port % 2),
        Array<number>(MANY / 2).fill(1),
      );
      assert.equal(srv(await ask('_many._odd.service.consul', 'SRV', { transport: 'tcp' })).length, MANY / 2);
    });

    it('warning instances are served, critical and maintenance ones are not; none left is NXDOMAIN with SOA', async () => {
      for (const [id, port, status] of [
        ['mix-pass', 9101, 'passing'],
        ['mix-warn', 9102, 'warning'],
        ['mix-crit', 9103, 'critical'],
        ['mix-maint', 9104, 'passing'],
      ] as const) {
        await backend.api.registerService({
          Name: 'mix',
          ID: id,
          Address: '127.0.4.1',
          Port: port,
          Check: { CheckID: `${id}-ttl`, TTL: '1h', Status: status },
        });
      }
      await backend.api.setServiceMaintenance('mix-maint', true);
      const ports = srv(await ask('mix.service.consul', 'SRV', { transport: 'tcp' })).map((r) => r.port);
      assert.deepEqual(ports, [9101, 9102]);

      await backend.api.setCheckStatus('mix-pass-ttl', 'critical');
      await backend.api.setCheckStatus('mix-warn-ttl', 'critical');
      const none = await ask('mix.service.consul', 'SRV');
      assert.equal(none.rcode, 'NXDOMAIN');
      assert.deepEqual(
        (none.authorities ?? []).map((a) => a.type),
        ['SOA'],
      );
      const unknown = await ask('no-such-service.service.consul', 'SRV');
      assert.equal(unknown.rcode, 'NXDOMAIN');
      assert.deepEqual(
        (unknown.authorities ?? []).map((a) => a.type),
        ['SOA'],
      );
    });

    it('a hostname Service.Address or Node.Address is the SRV target itself, with no address record', async () => {
      await backend.api.registerService({
        Name: 'hosty',
        ID: 'hosty-1',
        Address: 'worker-a.workers.internal',
        Port: 9201,
        Check: { CheckID: 'hosty-1-ttl', TTL: '1h', Status: 'passing' },
      });
      await backend.api.catalogRegister({
        Node: 'hosty-node',
        Address: 'node-b.workers.internal',
        Service: { ID: 'hosty-2', Service: 'hosty', Port: 9202 },
      });
      const answer = await ask('hosty.service.consul', 'SRV', { transport: 'tcp' });
      assert.deepEqual(
        srv(answer).map((r) => [r.port, trimDot(r.target)]),
        [
          [9201, 'worker-a.workers.internal'],
          [9202, 'node-b.workers.internal'],
        ],
      );
      assert.deepEqual([...addresses(answer).keys()], [], 'no A record made up for a hostname');
    });

    it('an instance without its own address: the target is <node>.node.<dc>.consul with the node address', async () => {
      await backend.api.registerService({
        Name: 'node-addr',
        ID: 'node-addr-1',
        Port: 9301,
        Check: { CheckID: 'node-addr-1-ttl', TTL: '1h', Status: 'passing' },
      });
      const answer = await ask('node-addr.service.consul', 'SRV');
      const [record] = srv(answer);
      assert.equal(trimDot(record?.target ?? ''), `${backend.nodeName}.node.dc1.consul`.toLowerCase());
      assert.equal(addresses(answer).get(trimDot(record?.target ?? '')), '127.0.0.1');
    });

    it('a name outside the Consul domain is REFUSED (no recursors)', async () => {
      assert.equal((await ask('example.com', 'A')).rcode, 'REFUSED');
    });
  });
}
