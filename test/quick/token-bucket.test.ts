import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../../src/token-bucket.js';
import { sleep } from '../../src/clock.js';
import { ManualClock } from '../helpers/manual-clock.js';

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
