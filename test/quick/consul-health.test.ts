import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseHealthBody } from '../../src/consul/health.js';
import { urlHost } from '../../src/url-host.js';
import type { ConsulWorkerPolicy } from '../../src/consul/health.js';
import { ErrorCode, isWorkerResolverError } from '../../src/errors.js';

const policy: ConsulWorkerPolicy = {
  taggedAddress: undefined,
  scheme: 'http',
  schemeMetaKey: undefined,
  includeWarning: false,
  metaMatch: undefined,
};

interface EntryOptions {
  id?: string;
  node?: string;
  nodeAddress?: string;
  address?: string;
  port?: unknown;
  tags?: unknown;
  meta?: unknown;
  checks?: { CheckID: string; Status: string }[];
  serviceTagged?: Record<string, { Address: string; Port: number }>;
  nodeTagged?: Record<string, string>;
  weights?: { Passing: number; Warning: number };
}

function entry(o: EntryOptions = {}): unknown {
  return {
    Node: { Node: o.node ?? 'n1', Address: o.nodeAddress ?? '10.1.0.1', TaggedAddresses: o.nodeTagged ?? null },
    Service: {
      ID: o.id ?? 'w1',
      Service: 'worker',
      Address: o.address ?? '',
      Port: o.port ?? 8080,
      Tags: o.tags ?? [],
      Meta: o.meta ?? {},
      TaggedAddresses: o.serviceTagged ?? null,
      ...(o.weights ? { Weights: o.weights } : {}),
    },
    Checks: o.checks ?? [
      { CheckID: 'serfHealth', Status: 'passing' },
      { CheckID: 'service:w1', Status: 'passing' },
    ],
  };
}

const parse = (entries: unknown[], p: Partial<ConsulWorkerPolicy> = {}) =>
  parseHealthBody(JSON.stringify(entries), { ...policy, ...p });

describe('consul health parsing: addresses', () => {
  it('uses Node.Address when the service has no address', () => {
    const { workers } = parse([entry()]);
    assert.equal(workers[0]!.url, 'http://10.1.0.1:8080');
    assert.equal(workers[0]!.node, 'n1');
  });

  it('prefers Service.Address over Node.Address', () => {
    assert.equal(parse([entry({ address: '10.2.0.7' })]).workers[0]!.url, 'http://10.2.0.7:8080');
  });

  it('brackets IPv6 addresses and lower-cases them', () => {
    const w = parse([entry({ address: 'FD00::7' })]).workers[0]!;
    assert.equal(w.url, 'http://[fd00::7]:8080');
    assert.equal(w.address, 'fd00::7');
    assert.equal(parse([entry({ address: '[fd00::8]' })]).workers[0]!.url, 'http://[fd00::8]:8080');
  });

  it('accepts host names', () => {
    assert.equal(
      parse([entry({ address: 'Worker-1.example.internal' })]).workers[0]!.url,
      'http://worker-1.example.internal:8080',
    );
  });

  it("follows Consul's BestAddress order: service tagged, Service.Address, node tagged, Node.Address", () => {
    const all = entry({
      address: '10.2.0.7',
      serviceTagged: { wan: { Address: '203.0.113.5', Port: 9443 } },
      nodeTagged: { wan: '198.51.100.1' },
    });
    assert.equal(parse([all], { taggedAddress: 'wan' }).workers[0]!.url, 'http://203.0.113.5:9443');
    // A containerised worker's own Service.Address wins over its node's tagged address.
    const own = entry({ address: '10.2.0.7', nodeTagged: { wan: '198.51.100.1', lan: '10.9.9.9' } });
    assert.equal(parse([own], { taggedAddress: 'wan' }).workers[0]!.url, 'http://10.2.0.7:8080');
    assert.equal(parse([own], { taggedAddress: 'lan' }).workers[0]!.url, 'http://10.2.0.7:8080');
    const nodeTaggedOnly = entry({ nodeTagged: { wan: '198.51.100.1' } });
    assert.equal(parse([nodeTaggedOnly], { taggedAddress: 'wan' }).workers[0]!.url, 'http://198.51.100.1:8080');
    assert.equal(parse([nodeTaggedOnly]).workers[0]!.url, 'http://10.1.0.1:8080');
    assert.equal(parse([entry()], { taggedAddress: 'wan' }).workers[0]!.url, 'http://10.1.0.1:8080');
    const v6 = entry({ serviceTagged: { lan_ipv6: { Address: '2001:db8::1', Port: 7000 } } });
    assert.equal(parse([v6], { taggedAddress: 'lan_ipv6' }).workers[0]!.url, 'http://[2001:db8::1]:7000');
  });

  it('reads a service tagged address with Port 0 as "the service port"', () => {
    const zero = entry({ address: '10.2.0.7', serviceTagged: { wan: { Address: '203.0.113.5', Port: 0 } } });
    const r = parse([zero], { taggedAddress: 'wan' });
    assert.equal(r.rejected, 0);
    assert.equal(r.workers[0]!.url, 'http://203.0.113.5:8080');
  });

  it('accepts host names with underscores (Docker Compose service names), as WHATWG URL does', () => {
    const r = parse([entry({ address: 'datafusion_worker_1' })]);
    assert.equal(r.rejected, 0);
    assert.equal(r.workers[0]!.url, 'http://datafusion_worker_1:8080');
    assert.equal(new URL(r.workers[0]!.url).hostname, 'datafusion_worker_1');
  });

  it('takes the scheme from a meta key when configured and valid', () => {
    const p = { schemeMetaKey: 'scheme' };
    assert.equal(parse([entry({ meta: { scheme: 'HTTPS' } })], p).workers[0]!.url, 'https://10.1.0.1:8080');
    assert.equal(parse([entry({ meta: { scheme: 'no way' } })], p).workers[0]!.url, 'http://10.1.0.1:8080');
    assert.equal(parse([entry()], { scheme: 'grpc' }).workers[0]!.url, 'grpc://10.1.0.1:8080');
  });

  it('rejects and counts unusable addresses and ports', () => {
    const bad = [
      entry({ id: 'a', address: 'not a host!' }),
      entry({ id: 'b', address: 'fe80::1%eth0' }),
      entry({ id: 'c', port: 0 }),
      entry({ id: 'd', port: 70000 }),
      entry({ id: 'e', port: '8080' }),
      entry({ id: 'f', nodeAddress: '', address: '' }),
      entry({ id: 'ok' }),
    ];
    const r = parse(bad);
    assert.equal(r.rejected, 6);
    assert.deepEqual(
      r.workers.map((w) => w.id),
      ['ok'],
    );
  });

  it('rejects entries of the wrong shape without failing the answer', () => {
    const r = parse([
      null,
      7,
      'x',
      { Node: {}, Service: null },
      entry({ tags: 'gpu' }),
      entry({ meta: { a: 1 } }),
      entry({ id: 'ok' }),
    ]);
    assert.equal(r.rejected, 6);
    assert.equal(r.workers.length, 1);
  });
});

describe('consul health parsing: status policy', () => {
  const checks = (...statuses: [string, string][]) => statuses.map(([CheckID, Status]) => ({ CheckID, Status }));

  it('keeps only passing instances by default', () => {
    const r = parse([
      entry({ id: 'p' }),
      entry({ id: 'w', checks: checks(['serfHealth', 'passing'], ['service:w', 'warning']) }),
      entry({ id: 'c', checks: checks(['serfHealth', 'critical']) }),
    ]);
    assert.deepEqual(
      r.workers.map((w) => w.id),
      ['p'],
    );
    assert.equal(r.filtered, 2);
  });

  it('keeps warning instances when asked, with status warning and the warning weight', () => {
    const r = parse(
      [
        entry({ id: 'w', checks: checks(['service:w', 'warning']), weights: { Passing: 10, Warning: 1 } }),
        entry({ id: 'p', weights: { Passing: 10, Warning: 1 } }),
      ],
      { includeWarning: true },
    );
    const byId = Object.fromEntries(r.workers.map((w) => [w.id, w]));
    assert.equal(byId['w']!.status, 'warning');
    assert.equal(byId['w']!.weight, 1);
    assert.equal(byId['p']!.weight, 10);
  });

  it('always excludes service and node maintenance, even with warning allowed', () => {
    const r = parse(
      [
        entry({ id: 'm1', checks: checks(['_service_maintenance:m1', 'passing']) }),
        entry({ id: 'm2', checks: checks(['_node_maintenance', 'warning']) }),
        entry({ id: 'ok' }),
      ],
      { includeWarning: true },
    );
    assert.deepEqual(
      r.workers.map((w) => w.id),
      ['ok'],
    );
  });

  it('keeps only instances whose meta matches the version filter', () => {
    const r = parse(
      [
        entry({ id: 'v1', meta: { version: '1.0' } }),
        entry({ id: 'v2', meta: { version: '2.0' } }),
        entry({ id: 'none' }),
      ],
      { metaMatch: { key: 'version', values: ['2.0'] } },
    );
    assert.deepEqual(
      r.workers.map((w) => w.id),
      ['v2'],
    );
  });
});

describe('consul health parsing: malformed bodies', () => {
  it('throws ERR_CONSUL_MALFORMED for invalid JSON and non-arrays', () => {
    for (const body of ['{', '', '{"a":1}', 'null', '"x"']) {
      assert.throws(
        () => parseHealthBody(body, policy),
        (err) => isWorkerResolverError(err, ErrorCode.CONSUL_MALFORMED),
        body,
      );
    }
  });

  it('parses an empty array as zero workers', () => {
    const r = parseHealthBody('[]', policy);
    assert.equal(r.workers.length, 0);
    assert.equal(r.rejected, 0);
  });
});

describe('urlHost', () => {
  it('formats hosts for a URL authority', () => {
    assert.equal(urlHost('10.0.0.1'), '10.0.0.1');
    assert.equal(urlHost('::1'), '[::1]');
    assert.equal(urlHost('example.com.'), 'example.com');
    assert.equal(urlHost(''), undefined);
    assert.equal(urlHost('a b'), undefined);
    assert.equal(urlHost('-bad.example'), undefined);
  });
});
