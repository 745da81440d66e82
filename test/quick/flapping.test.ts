/**
 * Flapping (issue #5): a worker set that changes 100 times per second for 10 s. Publishes
 * stay bounded by the damping interval, and the final published state equals the final
 * state of the source.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConsulDevServer } from '../../src/testing/index.js';
import { createWorkerResolver } from '../../src/index.js';
import { delay, waitFor } from '../helpers/wait.js';

describe('flapping', () => {
  it('100 changes/s for 10 s: publishes bounded by minPublishIntervalMs, final state published', async () => {
    const consul = await ConsulDevServer.start({ dns: false });
    for (let n = 1; n <= 10; n += 1) {
      consul.registerService({
        Name: 'worker',
        ID: `w${n}`,
        Address: `127.0.3.${n}`,
        Port: 9000,
        Check: { CheckID: `c${n}`, TTL: '1h', Status: 'passing' },
      });
    }
    const intervalMs = 500;
    let publishes = 0;
    const resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr, rateLimit: { ratePerSecond: 50, burst: 50 } },
      minPublishIntervalMs: intervalMs,
      massFailureGuard: false,
      env: {},
    });
    resolver.subscribe(() => (publishes += 1));
    try {
      await resolver.ready({ timeoutMs: 5000 });
      publishes = 0;
      const startedAt = Date.now();
      let changes = 0;
      let seed = 7;
      while (Date.now() - startedAt < 10_000) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const n = 1 + (seed % 10);
        consul.setCheckStatus(`c${n}`, seed % 3 === 0 ? 'critical' : 'passing');
        changes += 1;
        await delay(10);
      }
      const elapsed = Date.now() - startedAt;
      // Settle on a known final state: workers 1..4 critical, the rest passing.
      for (let n = 1; n <= 10; n += 1) consul.setCheckStatus(`c${n}`, n <= 4 ? 'critical' : 'passing');
      const expected = Array.from({ length: 6 }, (_, i) => `127.0.3.${i + 5}:9000`).sort();
      await waitFor(
        () => JSON.stringify(resolver.getUrls().map((u) => u.host)) === JSON.stringify(expected),
        'the final state',
      );
      await delay(intervalMs * 2);
      assert.deepEqual(
        resolver.getUrls().map((u) => u.host),
        expected,
        'the final state stays published',
      );
      assert.ok(changes >= 500, `the test made ${changes} changes`);
      const allowed = Math.ceil((elapsed + 3 * intervalMs) / intervalMs) + 1;
      assert.ok(publishes <= allowed, `${publishes} publishes for ${changes} changes; at most ${allowed} allowed`);
      assert.ok(publishes >= 2, 'flapping was seen at all');
    } finally {
      await resolver.close();
      await consul.stop();
    }
  });
});
