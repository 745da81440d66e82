import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Answer, RecordType, SrvData } from 'dns-packet';
import { ConsulDnsServer } from '../../src/testing/consul-dns.js';
import { dnsQuery } from '../helpers/dns-query.js';
import type { DnsAnswer } from '../helpers/dns-query.js';
import type { DnsServiceInstance } from '../../src/testing/consul-dns.js';

/** One hand-built query to the double (see helpers/dns-query.ts), so the test controls EDNS and transport exactly. */
function ask(
  server: ConsulDnsServer,
  name: string,
  type: RecordType,
  {
    transport = 'udp',
    edns = false,
    timeoutMs = 2000,
  }: { transport?: 'udp' | 'tcp'; edns?: boolean; timeoutMs?: number } = {},
): Promise<DnsAnswer> {
  return dnsQuery(`${server.host}:${server.port}`, name, type, {
    transport,
    timeoutMs,
    ...(edns ? { ednsSize: 4096 } : {}),
  });
}

function instance(i: number, extra: Partial<DnsServiceInstance> = {}): DnsServiceInstance {
  return {
    node: `node${i}`,
    nodeAddress: `10.0.0.${i}`,
    serviceAddress: '',
    port: 8000 + i,
    weight: 1,
    datacenter: 'dc1',
    ...extra,
  };
}

const srvData = (records: Answer[] | undefined): SrvData[] =>
  (records ?? []).flatMap((r) => (r.type === 'SRV' ? [r.data] : []));
const addrs = (records: Answer[] | undefined, type: 'A' | 'AAAA'): { name: string; data: string }[] =>
  (records ?? []).flatMap((r) => ((r.type === 'A' || r.type === 'AAAA') && r.type === type ? [r] : []));
const of = (records: Answer[] | undefined, type: string): Answer[] => (records ?? []).filter((r) => r.type === type);

describe('ConsulDnsServer', () => {
  const services: Record<string, DnsServiceInstance[]> = {
    web: [instance(1), instance(2, { serviceAddress: '192.168.1.2', weight: 5 })],
    big: Array.from({ length: 10 }, (_, i) => instance(i + 1)),
    v6: [instance(1, { serviceAddress: 'fd00::7' })],
    down: [],
    remote: [instance(9, { datacenter: 'dc2' })],
  };
  const lookups: { service: string; tag: string | undefined }[] = [];
  const lookup = (service: string, tag: string | undefined): DnsServiceInstance[] | undefined => {
    lookups.push({ service, tag });
    return services[service];
  };
  let server: ConsulDnsServer;
  let truncating: ConsulDnsServer;

  before(async () => {
    server = await ConsulDnsServer.start({ lookup });
    truncating = await ConsulDnsServer.start({ lookup, enableTruncate: true, ttlSeconds: 30 });
  });
  after(async () => {
    await server.stop();
    await truncating.stop();
    await server.stop(); // idempotent
  });

  test('SRV answers: priority 1, weight, Consul-style targets, addresses in Additional', async () => {
    const res = await ask(server, 'web.service.consul', 'SRV');
    assert.equal(res.rcode, 'NOERROR');
    assert.equal(res.flag_aa, true);
    const srvs = srvData(res.answers);
    const byPort = new Map(srvs.map((d) => [d?.port, d]));
    assert.deepEqual(byPort.get(8001), { priority: 1, weight: 1, port: 8001, target: 'node1.node.dc1.consul' });
    assert.deepEqual(byPort.get(8002), { priority: 1, weight: 5, port: 8002, target: 'c0a80102.addr.dc1.consul' });
    const extras = new Map(addrs(res.additionals, 'A').map((a) => [a.name, a.data]));
    assert.equal(extras.get('node1.node.dc1.consul'), '10.0.0.1');
    assert.equal(extras.get('c0a80102.addr.dc1.consul'), '192.168.1.2');
    assert.equal(of(res.additionals, 'OPT').length, 0, 'no OPT echoed to a query without one');
  });

  test('RFC 2782 names, tags and datacenters reach the lookup', async () => {
    lookups.length = 0;
    assert.equal((await ask(server, '_web._tcp.service.consul', 'SRV')).answers?.length, 2);
    assert.equal((await ask(server, '_web._primary.service.dc1.consul', 'SRV')).answers?.length, 2);
    assert.equal((await ask(server, 'primary.web.service.consul', 'SRV')).answers?.length, 2);
    assert.deepEqual(lookups, [
      { service: 'web', tag: undefined },
      { service: 'web', tag: 'primary' },
      { service: 'web', tag: 'primary' },
    ]);
    const remote = await ask(server, 'remote.service.dc2.consul', 'SRV');
    assert.equal(srvData(remote.answers)[0]?.target, 'node9.node.dc2.consul');
    assert.equal((await ask(server, 'remote.service.consul', 'SRV')).rcode, 'NXDOMAIN', 'dc1 has no instance');
  });

  test('A/AAAA for services, nodes and addr names', async () => {
    const a = await ask(server, 'web.service.consul', 'A');
    assert.deepEqual(
      addrs(a.answers, 'A')
        .map((r) => r.data)
        .sort(),
      ['10.0.0.1', '192.168.1.2'],
    );
    const v6 = await ask(server, '_v6._tcp.service.consul', 'SRV');
    assert.equal(srvData(v6.answers)[0]?.target, 'fd000000000000000000000000000007.addr.dc1.consul');
    assert.equal(addrs(v6.additionals, 'AAAA')[0]?.data, 'fd00::7');
    const addr = await ask(server, 'fd000000000000000000000000000007.addr.dc1.consul', 'AAAA');
    assert.equal(addrs(addr.answers, 'AAAA')[0]?.data, 'fd00::7');
    const node = await ask(server, 'node1.node.consul', 'A');
    assert.equal(addrs(node.answers, 'A')[0]?.data, '10.0.0.1');
    const nodata = await ask(server, 'web.service.consul', 'AAAA');
    assert.equal(nodata.rcode, 'NOERROR');
    assert.equal(nodata.answers?.length, 0);
    assert.equal(of(nodata.authorities, 'SOA').length, 1);
  });

  test('NXDOMAIN with the SOA for unknown and unhealthy services; REFUSED outside the domain', async () => {
    for (const name of ['nope.service.consul', 'down.service.consul', 'garbage.consul']) {
      const res = await ask(server, name, 'SRV', { edns: true });
      assert.equal(res.rcode, 'NXDOMAIN', name);
      const soa = of(res.authorities, 'SOA')[0];
      assert.equal(soa?.name, 'consul');
      assert.equal(of(res.additionals, 'OPT').length, 1, 'OPT echoed on NXDOMAIN');
    }
    assert.equal((await ask(server, 'example.com', 'A')).rcode, 'REFUSED');
  });

  test('10 instances: UDP without EDNS is silently cut to 3; enableTruncate sets TC', async () => {
    const plain = await ask(server, 'big.service.consul', 'SRV');
    assert.equal(of(plain.answers, 'SRV').length, 3);
    assert.equal(plain.flag_tc, false, 'Consul does not set TC unless enable_truncate');
    const targets = new Set(srvData(plain.answers).map((r) => r.target));
    assert.deepEqual(
      new Set(addrs(plain.additionals, 'A').map((r) => r.name)),
      targets,
      'Additional synced with answers',
    );
    const tc = await ask(truncating, 'big.service.consul', 'SRV');
    assert.equal(of(tc.answers, 'SRV').length, 3);
    assert.equal(tc.flag_tc, true);
    assert.equal(tc.answers?.[0]?.type === 'SRV' && tc.answers[0].ttl, 30);
  });

  test('10 instances: EDNS over UDP and plain TCP get all 10', async () => {
    const edns = await ask(server, 'big.service.consul', 'SRV', { edns: true });
    assert.equal(of(edns.answers, 'SRV').length, 10);
    assert.equal(of(edns.additionals, 'A').length, 10);
    assert.equal((of(edns.additionals, 'OPT')[0] as { udpPayloadSize?: number }).udpPayloadSize, 4096);
    const tcp = await ask(server, 'big.service.consul', 'SRV', { transport: 'tcp' });
    assert.equal(of(tcp.answers, 'SRV').length, 10);
    assert.equal(tcp.flag_tc, false);
  });

  test('answers are shuffled', async () => {
    const orders = new Set<string>();
    for (let i = 0; i < 10; i += 1) {
      const res = await ask(server, 'big.service.consul', 'SRV', { transport: 'tcp' });
      orders.add(
        srvData(res.answers)
          .map((r) => r.port)
          .join(','),
      );
    }
    assert.ok(orders.size > 1);
  });

  test('queries are recorded; failNext and dropNext inject faults', async () => {
    const faulty = await ConsulDnsServer.start({ lookup });
    try {
      faulty.failNext(1, 'SERVFAIL');
      const servfail = await ask(faulty, 'web.service.consul', 'SRV', { edns: true });
      assert.equal(servfail.rcode, 'SERVFAIL');
      assert.equal(of(servfail.additionals, 'OPT').length, 1, 'Consul echoes EDNS on SERVFAIL');
      faulty.failNext(1, 'REFUSED');
      assert.equal((await ask(faulty, 'web.service.consul', 'SRV', { transport: 'tcp' })).rcode, 'REFUSED');
      assert.equal((await ask(faulty, 'web.service.consul', 'SRV')).rcode, 'NOERROR', 'faults are used up');
      faulty.dropNext(1);
      await assert.rejects(ask(faulty, 'web.service.consul', 'SRV', { timeoutMs: 200 }), /no answer/);
      assert.deepEqual(
        faulty.queries.map((q) => [q.name, q.type, q.transport, q.edns]),
        [
          ['web.service.consul', 'SRV', 'udp', true],
          ['web.service.consul', 'SRV', 'tcp', false],
          ['web.service.consul', 'SRV', 'udp', false],
          ['web.service.consul', 'SRV', 'udp', false],
        ],
      );
    } finally {
      await faulty.stop();
    }
  });
});
