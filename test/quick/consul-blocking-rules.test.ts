import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { blockingTimeoutMs, nextIndex } from '../../src/consul/source.js';
import { parseRetryAfter } from '../../src/consul/client.js';

describe('blocking-query rules', () => {
  it('resets the index to 0 when it goes backwards', () => {
    assert.equal(nextIndex(100, 42), 0);
  });
  it('uses 1 when the answered index is < 1 (never a busy loop on 0)', () => {
    assert.equal(nextIndex(0, 0), 1);
    assert.equal(nextIndex(1, 0), 1);
  });
  it('follows a growing or unchanged index', () => {
    assert.equal(nextIndex(5, 9), 9);
    assert.equal(nextIndex(9, 9), 9);
  });
  it('sets the client timeout above wait + wait/16', () => {
    assert.equal(blockingTimeoutMs(300_000, 15_000), 300_000 + 18_750 + 15_000);
    assert.ok(blockingTimeoutMs(1600, 0) >= 1700);
  });
  it('parses Retry-After seconds and dates', () => {
    assert.equal(parseRetryAfter('7'), 7000);
    assert.equal(parseRetryAfter(new Date(2_000_000).toUTCString(), 1_000_000), 1_000_000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
});
