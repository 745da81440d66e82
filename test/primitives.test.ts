import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../src/backoff.js';
import { TokenBucket } from '../src/token-bucket.js';
import { formatDuration, parseDuration } from '../src/duration.js';
import { blockingTimeoutMs, nextIndex } from '../src/consul/source.js';
import { parseRetryAfter } from '../src/consul/client.js';
import { sleep } from '../src/clock.js';
import { ManualClock } from './helpers/manual-clock.js';

describe('Backoff (full jitter)', () => {
  it('grows the ceiling exponentially up to the cap, and resets', () => {
    const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
    const delays = Array.from({ length: 6 }, () => b.next());
    assert.deepEqual(delays, [99, 199, 399, 799, 999, 999]);
    b.reset();
    assert.equal(b.next(), 99);
  });

  it('draws uniformly in [0, ceiling]', () => {
    const b = new Backoff({ baseMs: 1000, capMs: 1000, random: () => 0 });
    assert.equal(b.next(), 0);
    const real = new Backoff({ baseMs: 1000, capMs: 1000 });
    const draws = Array.from({ length: 200 }, () => real.next());
    assert.ok(draws.every((d) => d >= 0 && d <= 1000));
    assert.ok(new Set(draws).size > 50, 'jitter spreads the delays');
  });

  it('never overflows after many failures', () => {
    const b = new Backoff({ baseMs: 250, capMs: 30_000, random: () => 0.5 });
    for (let i = 0; i < 5000; i += 1) b.next();
    assert.equal(b.next(), 15_000);
  });
});

describe('TokenBucket', () => {
  it('allows a burst, then paces at the sustained rate', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ ratePerSecond: 2, burst: 3, clock });
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0]);
    assert.equal(bucket.take(), 500);
    clock.advance(500);
    assert.equal(bucket.take(), 500, 'the reserved token was used; the next one is 500 ms away');
    clock.advance(10_000);
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0], 'refills only up to burst');
    assert.ok(bucket.take() > 0);
  });

  it('bounds the requests of a loop that never waits', async () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket({ ratePerSecond: 5, burst: 2, clock });
    let requests = 0;
    const end = clock.monotonic() + 10_000;
    while (clock.monotonic() < end) {
      const pace = bucket.take();
      if (pace > 0) {
        const slept = sleep(clock, pace);
        clock.advance(pace);
        await slept;
      }
      requests += 1;
    }
    assert.ok(requests <= 2 + 5 * 10 + 1, `${requests} requests in 10 s`);
  });
});

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
