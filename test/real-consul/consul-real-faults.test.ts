/**
 * Real faults against a real Consul agent (issue 10 item 3): `kill -9` and a restart on the same
 * data dir, a restart on a fresh data dir (the index goes backwards), SIGSTOP/SIGCONT (a hung
 * agent), and an ACL token revoked mid-watch. For each, the library's resolver must not crash,
 * must not spin (requests bounded by the token bucket), must keep the last good list, must
 * recover by itself, and the metric and the span must show what happened.
 *
 * Requests are counted from the resolver's own histogram (one observation per source request,
 * docs/design.md §7), since a real agent keeps no request log.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Histogram } from 'prom-client';
import { ConsulAgent } from '../helpers/consul-agent.js';
import type { ConsulAgentOptions } from '../helpers/consul-agent.js';
import { observedResolver } from '../helpers/observed-resolver.js';
import type { Observed } from '../helpers/observed-resolver.js';
import { delay, waitFor } from '../helpers/wait.js';
import type { ConsulOptions } from '../../src/index.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

/** Requests a resolver may make in `ms` with the default bucket (burst 10, 2/s), with slack. */
const bound = (ms: number): number => 10 + Math.ceil((2 * ms) / 1000) + 3;

/** Consul requests the resolver made so far (its refresh histogram's count, source="consul"). */
async function consulRequests(observed: Observed): Promise<number> {
  const metric = observed.registry.getSingleMetric('worker_resolver_refresh_duration_seconds') as Histogram | undefined;
  if (metric === undefined) return 0;
  const { values } = await metric.get();
  return values
    .filter((v) => v.metricName === 'worker_resolver_refresh_duration_seconds_count' && v.labels['source'] === 'consul')
    .reduce((sum, v) => sum + v.value, 0);
}

async function addWorker(agent: ConsulAgent, n: number): Promise<void> {
  await agent.registerService({
    Name: 'worker',
    ID: `worker-${n}`,
    Address: `127.0.2.${n}`,
    Port: 9100 + n,
    Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
  });
}

describe('real Consul faults', { timeout: 180_000 }, () => {
  const agents: ConsulAgent[] = [];
  const observers: Observed[] = [];
  before(() => process.on('unhandledRejection', onUnhandled));
  after(async () => {
    await Promise.all(observers.map((o) => o.resolver.close()));
    await Promise.all(agents.map((a) => a.stop()));
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no unhandled rejection in any scenario');
  });

  const start = async (options: ConsulAgentOptions, workers = 5): Promise<ConsulAgent> => {
    const agent = await ConsulAgent.start(options);
    agents.push(agent);
    for (let n = 1; n <= workers; n += 1) await addWorker(agent, n);
    return agent;
  };
  const watch = async (agent: ConsulAgent, consul: ConsulOptions = {}): Promise<Observed> => {
    const observed = observedResolver({
      service: 'worker',
      consul: {
        address: agent.httpAddr,
        waitMs: 1000,
        timeoutMarginMs: 300,
        backoff: { baseMs: 50, capMs: 500 },
        ...consul,
      },
      minPublishIntervalMs: 0,
      env: {},
    });
    observers.push(observed);
    await observed.resolver.ready({ timeoutMs: 20_000 });
    return observed;
  };
  /** Lets the fault run for `ms`, then checks the loop stayed within the token bucket. */
  const assertBounded = async (observed: Observed, before: number, startedAt: number, ms: number): Promise<void> => {
    await delay(ms);
    const elapsed = Date.now() - startedAt;
    const made = (await consulRequests(observed)) - before;
    assert.ok(made <= bound(elapsed), `${made} requests in ${elapsed} ms: the loop must not spin`);
  };

  it('kill -9, then a restart on the same data dir: last good kept, unreachable counted, recovery', async () => {
    const agent = await start({ mode: 'server' });
    const observed = await watch(agent);
    const { resolver } = observed;
    const urls = resolver.getUrls();
    assert.equal(urls.length, 5);
    const indexBefore = resolver.snapshot().consulIndex ?? 0;

    const startedAt = Date.now();
    const requestsBefore = await consulRequests(observed);
    await agent.kill('SIGKILL');
    await waitFor(() => observed.errorSpans('unreachable').length >= 1, 'an unreachable span', 20_000);
    await assertBounded(observed, requestsBefore, startedAt, 1500);
    assert.equal(resolver.getUrls(), urls, 'the last good list is served, unchanged');
    assert.ok(
      (await observed.errors('unreachable')) >= 1,
      'worker_resolver_source_errors_total{error_type="unreachable"}',
    );

    await agent.restart({ dataDir: 'same' });
    assert.ok((await agent.serviceIndex('worker')) >= indexBefore, 'the same data dir keeps the index');
    assert.equal(resolver.getUrls(), urls, 'still the last good list');
    // The restarted agent brings its services back from the data dir, but their TTL checks
    // start critical (no TTL update was persisted): the workers' next heartbeats pass them.
    for (let n = 1; n <= 5; n += 1) await agent.setCheckStatus(`check-${n}`, 'passing');
    await addWorker(agent, 6);
    await waitFor(() => resolver.getUrls().length === 6, 'recovery on the restarted agent', 30_000);
    assert.equal(resolver.snapshot().source, 'consul');
    assert.equal(resolver.snapshot().stale, false);
  });

  it('a restart on a fresh data dir: the index goes backwards; the empty answer is held, then re-registrations are picked up', async () => {
    const agent = await start({ mode: 'server' });
    for (let i = 0; i < 16; i += 1) await agent.setCheckStatus('check-1', i % 2 === 0 ? 'warning' : 'passing');
    const observed = await watch(agent);
    const { resolver } = observed;
    await waitFor(() => resolver.getUrls().length === 5, 'the five workers');
    const urls = resolver.getUrls();
    const highIndex = resolver.snapshot().consulIndex ?? 0;

    await agent.restart({ kill: true, dataDir: 'fresh' });
    // A new cluster knows no worker yet: the mass-failure guard keeps the last good set.
    await waitFor(() => resolver.snapshot().guarded, 'the guard to hold the empty answer', 30_000);
    assert.equal(resolver.getUrls(), urls, 'the last good list is served');
    assert.match(await observed.registry.metrics(), /worker_resolver_guard_active\{service="worker"\} 1/);

    // The workers register again, as their agents' anti-entropy (or their own code) would.
    for (let n = 1; n <= 5; n += 1) await addWorker(agent, n);
    assert.ok((await agent.serviceIndex('worker')) < highIndex, 'the new cluster has a lower index');
    await waitFor(() => !resolver.snapshot().guarded, 'the guard to release', 30_000);
    assert.ok((resolver.snapshot().consulIndex ?? Infinity) < highIndex, 'the lower index was adopted');
    await addWorker(agent, 6);
    await waitFor(() => resolver.getUrls().length === 6, 'blocking resumes on the new index', 30_000);
  });

  it('SIGSTOP (a hung agent), then SIGCONT: timeouts counted, no spin, last good kept, recovery', async () => {
    const agent = await start({});
    const observed = await watch(agent);
    const { resolver } = observed;
    const urls = resolver.getUrls();

    const startedAt = Date.now();
    const requestsBefore = await consulRequests(observed);
    agent.pause();
    try {
      await waitFor(() => observed.errorSpans('timeout').length >= 1, 'a timeout span', 30_000);
      await assertBounded(observed, requestsBefore, startedAt, 1500);
      assert.equal(resolver.getUrls(), urls, 'the last good list is served, unchanged');
      assert.ok((await observed.errors('timeout')) >= 1, 'worker_resolver_source_errors_total{error_type="timeout"}');
    } finally {
      agent.resume();
    }
    await agent.setCheckStatus('check-5', 'critical');
    await waitFor(() => resolver.getUrls().length === 4, 'recovery after SIGCONT', 30_000);
    assert.equal(resolver.snapshot().stale, false);
  });

  it('the ACL token revoked mid-watch: ACL errors, retried slowly, last good kept; a token with that secret again recovers', async () => {
    const agent = await start({ acl: true });
    await agent.createPolicy('worker-read', 'service "worker" { policy = "read" }\nnode_prefix "" { policy = "read" }');
    const token = await agent.createToken(['worker-read']);
    const observed = await watch(agent, { token: token.SecretID, aclRetryMs: 500 });
    const { resolver } = observed;
    const urls = resolver.getUrls();
    assert.equal(urls.length, 5);

    const startedAt = Date.now();
    const requestsBefore = await consulRequests(observed);
    await agent.deleteToken(token.AccessorID);
    await waitFor(() => observed.errorSpans('acl').length >= 1, 'an ACL error span', 30_000);
    await assertBounded(observed, requestsBefore, startedAt, 1500);
    assert.equal(resolver.getUrls(), urls, 'the last good list is served, unchanged');
    assert.ok((await observed.errors('acl')) >= 1, 'worker_resolver_source_errors_total{error_type="acl"}');
    assert.ok(
      observed.logs.some((l) => (l.level === 'warn' || l.level === 'error') && /ACL|403|token/i.test(l.message)),
      'the operator is told about the ACL problem',
    );
    const seen = await observed.everything();
    assert.ok(!seen.includes(token.SecretID), 'the token never shows in metrics, spans or logs');

    await agent.call('PUT', '/v1/acl/token', {
      body: { SecretID: token.SecretID, Description: 'restored', Policies: [{ Name: 'worker-read' }] },
    });
    await agent.setCheckStatus('check-5', 'critical');
    await waitFor(() => resolver.getUrls().length === 4, 'recovery with the restored token', 30_000);
  });
});
