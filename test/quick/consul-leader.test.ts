/**
 * The leader state's rules (src/consul/leader.ts): what one check of `GET /v1/status/leader`
 * means, given the state before it. Pure: no agent, no clock.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { nextLeaderState } from '../../src/consul/leader.js';
import { ErrorCode, WorkerResolverError } from '../../src/errors.js';

const started = 1_000_000;

describe('Consul leader state', () => {
  it('a leader address is known, with no last contact', () => {
    const s = nextLeaderState('10.0.0.1:8300', undefined, started, started + 500);
    assert.deepEqual(s, { leader: 'known', checkedAt: started + 500, lastLeaderAt: started + 500, lastContactMs: 0 });
    assert.ok(Object.isFrozen(s));
  });

  it('"" is none, counting from the last check that saw a leader (or from the start)', () => {
    const known = nextLeaderState('10.0.0.1:8300', undefined, started, started + 1000);
    const none = nextLeaderState('', known, started, started + 16_000);
    assert.equal(none.leader, 'none');
    assert.equal(none.lastContactMs, 15_000);
    assert.equal(nextLeaderState('', none, started, started + 31_000).lastContactMs, 30_000);
    assert.equal(
      nextLeaderState('', undefined, started, started + 2000).lastContactMs,
      2000,
      'none seen since the start',
    );
  });

  it('a 5xx from a server is none; a request that reached no server, or a timeout, is unknown', () => {
    const noLeader = new WorkerResolverError(ErrorCode.CONSUL_HTTP, '500', { status: 500 });
    assert.equal(nextLeaderState(noLeader, undefined, started, started).leader, 'none');
    const refused = new WorkerResolverError(ErrorCode.CONSUL_UNREACHABLE, 'refused', { reachedNoServer: true });
    assert.equal(nextLeaderState(refused, undefined, started, started).leader, 'unknown');
    const notJoined = new WorkerResolverError(ErrorCode.CONSUL_HTTP, '500', { status: 500, reachedNoServer: true });
    assert.equal(nextLeaderState(notJoined, undefined, started, started).leader, 'unknown');
    const timeout = new WorkerResolverError(ErrorCode.CONSUL_TIMEOUT, 'timeout');
    assert.equal(nextLeaderState(timeout, undefined, started, started).leader, 'unknown');
  });
});
