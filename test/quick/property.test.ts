/**
 * Property tests (fast-check): random Consul health answers and random SRV/A/AAAA answers
 * never make the resolver throw; every published URL is valid and carries the host:port the
 * input intended; sorting and dedupe do not depend on input order. 10,000 cases each.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { once } from 'node:events';
import { isIP, isIPv6 } from 'node:net';
import fc from 'fast-check';
import * as dnsPacket from 'dns-packet';
import { parseHealthBody } from '../../src/consul/health.js';
import type { ConsulWorkerPolicy } from '../../src/consul/health.js';
import { isWorkerResolverError } from '../../src/errors.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import { resolveSrvWorkers } from '../../src/dns/source.js';
import { systemClock } from '../../src/clock.js';
import type { WorkerCandidate } from '../../src/source.js';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 10_000);

// ---- Consul health answers ------------------------------------------------------------------

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const ipv6 = fc.ipV6();
const label = fc.stringMatching(/^[a-z0-9_]([a-z0-9_-]{0,10}[a-z0-9_])?$/);
const hostname = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const garbage = fc.oneof(
  fc.constant('not a host'),
  fc.constant('fe80::1%eth0'),
  fc.constant('-x.example'),
  fc.string().filter((s) => /[^a-z0-9.:_-]/i.test(s)),
);
type Kind = 'ipv4' | 'ipv6' | 'hostname' | 'garbage';
const address = fc.oneof(
  ipv4.map((a): { kind: Kind; a: string } => ({ kind: 'ipv4', a })),
  ipv6.map((a): { kind: Kind; a: string } => ({ kind: 'ipv6', a })),
  hostname.map((a): { kind: Kind; a: string } => ({ kind: 'hostname', a })),
  garbage.map((a): { kind: Kind; a: string } => ({ kind: 'garbage', a })),
);
const port = fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(0, -1, 70000, 8080.5, '8080', null));
const status = fc.constantFrom('passing', 'warning', 'critical', 'maintenance');
type Where = 'serviceTagged' | 'nodeTagged' | 'service' | 'node';

const entryArb = fc.record({
  id: fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,12}$/), fc.constant('')),
  where: fc.constantFrom<Where>('serviceTagged', 'nodeTagged', 'service', 'node'),
  address,
  port,
  // 0 in a service tagged address means "the service port" (Consul's rule).
  taggedPort: fc.option(fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constant(0)), { nil: undefined }),
  statuses: fc.array(status, { maxLength: 3 }),
  tags: fc.array(label, { maxLength: 3 }),
  meta: fc.dictionary(label, fc.string({ maxLength: 8 }), { maxKeys: 3 }),
});
type EntrySpec = typeof entryArb extends fc.Arbitrary<infer T> ? T : never;

function toEntry(e: EntrySpec, tagged: string): unknown {
  const checks = e.statuses.map((s, i) =>
    s === 'maintenance'
      ? { CheckID: `_service_maintenance:${e.id}`, Status: 'critical' }
      : { CheckID: `check-${i}`, Status: s },
  );
  return {
    Node: {
      Node: `node-${e.id}`,
      Address: e.where === 'node' ? e.address.a : '',
      TaggedAddresses: e.where === 'nodeTagged' ? { [tagged]: e.address.a } : {},
    },
    Service: {
      ID: e.id,
      Service: 'worker',
      Address: e.where === 'service' ? e.address.a : '',
      Port: e.port,
      Tags: e.tags,
      Meta: e.meta,
      TaggedAddresses:
        e.where === 'serviceTagged' ? { [tagged]: { Address: e.address.a, Port: e.taggedPort ?? e.port } } : {},
    },
    Checks: checks,
  };
}

/** What the entry was built to mean, derived from how it was built (not from the parser's rules). */
function intended(
  e: EntrySpec,
  includeWarning: boolean,
): { verdict: 'worker'; host: string; port: number } | { verdict: 'rejected' | 'filtered' } {
  if (e.id === '') return { verdict: 'rejected' };
  const healthy = e.statuses.every((s) => s === 'passing' || (includeWarning && s === 'warning'));
  if (!healthy) return { verdict: 'filtered' };
  const p = e.where === 'serviceTagged' && e.taggedPort !== undefined && e.taggedPort !== 0 ? e.taggedPort : e.port;
  const numericTld =
    e.address.kind === 'hostname' && isIP(e.address.a) === 0 && /(^|\.)(\d+|0x[0-9a-f]*)$/i.test(e.address.a);
  if (
    e.address.kind === 'garbage' ||
    numericTld ||
    typeof p !== 'number' ||
    !Number.isInteger(p) ||
    p < 1 ||
    p > 65535
  ) {
    return { verdict: 'rejected' };
  }
  return { verdict: 'worker', host: e.address.a.toLowerCase(), port: p };
}

function sameHost(urlHostname: string, host: string): boolean {
  const bare = urlHostname.startsWith('[') ? urlHostname.slice(1, -1) : urlHostname;
  // WHATWG URL canonicalises IPv6 (compression, case); compare through the same parser.
  return isIPv6(host) ? bare === new URL(`http://[${host}]/`).hostname.slice(1, -1) : bare === host.replace(/\.$/, '');
}

describe('property: Consul health answers', () => {
  it(`never throws, keeps exactly the intended workers with their intended host:port (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 8 }), fc.boolean(), (specs, includeWarning) => {
        const unique = specs.filter((s, i) => s.id === '' || specs.findIndex((o) => o.id === s.id) === i);
        const policy: ConsulWorkerPolicy = {
          taggedAddress: 'lan',
          scheme: 'http',
          schemeMetaKey: undefined,
          includeWarning,
          metaMatch: undefined,
        };
        const parsed = parseHealthBody(JSON.stringify(unique.map((s) => toEntry(s, 'lan'))), policy);
        assert.equal(parsed.workers.length + parsed.rejected + parsed.filtered, unique.length);
        for (const spec of unique) {
          const want = intended(spec, includeWarning);
          const got = parsed.workers.filter((w) => w.id === spec.id && spec.id !== '');
          if (want.verdict !== 'worker') {
            assert.equal(got.length, 0, `${spec.id} should be ${want.verdict}`);
            continue;
          }
          assert.equal(got.length, 1, `${spec.id} should be a worker`);
          const url = new URL(got[0]!.url);
          assert.ok(sameHost(url.hostname, want.host), `${url.hostname} vs ${want.host}`);
          assert.equal(got[0]!.port, want.port);
          assert.equal(url.port === '' ? 80 : Number(url.port), want.port);
        }
        const set = buildWorkerSet(parsed.workers);
        assert.equal(set.rejected, 0, 'every URL the parser produced is a valid URL');
      }),
      { numRuns: RUNS },
    );
  });

  it('non-array or non-JSON bodies are coded errors, never crashes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        (body) => {
          try {
            parseHealthBody(body, {
              taggedAddress: undefined,
              scheme: 'http',
              schemeMetaKey: undefined,
              includeWarning: false,
              metaMatch: undefined,
            });
          } catch (err) {
            assert.ok(isWorkerResolverError(err, 'ERR_CONSUL_MALFORMED'), String(err));
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('property: snapshot build', () => {
  const candidate = fc
    .record({ n: fc.integer({ min: 1, max: 20 }), id: fc.stringMatching(/^[a-z]{1,3}$/), v6: fc.boolean() })
    .map(({ n, id, v6 }): WorkerCandidate => ({
      url: v6 ? `http://[fd00::${n}]:80` : `http://10.0.0.${n}:80`,
      id,
      node: 'n',
      address: v6 ? `fd00::${n}` : `10.0.0.${n}`,
      port: 80,
      tags: [],
      meta: {},
      status: 'passing',
      weight: 1,
    }));
  it(`sorting and dedupe are stable under any order and duplication (${RUNS} cases)`, () => {
    fc.assert(
      fc.property(fc.array(candidate, { maxLength: 30 }), fc.integer(), (list, seed) => {
        const shuffled = [...list, ...list.slice(0, seed % (list.length + 1))].sort(() => 0).reverse();
        const a = buildWorkerSet(list).workers;
        const b = buildWorkerSet(shuffled).workers;
        assert.deepEqual(
          a.map((w) => [w.url.href, w.id]),
          b.map((w) => [w.url.href, w.id]),
        );
        const hrefs = a.map((w) => w.url.href);
        assert.deepEqual(hrefs, [...new Set(hrefs)].sort(), 'unique and sorted');
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- SRV / A / AAAA answers -------------------------------------------------------------------

interface SrvSpec {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: number;
}
interface DnsCase {
  readonly srvs: readonly SrvSpec[];
  /** Addresses per target index (IPv4 or IPv6). */
  readonly addresses: readonly (readonly string[])[];
}

const dnsCase = fc
  .array(fc.array(fc.oneof(ipv4, ipv6), { maxLength: 3 }), { minLength: 1, maxLength: 5 })
  .chain((addresses) =>
    fc.record({
      addresses: fc.constant(addresses),
      srvs: fc.array(
        fc.record({
          priority: fc.integer({ min: 0, max: 3 }),
          weight: fc.integer({ min: 0, max: 100 }),
          port: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constant(0)),
          target: fc.integer({ min: 0, max: addresses.length - 1 }),
        }),
        { maxLength: 8 },
      ),
    }),
  );

const NAME = '_worker._tcp.prop.test';
/** dns-packet mis-encodes some IPv6 spellings ("::" with an IPv4 tail); send the canonical form (same 16 bytes). */
const wire = (a: string): string => (isIPv6(a) ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a);
const targetName = (i: number): string => `t${i}.prop.test`;

describe('property: SRV answers', () => {
  let socket: Socket;
  let current: DnsCase = { srvs: [], addresses: [] };
  before(async () => {
    socket = createSocket('udp4');
    socket.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const question = q.questions?.[0];
      if (question === undefined) return;
      const answers: dnsPacket.Answer[] = [];
      const additionals: dnsPacket.Answer[] = [
        { type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0 } as dnsPacket.Answer,
      ];
      if (question.type === 'SRV' && question.name === NAME) {
        for (const s of current.srvs) {
          answers.push({
            type: 'SRV',
            name: NAME,
            ttl: 5,
            data: { priority: s.priority, weight: s.weight, port: s.port, target: targetName(s.target) },
          });
        }
        // Odd targets come with their addresses in Additional; even ones need A/AAAA queries.
        current.addresses.forEach((list, i) => {
          if (i % 2 === 1)
            for (const a of list)
              additionals.push({ type: isIPv6(a) ? 'AAAA' : 'A', name: targetName(i), ttl: 5, data: wire(a) });
        });
      } else if (question.type === 'A' || question.type === 'AAAA') {
        const i = Number(/^t(\d+)\./.exec(question.name)?.[1] ?? -1);
        for (const a of current.addresses[i] ?? []) {
          if ((question.type === 'AAAA') === isIPv6(a))
            answers.push({ type: question.type, name: question.name, ttl: 5, data: wire(a) });
        }
      }
      const reply = dnsPacket.encode({
        id: q.id,
        type: 'response',
        flags: dnsPacket.RECURSION_DESIRED,
        questions: q.questions ?? [],
        answers,
        additionals,
      });
      socket.send(reply, rinfo.port, rinfo.address);
    });
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
  });
  after(() => socket.close());

  const runs = RUNS;
  it(`never throws; publishes exactly the lowest-priority targets' addresses with their ports (${runs} cases)`, async () => {
    const server = { host: '127.0.0.1', port: socket.address().port, family: 4 as const };
    const config = {
      name: NAME,
      servers: [server],
      transport: 'udp' as const,
      scheme: 'http',
      timeoutMs: 2000,
      minRefreshMs: 1000,
      maxRefreshMs: 1000,
      backoff: { baseMs: 10, capMs: 10 },
      clock: systemClock,
    };
    await fc.assert(
      fc.asyncProperty(dnsCase, async (c) => {
        current = c;
        const outcome = await resolveSrvWorkers(config);
        assert.ok(outcome.ok, outcome.ok ? '' : outcome.error.message);
        const lowest = Math.min(...c.srvs.map((s) => s.priority));
        const expected = new Set<string>();
        for (const s of c.srvs) {
          if (s.priority !== lowest || s.port === 0) continue;
          for (const a of c.addresses[s.target] ?? [])
            expected.add(`${isIPv6(a) ? `[${new URL(`http://[${a}]/`).hostname.slice(1, -1)}]` : a}:${s.port}`);
        }
        const published = new Set(buildWorkerSet(outcome.workers).workers.map((w) => w.url.host));
        for (const w of outcome.workers) assert.doesNotThrow(() => new URL(w.url));
        assert.deepEqual([...published].sort(), [...expected].map((h) => new URL(`http://${h}/`).host).sort());
      }),
      { numRuns: runs },
    );
  });
});
