/**
 * The fault matrix (issue #5): for each fault, against real loopback sockets, assert that
 * nothing crashes or rejects unhandled, the request count stays bounded (no spin),
 * `getUrls()` keeps the last good list, the error shows in the metric and in a span, and the
 * resolver recovers by itself when the fault ends.
 */
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { ConsulDevServer } from '../../src/testing/index.js';
import type { ConsulOptions, ErrorType } from '../../src/index.js';
import { observedResolver } from '../helpers/observed-resolver.js';
import { freePorts } from '../helpers/ports.js';
import type { Observed } from '../helpers/observed-resolver.js';
import { delay, waitFor } from '../helpers/wait.js';

const HEALTH = '/v1/health/service/';
const TOKEN = 'b7e1c2d4-matrix-s3cret-0f9a';
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

function addWorker(consul: ConsulDevServer, n: number): void {
  consul.registerService({
    Name: 'worker',
    ID: `worker-${n}`,
    Address: `127.0.2.${n}`,
    Port: 9100 + n,
    Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
  });
}

/** Requests a resolver may make in `ms` with the default bucket (burst 10, 2/s), with slack. */
const bound = (ms: number): number => 10 + Math.ceil((2 * ms) / 1000) + 3;

interface Scenario {
  readonly name: string;
  readonly errorType: ErrorType;
  readonly inject: (consul: ConsulDevServer) => void;
  readonly consul?: ConsulOptions;
}

const FOREVER = 1_000_000;
const scenarios: Scenario[] = [
  {
    name: '429 with Retry-After',
    errorType: 'rate_limited',
    inject: (c) => c.failNext(FOREVER, { status: 429, headers: { 'Retry-After': '1' }, path: HEALTH }),
  },
  {
    name: '429 without Retry-After',
    errorType: 'rate_limited',
    inject: (c) => c.failNext(FOREVER, { status: 429, path: HEALTH }),
  },
  {
    name: '403 ACL',
    errorType: 'acl',
    inject: (c) => c.failNext(FOREVER, { status: 403, body: 'Permission denied', path: HEALTH }),
    consul: { aclRetryMs: 300 },
  },
  {
    name: '500 no leader',
    errorType: 'http',
    inject: (c) => c.failNext(FOREVER, { status: 500, body: 'No cluster leader', path: HEALTH }),
  },
  {
    name: 'malformed JSON',
    errorType: 'malformed',
    inject: (c) => c.failNext(FOREVER, { status: 200, body: '[{"Node": {', path: HEALTH }),
  },
  { name: 'truncated body', errorType: 'malformed', inject: (c) => c.truncateNext(FOREVER, { path: HEALTH }) },
  {
    name: 'body over the size limit',
    errorType: 'too_large',
    inject: (c) => c.failNext(FOREVER, { status: 200, body: `[${'"padding",'.repeat(20_000)}"x"]`, path: HEALTH }),
    consul: { maxResponseBytes: 64 * 1024 },
  },
  { name: 'hang past the client timeout', errorType: 'timeout', inject: (c) => c.hangNext(FOREVER, { path: HEALTH }) },
  { name: 'connection reset', errorType: 'unreachable', inject: (c) => c.dropNext(FOREVER, { path: HEALTH }) },
  { name: 'proxy closing idle connections', errorType: 'unreachable', inject: (c) => c.setIdleTimeout(150) },
];

describe('fault matrix: Consul HTTP faults', () => {
  let consul: ConsulDevServer;
  let observed: Observed | undefined;
  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => {
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no unhandled rejection in any scenario');
  });
  afterEach(async () => {
    await observed?.resolver.close();
    await consul.stop();
  });

  for (const scenario of scenarios) {
    it(scenario.name, async () => {
      consul = await ConsulDevServer.start({ dns: false, aclToken: TOKEN });
      for (let n = 1; n <= 5; n += 1) addWorker(consul, n);
      observed = observedResolver({
        service: 'worker',
        consul: {
          address: consul.httpAddr,
          token: TOKEN,
          waitMs: 400,
          timeoutMarginMs: 200,
          backoff: { baseMs: 20, capMs: 200 },
          ...scenario.consul,
        },
        minPublishIntervalMs: 0,
        env: {},
      });
      const { resolver } = observed;
      await resolver.ready({ timeoutMs: 5000 });
      const urls = resolver.getUrls();

      const startedAt = Date.now();
      const requestsBefore = consul.requestCount(HEALTH);
      scenario.inject(consul);
      consul.bumpIndex('worker');
      await waitFor(
        () => observed!.exporter.getFinishedSpans().some((s) => s.attributes['error.type'] === scenario.errorType),
        `a ${scenario.errorType} span`,
      );
      await delay(1200);

      const elapsed = Date.now() - startedAt;
      const made = consul.requestCount(HEALTH) - requestsBefore;
      assert.ok(made <= bound(elapsed), `${made} requests in ${elapsed} ms: the loop must not spin`);
      assert.equal(resolver.getUrls(), urls, 'the last good list is served, unchanged');
      assert.ok(
        (await observed.errors(scenario.errorType)) >= 1,
        `worker_resolver_source_errors_total{error_type="${scenario.errorType}"}`,
      );
      assert.ok(observed.errorSpans(scenario.errorType).length >= 1, 'an ERROR span with error.type');
      assert.ok(
        observed.logs.some((l) => l.level === 'warn' || l.level === 'error'),
        'the operator is told',
      );

      consul.clearFaults();
      addWorker(consul, 6);
      await waitFor(() => resolver.getUrls().length === 6, 'recovery after the fault ends', 15_000);
      const seen = await observed.everything();
      assert.ok(seen.length > 1000, 'there is something to search');
      assert.ok(
        !seen.includes(TOKEN) && !seen.includes(TOKEN.slice(4, 16)),
        'the token never shows in metrics, spans or logs',
      );
      assert.ok(
        consul.requests.every((q) => q.hadToken),
        'the token was sent on every request (header only)',
      );
    });
  }
});

describe('fault matrix: Consul process faults', () => {
  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => process.off('unhandledRejection', onUnhandled));

  it('Consul down at start: retries with backoff, then serves once Consul comes up', async () => {
    // Consul comes up on this port later: one no outgoing connection can take meanwhile.
    const [port] = (await freePorts(1)) as [number];
    const observed = observedResolver({
      service: 'worker',
      consul: { address: `127.0.0.1:${port}`, backoff: { baseMs: 20, capMs: 200 } },
      env: {},
    });
    try {
      await waitFor(() => observed.errorSpans('unreachable').length >= 3, 'three failed attempts');
      assert.equal(observed.resolver.snapshot().version, 0);
      assert.deepEqual(observed.resolver.getUrls(), []);
      const consul = await ConsulDevServer.start({ dns: false, port });
      try {
        addWorker(consul, 1);
        const s = await observed.resolver.ready({ timeoutMs: 10_000 });
        assert.equal(s.urls.length, 1);
        assert.ok((await observed.errors('unreachable')) >= 3);
      } finally {
        await observed.resolver.close();
        await consul.stop();
      }
    } finally {
      await observed.resolver.close();
    }
  });

  it('Consul dies mid long-poll and restarts with a lower index: last good kept, then index reset', async () => {
    // Restarted on this port below: one no outgoing connection can take while it is down.
    const [port] = (await freePorts(1)) as [number];
    const first = await ConsulDevServer.start({ dns: false, port });
    for (let n = 1; n <= 5; n += 1) addWorker(first, n);
    for (let i = 0; i < 50; i += 1) first.bumpIndex('worker');
    const observed = observedResolver({
      service: 'worker',
      consul: { address: first.httpAddr, waitMs: 60_000, backoff: { baseMs: 20, capMs: 200 } },
      minPublishIntervalMs: 0,
      env: {},
    });
    const { resolver } = observed;
    await resolver.ready({ timeoutMs: 5000 });
    const highIndex = resolver.snapshot().consulIndex!;
    await waitFor(() => first.openLongPolls() === 1, 'a held long poll');
    await first.stop();
    await waitFor(() => observed.errorSpans('unreachable').length >= 1, 'the dead connection to be reported');
    assert.equal(resolver.getUrls().length, 5);

    const second = await ConsulDevServer.start({ dns: false, port });
    try {
      for (let n = 1; n <= 6; n += 1) addWorker(second, n);
      assert.ok(second.index < highIndex, 'the restarted Consul has a lower index');
      await waitFor(() => resolver.getUrls().length === 6, 'recovery on the restarted Consul');
      assert.ok(resolver.snapshot().consulIndex! < highIndex);
      second.deregisterService('worker-6');
      await waitFor(() => resolver.getUrls().length === 5, 'blocking resumes on the new index');
    } finally {
      await resolver.close();
      await second.stop();
    }
  });

  it('an empty 200 for a large set is held by the mass-failure guard, flagged, and recovers', async () => {
    const consul = await ConsulDevServer.start({ dns: false });
    for (let n = 1; n <= 5; n += 1) addWorker(consul, n);
    const observed = observedResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      minPublishIntervalMs: 0,
      env: {},
    });
    const { resolver } = observed;
    try {
      await resolver.ready({ timeoutMs: 5000 });
      for (let n = 1; n <= 5; n += 1) consul.deregisterService(`worker-${n}`);
      await waitFor(() => resolver.snapshot().guarded, 'the guard');
      assert.equal(resolver.getUrls().length, 5);
      assert.match(await observed.registry.metrics(), /worker_resolver_guard_active\{service="worker"\} 1/);
      for (let n = 1; n <= 4; n += 1) addWorker(consul, n);
      await waitFor(() => !resolver.snapshot().guarded && resolver.getUrls().length === 4, 'the guard to release');
    } finally {
      await resolver.close();
      await consul.stop();
    }
  });
});

describe('fault matrix: DNS faults', () => {
  let consul: ConsulDevServer;
  before(async () => {
    consul = await ConsulDevServer.start();
    for (let n = 1; n <= 10; n += 1) addWorker(consul, n);
  });
  after(() => consul.stop());

  const dnsResolver = (transport: 'auto' | 'udp' = 'auto'): Observed =>
    observedResolver({
      service: 'worker',
      dns: {
        name: '_worker._tcp.service.consul',
        servers: [consul.dnsAddr!],
        transport,
        timeoutMs: 200,
        minRefreshMs: 50,
        maxRefreshMs: 100,
        backoff: { baseMs: 20, capMs: 200 },
      },
      minPublishIntervalMs: 0,
      env: {},
    });

  for (const [name, errorType, inject] of [
    ['SERVFAIL', 'servfail', () => consul.dnsServer!.failNext(FOREVER, 'SERVFAIL')],
    ['REFUSED', 'refused', () => consul.dnsServer!.failNext(FOREVER, 'REFUSED')],
    ['timeout', 'timeout', () => consul.dnsServer!.dropNext(FOREVER)],
  ] as const) {
    it(`${name}: keeps the last good set, bounded retries, reported, recovers`, async () => {
      const observed = dnsResolver();
      const { resolver } = observed;
      try {
        await resolver.ready({ timeoutMs: 5000 });
        assert.equal(resolver.getUrls().length, 10);
        const queriesBefore = consul.dnsServer!.queries.length;
        const startedAt = Date.now();
        inject();
        await waitFor(() => observed.errorSpans(errorType).length >= 1, `a ${errorType} span`);
        await delay(1000);
        const elapsed = Date.now() - startedAt;
        const made = consul.dnsServer!.queries.length - queriesBefore;
        // Backoff capped at 200 ms, 2 queries per attempt at most (UDP then TCP): far below a spin.
        assert.ok(made <= 2 * (elapsed / 20 + 5), `${made} DNS queries in ${elapsed} ms`);
        assert.equal(resolver.getUrls().length, 10);
        assert.ok((await observed.errors(errorType)) >= 1);
        consul.dnsServer!.clearFaults();
        consul.setCheckStatus('check-10', 'critical');
        await waitFor(() => resolver.getUrls().length === 9, 'recovery after the fault ends');
        consul.setCheckStatus('check-10', 'passing');
      } finally {
        await resolver.close();
      }
    });
  }

  it('NXDOMAIN is an answer (no workers), held by the guard for a large set', async () => {
    const observed = dnsResolver();
    const { resolver } = observed;
    try {
      await resolver.ready({ timeoutMs: 5000 });
      for (let n = 1; n <= 10; n += 1) consul.setCheckStatus(`check-${n}`, 'critical');
      await waitFor(() => resolver.snapshot().guarded, 'the guard to hold on NXDOMAIN');
      assert.equal(resolver.getUrls().length, 10);
      assert.equal(await observed.errors('servfail'), 0, 'NXDOMAIN is not an error');
      for (let n = 1; n <= 10; n += 1) consul.setCheckStatus(`check-${n}`, 'passing');
      await waitFor(() => !resolver.snapshot().guarded, 'release');
    } finally {
      await resolver.close();
    }
  });

  it('truncated UDP: plain UDP sees 3 of 10 only where EDNS is ignored; auto (EDNS + TCP) sees all 10', async () => {
    const observed = dnsResolver('auto');
    try {
      const s = await observed.resolver.ready({ timeoutMs: 5000 });
      assert.equal(s.urls.length, 10);
      assert.ok(
        consul.dnsServer!.queries.some((q) => q.edns),
        'queries carry EDNS0',
      );
    } finally {
      await observed.resolver.close();
    }
  });

  it('an EDNS answer trimmed to the payload size without TC (100 workers): auto re-asks over TCP and gets all', async () => {
    const big = await ConsulDevServer.start();
    try {
      for (let n = 1; n <= 100; n += 1) {
        big.registerService({
          Name: 'big',
          ID: `big-${n}`,
          Address: `127.0.4.${n}`,
          Port: 9000,
          Check: { CheckID: `big-${n}`, TTL: '1h', Status: 'passing' },
        });
      }
      const observed = observedResolver({
        service: 'big',
        dns: { name: '_big._tcp.service.consul', servers: [big.dnsAddr!] },
        env: {},
      });
      try {
        const s = await observed.resolver.ready({ timeoutMs: 5000 });
        assert.equal(s.urls.length, 100);
        const transports = big.dnsServer!.queries.map((q) => q.transport);
        assert.deepEqual(transports.slice(0, 2), ['udp', 'tcp'], 'a full UDP answer is confirmed over TCP');
      } finally {
        await observed.resolver.close();
      }
    } finally {
      await big.stop();
    }
  });
});
