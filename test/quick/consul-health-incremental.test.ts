/**
 * The incremental health reader and the incremental worker-set build (large answers, docs/performance.md) against
 * their whole-body / full counterparts: same workers, same counts, same errors, same diffs,
 * on random answer sequences (edits, inserts, removals, reorders, other formatting, non-object
 * elements), and the Consul source's byte-identical-body fast path end to end.
 */
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IncrementalHealthParser } from '../../src/consul/health-incremental.js';
import { parseHealthBody } from '../../src/consul/health.js';
import type { ConsulWorkerPolicy } from '../../src/consul/health.js';
import { isWorkerResolverError } from '../../src/errors.js';
import type { Worker } from '../../src/snapshot.js';
import type { BuiltWorkerSet } from '../../src/worker-cache.js';
import { diffWorkers } from '../../src/worker-diff.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver, RefreshEvent } from '../../src/index.js';
import { waitFor } from '../helpers/wait.js';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 2_000);

const policy: ConsulWorkerPolicy = {
  taggedAddress: undefined,
  scheme: 'http',
  schemeMetaKey: undefined,
  includeWarning: true,
  metaMatch: undefined,
};

const octet = fc.integer({ min: 0, max: 255 });
const address = fc.oneof(
  fc.tuple(octet, octet).map(([a, b]) => `10.0.${a}.${b}`),
  fc.constantFrom('fd00::1', 'worker.example', 'not a host', 'x"y', 'é.example'),
);
const entryArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc
      .record({
        id: fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,6}$/), fc.constant('')),
        address,
        port: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(0, '80', null)),
        status: fc.constantFrom('passing', 'warning', 'critical'),
        tags: fc.array(fc.stringMatching(/^[a-z]{1,4}$/), { maxLength: 2 }),
        note: fc.string({ maxLength: 6 }),
      })
      .map((e) => ({
        Node: { Node: `node-${e.id}`, Address: '10.9.9.9' },
        Service: { ID: e.id, Address: e.address, Port: e.port, Tags: e.tags, Meta: { note: e.note } },
        Checks: [{ CheckID: 'c', Status: e.status, Output: e.note }],
      })),
  },
  // Elements that are not entries: rejected by both readers alike.
  { weight: 1, arbitrary: fc.constantFrom<unknown>(1, 12, 123, 'x', null, true, [], [1, [2]], {}) },
);

type Edit =
  | { op: 'keep' }
  | { op: 'change'; at: number; entry: unknown }
  | { op: 'insert'; at: number; entry: unknown }
  | { op: 'remove'; at: number }
  | { op: 'swap'; at: number }
  | { op: 'reverse' };
const editArb: fc.Arbitrary<Edit> = fc.oneof(
  fc.constant<Edit>({ op: 'keep' }),
  fc.record({ op: fc.constant('change' as const), at: fc.nat(), entry: entryArb }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), entry: entryArb }),
  fc.record({ op: fc.constant('remove' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('swap' as const), at: fc.nat() }),
  fc.constant<Edit>({ op: 'reverse' }),
);

function applyEdits(list: unknown[], edits: readonly Edit[]): unknown[] {
  const next = [...list];
  for (const e of edits) {
    const at = 'at' in e ? e.at % (next.length + 1) : 0;
    if (e.op === 'change' && next.length > 0) next[at % next.length] = e.entry;
    else if (e.op === 'insert') next.splice(at, 0, e.entry);
    else if (e.op === 'remove' && next.length > 0) next.splice(at % next.length, 1);
    else if (e.op === 'swap' && next.length > 1) {
      const i = at % (next.length - 1);
      [next[i], next[i + 1]] = [next[i + 1], next[i]];
    } else if (e.op === 'reverse') next.reverse();
  }
  return next;
}

const formats = [
  (v: unknown[]): string => JSON.stringify(v),
  (v: unknown[]): string => JSON.stringify(v, null, 2),
  (v: unknown[]): string => ` \n${JSON.stringify(v, null, '\t')}\r\n`,
];

const shape = (ws: readonly Worker[]): unknown[] => ws.map((w) => [w.url.href, w.id, w.status, w.tags, w.meta]);

describe('incremental health reading', () => {
  it(`gives exactly the whole-body parser's result over random answer sequences (${RUNS} sequences)`, () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { maxLength: 12 }),
        fc.array(fc.tuple(fc.array(editArb, { maxLength: 4 }), fc.nat(formats.length - 1)), {
          minLength: 1,
          maxLength: 6,
        }),
        (start, steps) => {
          const parser = new IncrementalHealthParser(policy);
          let list = start;
          let built: BuiltWorkerSet | undefined;
          for (const [edits, format] of [[[], 0] as const, ...steps]) {
            list = applyEdits(list, edits);
            const body = Buffer.from((formats[format] as (v: unknown[]) => string)(list));
            const want = parseHealthBody(body, policy);
            const got = parser.parse(body);
            assert.deepEqual(got, want);
            assert.ok(parser.isLastBody(Buffer.from(body)));
            // The build chain on the reader's identity-stable candidates equals a full build,
            // and its diff equals diffWorkers.
            const next = buildWorkerSet(got.workers, built?.cache);
            const full = buildWorkerSet(want.workers);
            assert.deepEqual(shape(next.workers), shape(full.workers));
            assert.equal(next.rejected, full.rejected);
            if (next.changes !== undefined && built !== undefined) {
              assert.equal(next.changes.from, built.workers);
              const d = diffWorkers(built.workers, next.workers);
              assert.deepEqual(
                [next.changes.diff.added, next.changes.diff.removed, next.changes.diff.updated].map(shape),
                [d.added, d.removed, d.updated].map(shape),
              );
            }
            built = next;
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('reuses unchanged entries: one changed entry is one parse, and the others keep their objects', () => {
    const entries = Array.from({ length: 50 }, (_, i) => ({
      Node: { Node: `n${i}`, Address: `10.0.0.${i + 1}` },
      Service: { ID: `w${i}`, Port: 8080 },
      Checks: [{ CheckID: 'c', Status: 'passing' }],
    }));
    const parser = new IncrementalHealthParser(policy);
    const first = parser.parse(Buffer.from(JSON.stringify(entries)));
    assert.deepEqual(parser.lastStats, { elements: 50, parsed: 50, fallback: false });
    entries[7]!.Checks[0]!.Status = 'critical';
    const second = parser.parse(Buffer.from(JSON.stringify(entries)));
    assert.deepEqual(parser.lastStats, { elements: 50, parsed: 1, fallback: false });
    assert.equal(second.workers.length, 49);
    assert.equal(second.workers[0], first.workers[0], 'an unchanged entry is the same candidate object');
    entries.splice(20, 1);
    parser.parse(Buffer.from(JSON.stringify(entries)));
    assert.deepEqual(parser.lastStats, { elements: 49, parsed: 0, fallback: false });
  });

  it('a chunked read gives the same result in several event-loop turns, and an aborted one changes nothing', async () => {
    const entries = Array.from({ length: 300 }, (_, i) => ({
      Node: { Node: `n${i}`, Address: `10.0.${i >> 8}.${i & 255}` },
      Service: { ID: `w${i}`, Port: 8080 },
    }));
    const body = Buffer.from(JSON.stringify(entries));
    const reference = new IncrementalHealthParser(policy).parse(body);
    const parser = new IncrementalHealthParser(policy);
    let turns = 0;
    let reading = true;
    const count = (): void => {
      turns += 1;
      if (reading) setImmediate(count);
    };
    setImmediate(count);
    const got = await parser.parseChunked(body, 0);
    reading = false;
    assert.deepEqual(got, reference);
    assert.ok(turns >= 3, `the read gave the loop back (${turns} turns)`);
    assert.ok(parser.isLastBody(body));

    entries.reverse();
    const other = Buffer.from(JSON.stringify(entries));
    const abort = new AbortController();
    const pending = parser.parseChunked(other, 0, abort.signal);
    abort.abort();
    assert.equal(await pending, undefined);
    assert.ok(parser.isLastBody(body), 'an aborted read leaves the last body as the reference');
  });

  it('a number that grew is not mistaken for the shorter one it starts with', () => {
    const parser = new IncrementalHealthParser(policy);
    parser.parse(Buffer.from('[1,{"a":1}]'));
    const r = parser.parse(Buffer.from('[12,{"a":1}]'));
    assert.deepEqual(r, parseHealthBody('[12,{"a":1}]', policy));
  });

  it('malformed bodies throw ERR_CONSUL_MALFORMED like the whole-body parser and leave the state as it was', () => {
    const good = JSON.stringify([
      { Node: { Node: 'a', Address: '10.0.0.1' }, Service: { ID: 'a', Port: 1 } },
      { Node: { Node: 'b', Address: '10.0.0.2' }, Service: { ID: 'b', Port: 2 } },
    ]);
    const bad = [
      '',
      'null',
      '{}',
      good.slice(0, -1),
      `${good}]`,
      `${good.slice(0, -1)},]`,
      `${good.slice(0, -1)} {"x":1}]`,
      good.replace('},{', '}{'),
      good.replace('},{', '},,{'),
      good.replace('"b"', '"b'),
      `[${good.slice(1, good.indexOf('},{') + 1)}, 01]`,
      `\uFEFF${good}`,
    ];
    const parser = new IncrementalHealthParser(policy);
    const first = parser.parse(Buffer.from(good));
    for (const body of bad) {
      assert.throws(
        () => parser.parse(Buffer.from(body)),
        (err) => isWorkerResolverError(err, 'ERR_CONSUL_MALFORMED'),
        body,
      );
      assert.throws(
        () => parseHealthBody(body, policy),
        (err) => isWorkerResolverError(err, 'ERR_CONSUL_MALFORMED'),
      );
      assert.ok(parser.isLastBody(Buffer.from(good)), 'the last good body is still the reference');
    }
    assert.deepEqual(parser.parse(Buffer.from(good)), first);
  });
});

describe('Consul source: a byte-identical body', () => {
  let consul: ConsulDevServer | undefined;
  let resolver: DiscoveringWorkerResolver | undefined;
  const realParse = JSON.parse;
  afterEach(async () => {
    JSON.parse = realParse;
    await resolver?.close();
    await consul?.stop();
  });

  it('publishes nothing, costs no parse, and the next long poll blocks on its index', async () => {
    consul = await ConsulDevServer.start({ dns: false });
    for (let n = 1; n <= 3; n += 1) {
      consul.registerService({
        Name: 'worker',
        ID: `worker-${n}`,
        Address: `127.0.0.${n}`,
        Port: 9000,
        Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
      });
    }
    const refreshes: RefreshEvent[] = [];
    resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr, waitMs: 60_000 },
      minPublishIntervalMs: 0,
      env: {},
      logger: { debug() {}, info() {}, warn() {}, error() {} },
      observers: [{ onRefresh: (e) => refreshes.push(e) }],
    });
    const first = await resolver.ready({ timeoutMs: 5000 });
    const dev = consul;
    await waitFor(() => dev.openLongPolls() === 1, 'a held long poll');
    let healthParses = 0;
    JSON.parse = ((text: string, reviver?: Parameters<typeof realParse>[1]): unknown => {
      if (typeof text === 'string' && text.includes('"Service"')) healthParses += 1;
      return realParse(text, reviver);
    }) as typeof JSON.parse;
    const before = refreshes.length;
    for (let i = 0; i < 3; i += 1) {
      const seen = refreshes.length;
      dev.bumpIndex('worker');
      await waitFor(() => refreshes.length > seen && dev.openLongPolls() === 1, 'the wake-up and the next poll');
    }
    JSON.parse = realParse;
    const outcomes = refreshes.slice(before).map((e) => e.outcome);
    assert.equal(outcomes.length, 3);
    for (const o of outcomes) assert.ok(o.ok && o.unchanged, 'reported unchanged');
    assert.equal(healthParses, 0, 'the body was compared, not parsed');
    const s = resolver.snapshot();
    assert.equal(s.version, first.version, 'nothing published');
    assert.equal(resolver.getUrls(), first.urls, 'the same URL array');
    const last = outcomes.at(-1)!;
    assert.ok(last.ok);
    assert.equal(s.consulIndex, last.index, 'the index was taken');
    const blocked = dev.requests.filter((q) => q.path.startsWith('/v1/health/service/')).at(-1)!;
    assert.equal(blocked.query['index'], String(last.index), 'the next poll blocks on it (no hot loop)');
  });
});
