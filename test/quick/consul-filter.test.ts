import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileFilter, FilterExpressionError } from '../../src/testing/index.js';
import type { CheckStatus, HealthServiceEntry } from '../../src/testing/index.js';

function entry(opts: {
  id: string;
  tags?: string[];
  meta?: Record<string, string>;
  port?: number;
  node?: string;
  nodeMeta?: Record<string, string>;
  statuses?: CheckStatus[];
}): HealthServiceEntry {
  const node = opts.node ?? 'n1';
  return {
    Node: {
      ID: 'x',
      Node: node,
      Address: '10.0.0.1',
      Datacenter: 'dc1',
      TaggedAddresses: { lan: '10.0.0.1' },
      Meta: opts.nodeMeta ?? {},
      CreateIndex: 1,
      ModifyIndex: 1,
    },
    Service: {
      ID: opts.id,
      Service: 'web',
      Tags: opts.tags ?? [],
      Address: '',
      Meta: opts.meta ?? {},
      Port: opts.port ?? 8080,
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      CreateIndex: 1,
      ModifyIndex: 1,
    },
    Checks: (opts.statuses ?? ['passing']).map((Status, i) => ({
      Node: node,
      CheckID: `c${i}`,
      Name: `check ${i}`,
      Status,
      Notes: '',
      Output: '',
      ServiceID: opts.id,
      ServiceName: 'web',
      ServiceTags: opts.tags ?? [],
      Type: 'ttl',
      Interval: '',
      Timeout: '',
      CreateIndex: 1,
      ModifyIndex: 1,
    })),
  };
}

const entries = [
  entry({
    id: 'a',
    tags: ['gpu', 'ssd'],
    meta: { version: '2', 'team-name': 'x' },
    port: 8080,
    nodeMeta: { zone: 'eu' },
  }),
  entry({ id: 'b', tags: ['gpu'], meta: { version: '1' }, port: 9090, node: 'n2', statuses: ['passing', 'warning'] }),
  entry({ id: 'c', tags: [], meta: {}, port: 8080, node: 'n3', statuses: ['critical'] }),
];
const select = (expr: string): string[] => entries.filter(compileFilter(expr)).map((e) => e.Service.ID);

describe('compileFilter (Consul filter expressions)', () => {
  it('== and != on strings and numbers; quoted, backtick and bare values', () => {
    assert.deepEqual(select('Service.ID == "a"'), ['a']);
    assert.deepEqual(select('Service.ID == `b`'), ['b']);
    assert.deepEqual(select('Node.Node == n3'), ['c'], 'a bare word is a value');
    assert.deepEqual(select('Service.Port == 8080'), ['a', 'c']);
    assert.deepEqual(select('Service.Port != 8080'), ['b']);
    assert.deepEqual(select('Service.EnableTagOverride == false'), ['a', 'b', 'c']);
  });

  it('in, not in, contains and not contains on lists, maps and strings', () => {
    assert.deepEqual(select('"ssd" in Service.Tags'), ['a']);
    assert.deepEqual(select('"ssd" not in Service.Tags'), ['b', 'c']);
    assert.deepEqual(select('Service.Tags contains "gpu"'), ['a', 'b']);
    assert.deepEqual(select('Service.Tags not contains "gpu"'), ['c']);
    assert.deepEqual(select('"version" in Service.Meta'), ['a', 'b'], 'in on a map tests a key');
    assert.deepEqual(select('Node.Node contains "2"'), ['b'], 'contains on a string is a substring test');
  });

  it('Meta selectors, dotted and indexed; a missing key is not equal and is empty', () => {
    assert.deepEqual(select('Service.Meta.version == "2"'), ['a']);
    assert.deepEqual(select('Service.Meta["team-name"] == "x"'), ['a']);
    assert.deepEqual(select('Service.Meta.version != "2"'), ['b', 'c']);
    assert.deepEqual(select('Service.Meta.version is empty'), ['c']);
    assert.deepEqual(select('Service.Meta is not empty'), ['a', 'b']);
    assert.deepEqual(select('Service.Tags is empty'), ['c']);
    assert.deepEqual(select('Node.Meta.zone == eu'), ['a']);
    assert.deepEqual(select('"/Service/Meta/version" == "1"'), ['b'], 'a JSON pointer selector');
  });

  it('Checks.* matches if any check matches (negation applied per check, as go-bexpr does)', () => {
    assert.deepEqual(select('Checks.Status == "warning"'), ['b']);
    assert.deepEqual(select('Checks.Status != "passing"'), ['b', 'c']);
    assert.deepEqual(select('not Checks.Status != "passing"'), ['a'], 'all passing');
    assert.deepEqual(select('Checks.ServiceTags contains "ssd"'), ['a']);
  });

  it('matches / not matches with regular expressions', () => {
    assert.deepEqual(select('Service.Meta.version matches "^[12]$"'), ['a', 'b']);
    assert.deepEqual(select('Node.Node not matches "n[12]"'), ['c']);
  });

  it('and binds tighter than or; not and parentheses', () => {
    assert.deepEqual(select('Service.ID == "a" or Service.ID == "b" and Service.Port == 8080'), ['a']);
    assert.deepEqual(select('(Service.ID == "a" or Service.ID == "b") and Service.Port == 9090'), ['b']);
    assert.deepEqual(select('not (Service.ID == "a" or Service.ID == "b")'), ['c']);
    assert.deepEqual(select('not not Service.ID == "c"'), ['c']);
    assert.deepEqual(select('( Service.Tags contains "gpu" ) and not "ssd" in Service.Tags'), ['b']);
  });

  it('throws a coded FilterExpressionError on syntax errors, unknown selectors and wrong types', () => {
    for (const bad of [
      '',
      'Service.ID ==',
      'Service.ID = "a"',
      '(Service.ID == "a"',
      'Service.ID == "a")',
      'Service.ID == "a" and',
      '"a" in',
      'Service.ID == "unterminated',
      'Service.Meta[version] == "1"',
      'Service.Nope == "x"',
      'Service.Port == "eighty"',
      'Service.Port contains "8"',
      'Service.Weights is empty',
      'Service.ID matches "("',
      'Service.ID is not',
      '1.5x == 1',
    ]) {
      assert.throws(
        () => compileFilter(bad),
        (err: unknown) =>
          err instanceof FilterExpressionError && err.code === 'ERR_FILTER_EXPRESSION' && err.offset >= 0,
        `expected ${JSON.stringify(bad)} to be rejected`,
      );
    }
  });
});
