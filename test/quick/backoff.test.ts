import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../src/backoff.js';

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
