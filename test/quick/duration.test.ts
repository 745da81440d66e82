import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, parseDuration } from '../../src/duration.js';

describe('durations', () => {
  it('parses Go-style durations', () => {
    assert.equal(parseDuration('300ms'), 300);
    assert.equal(parseDuration('5s'), 5000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('0'), 0);
    for (const bad of ['', '5', 's', '-5s', '5 s', '5x', '1e3s']) assert.equal(parseDuration(bad), undefined, bad);
  });

  it('formats milliseconds for Consul', () => {
    assert.equal(formatDuration(300_000), '5m');
    assert.equal(formatDuration(5000), '5s');
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(3_600_000), '1h');
  });
});
