/**
 * A production-shaped Consul (docs/design.md §4.1): 3 servers and 2 client agents on their own
 * loopback addresses (test/helpers/consul-cluster.ts), one cluster for the whole file, the
 * scenarios in sequence. The resolver reads client agent 1, as a sidecar reads its host's agent;
 * the workers are registered with TTL checks on client agent 2.
 *
 * - streaming: a blocking read through a client agent is answered by the streaming backend with
 *   leader headers that say nothing; the resolver still reports the leader as known.
 * - address views: for every address form, the Consul source and the DNS source name an
 *   instance with the same URL.
 * - client agent restart (same and fresh data dir): the resolver reads the agent again within a
 *   second of its answering, and never waits longer than 500 ms after a refused connection.
 * - leader kill: never empty, changes flow after the election.
 * - quorum loss: "no leader / last contact N s" in the metrics, the sidecar's body and a log line
 *   within 60 s; the last good set still served, /readyz 200; cleared within 60 s of a leader.
 *
 * Measured bounds are printed as test diagnostics (`# cluster: …` lines of the spec reporter).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { ConsulCluster } from '../helpers/consul-cluster.js';
import type { ConsulAgent } from '../helpers/consul-agent.js';
import { observedResolver } from '../helpers/observed-resolver.js';
import type { Observed } from '../helpers/observed-resolver.js';
import { delay, waitFor } from '../helpers/wait.js';
import { createWorkerResolver, startSidecar } from '../../src/index.js';
import type { DiscoveringWorkerResolver, ResolverObserver, Sidecar, SourceOutcome } from '../../src/index.js';
import { silentLogger } from '../helpers/dev-workers.js';

const SERVICE = 'worker';
const measured: string[] = [];
function record(line: string): void {
  measured.push(line);
}

async function addWorker(agent: ConsulAgent, n: number): Promise<void> {
  await agent.registerService({
    Name: SERVICE,
    ID: `worker-${n}`,
    Address: `10.1.0.${n}`,
    Port: 9100 + n,
    Check: { CheckID: `check-${n}`, TTL: '30m', Status: 'passing' },
  });
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }),
        );
      })
      .on('error', reject);
  });
}

/** The value of a series of the resolver's registry, or undefined when absent. */
async function gauge(observed: Observed, name: string): Promise<number | undefined> {
  const text = await observed.registry.metrics();
  const m = new RegExp(`^${name}\\{service="${SERVICE}"\\} (\\S+)$`, 'm').exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

describe('a production-shaped Consul: 3 servers, 2 client agents', { timeout: 900_000 }, () => {
  let cluster: ConsulCluster;
  let local: ConsulAgent; // the agent the resolver reads (client agent 1)
  let remote: ConsulAgent; // where the workers register (client agent 2)
  let observed: Observed;
  let sidecar: Sidecar;
  const fileStarted = Date.now();
  /** Every worker count the resolver published, to prove it never published an empty set. */
  const published: number[] = [];
  /** Wall-clock times of the resolver's successful and failed Consul requests, in order. */
  const consulOutcomes: { at: number; outcome: SourceOutcome }[] = [];
  /** Every leader state the resolver learned (wall-clock time, state). */
  const leaderStates: { at: number; leader: string }[] = [];

  before(async () => {
    const t0 = Date.now();
    cluster = await ConsulCluster.start();
    record(`start-up of 3 servers + 2 clients: ${Date.now() - t0} ms`);
    [local, remote] = cluster.clients;
    for (const n of [1, 2, 3]) await addWorker(remote, n);
    const recorder: ResolverObserver = {
      onRefresh: ({ outcome }) => {
        if (outcome.source === 'consul') consulOutcomes.push({ at: Date.now(), outcome });
      },
      onConsulLeader: ({ state }) => {
        leaderStates.push({ at: Date.now(), leader: state.leader });
      },
    };
    observed = observedResolver({
      service: SERVICE,
      env: {},
      consul: { address: local.httpAddr, leaderCheckMs: 1000 },
      minPublishIntervalMs: 0,
      massFailureGuard: false,
      observers: [recorder],
    });
    observed.resolver.subscribe((s) => published.push(s.workers.length));
    await observed.resolver.ready({ timeoutMs: 60_000 });
    await waitFor(() => observed.resolver.snapshot().workers.length === 3, 'the three workers', 60_000);
    sidecar = await startSidecar({ resolver: observed.resolver, registry: observed.registry, port: 0 });
  });

  after(async () => {
    await sidecar?.close();
    await observed?.resolver.close();
    await cluster?.stop();
    record(`the whole file: ${Date.now() - fileStarted} ms`);
    // The measured bounds, on stdout (the test runner shows them with the file's results).
    console.log(measured.map((l) => `# cluster: ${l}`).join('\n'));
    assert.ok(
      published.every((n) => n > 0),
      `never an empty set: ${published.join(',')}`,
    );
  });

  it('streaming: a blocking read says KnownLeader false on a healthy cluster; the resolver says known, and so do the metrics', async () => {
    const index = Number((await local.call('GET', `/v1/health/service/${SERVICE}`)).headers['x-consul-index']);
    const plain = await local.call('GET', `/v1/health/service/${SERVICE}`, { query: { stale: '' } });
    assert.equal(plain.headers['x-consul-query-backend'], 'blocking-query');
    assert.equal(plain.headers['x-consul-knownleader'], 'true');
    const blocking = await local.call('GET', `/v1/health/service/${SERVICE}`, {
      query: { stale: '', index, wait: '1s' },
    });
    assert.equal(blocking.headers['x-consul-query-backend'], 'streaming');
    assert.equal(blocking.headers['x-consul-knownleader'], 'false', 'the streaming backend’s default');
    assert.equal(blocking.headers['x-consul-lastcontact'], '0');

    // The resolver's own long polls are streaming answers too: a change makes it take one.
    await addWorker(remote, 4);
    await waitFor(() => observed.resolver.snapshot().workers.length === 4, 'the fourth worker', 60_000);
    await delay(2500); // a few leader checks and long polls: the steady state
    assert.equal(await gauge(observed, 'worker_resolver_consul_known_leader'), 1);
    assert.equal(await gauge(observed, 'worker_resolver_consul_last_contact_seconds'), 0);
    assert.equal(observed.resolver.consulLeader()?.leader, 'known');
    const body = await getJson(`${sidecar.url}/v1/workers`);
    assert.deepEqual((body.body['consulLeader'] as { leader: string }).leader, 'known');
    assert.ok(!observed.logs.some((l) => /no leader/i.test(l.message)), 'no "no leader" line on a healthy cluster');
  });

  it('address views: for every address form, the Consul source and the DNS source give the same URL', async () => {
    const forms: Record<string, unknown>[] = [
      { ID: 'plain', Address: '10.20.0.1', Port: 7001 }, // the agent adds lan_ipv4 = wan_ipv4 = Address
      {
        ID: 'lan-ipv4',
        Address: '10.20.0.3',
        Port: 7003,
        TaggedAddresses: { lan_ipv4: { Address: '10.30.0.3', Port: 7003 } },
      },
      {
        ID: 'dual-stack',
        Address: '10.20.0.7',
        Port: 7007,
        TaggedAddresses: { lan_ipv6: { Address: 'fd00::7', Port: 7007 } },
      },
      {
        ID: 'all-three',
        Address: '10.20.0.9',
        Port: 7009,
        TaggedAddresses: {
          lan_ipv4: { Address: '10.30.0.9', Port: 7009 },
          lan_ipv6: { Address: 'fd00::9', Port: 7009 },
        },
      },
      { ID: 'v6-only', Address: 'fd00::11', Port: 7011 },
      { ID: 'node-address', Port: 7013 }, // no Service.Address: the node's (127.0.19.12)
      {
        ID: 'tagged-port',
        Address: '10.20.0.15',
        Port: 7015,
        TaggedAddresses: { lan_ipv4: { Address: '10.30.0.15', Port: 8015 } },
      },
    ];
    for (const form of forms) {
      await remote.registerService({
        Name: 'views',
        ...form,
        Check: { CheckID: `views-${String(form['ID'])}`, TTL: '30m', Status: 'passing' },
      });
    }
    const viaConsul = createWorkerResolver({
      service: 'views',
      env: {},
      logger: silentLogger,
      consul: { address: local.httpAddr },
      minPublishIntervalMs: 0,
    });
    const viaDns = createWorkerResolver({
      service: 'views',
      env: {},
      logger: silentLogger,
      dns: { name: 'views.service.consul', servers: [local.dnsAddr] },
      minPublishIntervalMs: 0,
    });
    try {
      await Promise.all([viaConsul.ready({ timeoutMs: 30_000 }), viaDns.ready({ timeoutMs: 30_000 })]);
      const urls = (r: DiscoveringWorkerResolver): string[] => r.snapshot().urls.map((u) => u.href);
      await waitFor(() => urls(viaConsul).length === forms.length, 'every form from Consul', 30_000);
      await waitFor(() => urls(viaDns).length === forms.length, 'every form from DNS', 30_000);
      assert.deepEqual(urls(viaConsul), urls(viaDns));
      // The forms where Service.Address is not what DNS answers: the translated address wins.
      for (const url of [
        'http://10.30.0.3:7003/',
        'http://[fd00::7]:7007/',
        'http://[fd00::9]:7009/',
        'http://10.30.0.15:7015/',
      ]) {
        assert.ok(urls(viaConsul).includes(url), `${url} in ${urls(viaConsul).join(' ')}`);
      }
    } finally {
      await Promise.all([viaConsul.close(), viaDns.close()]);
    }
  });

  for (const dataDir of ['same', 'fresh'] as const) {
    it(`client agent restart (${dataDir} data dir): read again within a second of answering; refused waits <= 500 ms`, async () => {
      // 3 runs per data-dir mode keep the file short; WORKER_RESOLVER_RESTART_RUNS=20 is the
      // measurement written down in docs/reference.md.
      const runs = Number(process.env['WORKER_RESOLVER_RESTART_RUNS'] ?? 3);
      const catchUps: number[] = [];
      for (let run = 0; run < runs; run++) {
        await local.kill('SIGKILL');
        const killedAt = Date.now();
        await delay(3000);
        // Poll the agent as the resolver does (a stale health read): the first 200 is "answers again".
        let answeredAt: number | undefined;
        let polling = true;
        const poller = (async () => {
          while (polling && answeredAt === undefined) {
            try {
              const r = await local.request('GET', `/v1/health/service/${SERVICE}`, {
                query: { stale: '' },
                timeoutMs: 2000,
              });
              if (r.status === 200) answeredAt = Date.now();
            } catch {
              // refused: not yet
            }
            await delay(50);
          }
        })();
        if (dataDir === 'fresh') await local.restart({ dataDir: 'fresh' });
        else await local.restart({ dataDir: 'same' });
        await waitFor(() => answeredAt !== undefined, 'the agent to answer a health read', 60_000);
        polling = false;
        await poller;
        // The resolver may read the agent before the poller sees it answer (then its next request is
        // a long poll): the first success after the kill is the one that counts.
        await waitFor(
          () => consulOutcomes.some((o) => o.at >= killedAt && o.outcome.ok),
          'the resolver to read the agent again',
          60_000,
        );
        const firstOk = consulOutcomes.find((o) => o.outcome.ok && o.at >= killedAt)?.at ?? Date.now();
        catchUps.push(Math.max(0, firstOk - (answeredAt ?? firstOk)));
        // Every failure while the agent was down waited at most 500 ms before the next try.
        const during = consulOutcomes.filter((o) => o.at >= killedAt && o.at <= firstOk && !o.outcome.ok);
        assert.ok(during.length > 0, 'failed requests while the agent was down');
        for (const { outcome } of during) {
          if (!outcome.ok && outcome.error.code === 'ERR_CONSUL_UNREACHABLE') {
            assert.ok(outcome.retryInMs <= 500, `a refused connection waits <= 500 ms, not ${outcome.retryInMs}`);
          }
        }
        assert.ok(observed.resolver.snapshot().workers.length > 0, 'never empty');
      }
      record(
        `client restart, ${dataDir} data dir: resolver read the agent ${catchUps.join(' / ')} ms after it answered (${runs} runs)`,
      );
      // Generous (a loaded 2-core machine): the rule is ≤ 500 ms of wait plus one request.
      for (const ms of catchUps) assert.ok(ms <= 3000, `caught up ${ms} ms after the agent answered`);
    });
  }

  it('leader kill: never empty, a new leader is elected, and changes flow after the election', async () => {
    const leader = await cluster.leader();
    assert.ok(leader !== undefined, 'a leader before the kill');
    await leader.kill('SIGKILL');
    const killedAt = Date.now();
    let elected: ConsulAgent | undefined;
    while (elected === undefined && Date.now() - killedAt < 60_000) {
      const now = await cluster.leader();
      if (now !== undefined && now !== leader) elected = now;
      else await delay(100);
    }
    assert.ok(elected !== undefined, 'a new leader within 60 s');
    record(`leader kill → new leader seen through a client agent: ${Date.now() - killedAt} ms`);
    const during = leaderStates.filter((s) => s.at >= killedAt).map((s) => s.leader);
    record(`leader kill: the resolver's leader checks during the election said ${[...new Set(during)].join(', ')}`);
    const before = observed.resolver.snapshot().workers.length;
    await addWorker(remote, 5);
    await waitFor(
      () => observed.resolver.snapshot().workers.length === before + 1,
      'the change after the election',
      60_000,
    );
    record(`leader kill → a change published by the resolver: ${Date.now() - killedAt} ms`);
    await leader.restart({ dataDir: 'same' });
  });

  it('quorum loss: no leader / last contact N s within 60 s in metrics, body and log; last good set, /readyz 200; cleared within 60 s', async () => {
    await waitFor(() => observed.resolver.consulLeader()?.leader === 'known', 'a leader before the loss', 60_000);
    const leader = (await cluster.leader()) ?? cluster.servers[0];
    const other = cluster.servers.find((s) => s !== leader) ?? cluster.servers[1];
    const kept = observed.resolver.snapshot().urls;
    await Promise.all([leader.kill('SIGKILL'), other.kill('SIGKILL')]);
    const lostAt = Date.now();
    await waitFor(
      () => leaderStates.some((s) => s.at >= lostAt && s.leader === 'none'),
      'the resolver to see no leader',
      60_000,
    );
    record(`quorum loss → resolver reports no leader: ${Date.now() - lostAt} ms (leader checks every 1 s)`);
    await waitFor(() => (observed.resolver.consulLeader()?.lastContactMs ?? 0) >= 2000, 'last contact to grow', 30_000);
    assert.equal(await gauge(observed, 'worker_resolver_consul_known_leader'), 0);
    assert.ok(((await gauge(observed, 'worker_resolver_consul_last_contact_seconds')) ?? 0) >= 2);
    const workers = await getJson(`${sidecar.url}/v1/workers`);
    assert.equal(workers.status, 200);
    const said = workers.body['consulLeader'] as { leader: string; lastContactSeconds: number };
    assert.equal(said.leader, 'none');
    assert.ok(said.lastContactSeconds >= 1, JSON.stringify(said));
    assert.ok((workers.body['workers'] as unknown[]).length > 0, 'the last good set is still served');
    assert.equal((await getJson(`${sidecar.url}/readyz`)).status, 200);
    assert.ok(
      observed.logs.some((l) => l.level === 'warn' && /no leader \/ last contact \d+s/.test(l.message)),
      'a "no leader / last contact N s" log line',
    );
    assert.equal(observed.resolver.snapshot().urls, kept, 'the same set, not republished');

    const restarting = Date.now();
    await Promise.all([leader.restart({ dataDir: 'same' }), other.restart({ dataDir: 'same' })]);
    const backAt = Date.now();
    await waitFor(() => leaderStates.some((s) => s.at >= backAt && s.leader === 'known'), 'the leader back', 60_000);
    record(
      `quorum back: servers restarted and elected in ${backAt - restarting} ms; then the resolver reported a leader after ${Date.now() - backAt} ms`,
    );
    assert.equal(await gauge(observed, 'worker_resolver_consul_known_leader'), 1);
    assert.ok(observed.logs.some((l) => /has a leader again/.test(l.message)));
  });
});
