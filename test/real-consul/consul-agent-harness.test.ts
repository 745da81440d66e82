/**
 * The real-Consul test harness itself: an agent that cannot bind its port fails with the agent's
 * own words, which the harness (and the Rust one, `tests/support/mod.rs`) reads as a port clash to
 * retry on fresh ports. A port held for the whole test clashes on every attempt, so the start
 * gives up after its bounded attempts instead of hanging until its timeout.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ConsulAgent } from '../helpers/consul-agent.js';

describe('real Consul harness', { timeout: 120_000 }, () => {
  it('reports an agent that cannot bind its HTTP port as a port clash, and gives up', async () => {
    const held = net.createServer();
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    const { port } = held.address() as net.AddressInfo;
    try {
      const started = Date.now();
      await assert.rejects(
        ConsulAgent.start({ hcl: [`ports { http = ${port} }`], startTimeoutMs: 60_000 }),
        (err: Error) => {
          assert.match(err.message, /^port clash on all 3 attempts; the last: consul agent exited during start-up/);
          assert.match(err.message, /address already in use/);
          return true;
        },
      );
      assert.ok(Date.now() - started < 60_000, 'gave up on the clash, not on the readiness timeout');
    } finally {
      await new Promise<void>((resolve) => held.close(() => resolve()));
    }
  });
});
