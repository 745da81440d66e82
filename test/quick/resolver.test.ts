import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { ConsulDevServer } from '../../src/testing/index.js';
import {
  createWorkerResolver,
  ErrorCode,
  InvalidOptionError,
  isWorkerResolverError,
  StaticWorkerResolver,
} from '../../src/index.js';
import type { FailoverEvent, WorkerSnapshot } from '../../src/index.js';
import { waitFor } from '../helpers/wait.js';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry, register as globalRegistry } from 'prom-client';
import { freeTcpPort as closedPort } from '../helpers/ports.js';
import { registerWorkers, silentLogger } from '../helpers/dev-workers.js';

describe('createWorkerResolver', () => {
  let consul: ConsulDevServer;
  before(async () => {
    consul = await ConsulDevServer.start();
    registerWorkers(consul, 10);
  });
  after(() => consul.stop());

  it('getUrls() is empty and frozen before the first snapshot, and never throws', async () => {
    const r = createWorkerResolver({
      service: 'worker',
      consul: { address: `127.0.0.1:${await closedPort()}` },
      env: {},
    });
    assert.deepEqual(r.getUrls(), []);
    assert.ok(Object.isFrozen(r.getUrls()));
    assert.equal(r.snapshot().version, 0);
    await r.close();
    assert.deepEqual(r.getUrls(), []);
  });

  it('ready() rejects with ERR_READY_TIMEOUT when no source answers in time', async () => {
    const r = createWorkerResolver({
      service: 'worker',
      consul: { address: `127.0.0.1:${await closedPort()}`, backoff: { baseMs: 10, capMs: 50 } },
      env: {},
      logger: silentLogger,
    });
    await assert.rejects(r.ready({ timeoutMs: 200 }), (err) => isWorkerResolverError(err, ErrorCode.READY_TIMEOUT));
    await r.close();
  });

  it('ready() rejects with ERR_RESOLVER_CLOSED when closed first, and on an aborted signal', async () => {
    const r = createWorkerResolver({
      service: 'worker',
      consul: { address: `127.0.0.1:${await closedPort()}` },
      env: {},
      logger: silentLogger,
    });
    const pending = r.ready();
    const controller = new AbortController();
    const aborted = r.ready({ signal: controller.signal });
    controller.abort(new Error('caller gave up'));
    await assert.rejects(aborted, /caller gave up/);
    await r.close();
    await assert.rejects(pending, (err) => isWorkerResolverError(err, ErrorCode.RESOLVER_CLOSED));
    await assert.rejects(r.ready(), (err) => isWorkerResolverError(err, ErrorCode.RESOLVER_CLOSED));
  });

  it('getUrls() returns the same frozen array until the next publish, and subscribe() sees each publish', async () => {
    const r = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      minPublishIntervalMs: 0,
      env: {},
    });
    const seen: WorkerSnapshot[] = [];
    const unsubscribe = r.subscribe((s) => seen.push(s));
    const first = await r.ready({ timeoutMs: 5000 });
    assert.equal(first.urls.length, 10);
    assert.equal(r.getUrls(), r.getUrls());
    assert.equal(r.getUrls(), first.urls);
    assert.throws(() => (r.getUrls() as URL[]).push(new URL('http://x')), TypeError);
    consul.registerService({
      Name: 'worker',
      ID: 'worker-11',
      Address: '127.0.1.11',
      Port: 9011,
      Check: { CheckID: 'check-11', TTL: '1h', Status: 'passing' },
    });
    await waitFor(() => r.getUrls().length === 11, 'the 11th worker');
    assert.notEqual(r.getUrls(), first.urls);
    assert.deepEqual(
      seen.map((s) => s.version),
      [1, 2],
    );
    unsubscribe();
    consul.deregisterService('worker-11');
    await waitFor(() => r.getUrls().length === 10, 'the 11th worker to leave');
    assert.equal(seen.length, 2, 'no call after unsubscribe');
    await r.close();
  });

  it('fails over to DNS SRV (all 10 workers despite UDP truncation) and fails back when Consul returns', async () => {
    const failovers: FailoverEvent[] = [];
    const r = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr, waitMs: 500, timeoutMarginMs: 500, backoff: { baseMs: 10, capMs: 50 } },
      dns: { name: '_worker._tcp.service.consul', servers: [consul.dnsAddr!], minRefreshMs: 50, maxRefreshMs: 200 },
      failoverAfter: 2,
      minPublishIntervalMs: 0,
      env: {},
      logger: silentLogger,
      observers: [{ onFailover: (e) => failovers.push(e) }],
    });
    await r.ready({ timeoutMs: 5000 });
    assert.equal(r.snapshot().source, 'consul');
    const consulUrls = r.getUrls().map((u) => u.href);

    consul.failNext(1_000_000, { status: 500, body: 'No cluster leader', path: '/v1/health/service/' });
    consul.bumpIndex('worker');
    await waitFor(() => r.snapshot().source === 'dns', 'the failover to DNS');
    assert.deepEqual(
      failovers.map((f) => [f.from, f.to]),
      [['consul', 'dns']],
    );
    assert.equal(r.getUrls().length, 10, 'TCP/EDNS gets every SRV record, not the 3 of a plain UDP answer');
    assert.deepEqual(
      r.getUrls().map((u) => u.href),
      consulUrls,
      'DNS finds the same workers',
    );

    consul.clearFaults();
    await waitFor(() => r.snapshot().source === 'consul', 'the failback to Consul');
    assert.deepEqual(
      failovers.map((f) => [f.from, f.to]),
      [
        ['consul', 'dns'],
        ['dns', 'consul'],
      ],
    );
    assert.equal(r.getUrls().length, 10);
    await r.close();
  });

  it('serves from DNS alone when no Consul is configured', async () => {
    const r = createWorkerResolver({
      service: 'worker',
      dns: { name: 'worker.service.consul', servers: [consul.dnsAddr!] },
      env: {},
    });
    const s = await r.ready({ timeoutMs: 5000 });
    assert.equal(s.source, 'dns');
    assert.equal(s.urls.length, 10);
    await r.close();
  });

  it('close() with a long poll in flight leaves nothing behind: the process exits by itself', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/fixtures/close-exits.ts', consul.httpAddr, consul.dnsAddr!],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    clearTimeout(timer);
    assert.equal(signal, null, 'the child had to be killed: something kept it alive after close()');
    assert.equal(code, 0);
    assert.match(out, /closed/);
    await waitFor(() => consul.openLongPolls() === 0, 'the server to see the long poll go');
  });

  it('wires metrics, spans and the instrumented planner from registry / tracerProvider options', async () => {
    const registry = new Registry();
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const r = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      registry,
      tracerProvider,
      maxTasksPerStage: 4,
      env: {},
    });
    const s = await r.ready({ timeoutMs: 5000 });
    const plan = r.planner.planStage(s, { stageId: 'scan', desiredTasks: 16 });
    assert.equal(plan.plannedTasks, 4);
    assert.equal(r.planner.routeTasks(s, { queryId: 'q1', stageId: 'scan', taskCount: 4 }).length, 4);
    const text = await registry.metrics();
    assert.match(text, /worker_resolver_workers\{service="worker",source="consul"\} 10/);
    assert.match(text, /worker_resolver_stage_task_cap\{service="worker"\} 4/);
    assert.match(text, /worker_resolver_stages_capped_total\{service="worker"\} 1/);
    assert.equal((await globalRegistry.metrics()).trim(), '', 'nothing registered globally');
    const names = exporter.getFinishedSpans().map((span) => span.name);
    for (const name of ['worker_resolver.refresh', 'worker_resolver.plan_stage', 'worker_resolver.route_stage']) {
      assert.ok(names.includes(name), `missing span ${name} in ${names.join(', ')}`);
    }
    await r.close();
  });

  it('rejects bad options synchronously with a TypeError naming the option, starting nothing', () => {
    const cases: [unknown, string][] = [
      [{ service: '' }, 'service'],
      [{ service: 'a b', consul: {} }, 'service'],
      [{ service: 'w' }, 'consul'],
      [{ service: 'w', consul: { waitMs: -1 } }, 'consul.waitMs'],
      [{ service: 'w', consul: {}, failoverAfter: 0 }, 'failoverAfter'],
      [{ service: 'w', consul: {}, minPublishIntervalMs: 'fast' }, 'minPublishIntervalMs'],
      [{ service: 'w', dns: { name: '' } }, 'dns.name'],
      [{ service: 'w', dns: { name: '_w._tcp.x', servers: ['example.com:53'] } }, 'dns.servers[0]'],
      [{ service: 'w', dns: { name: '_w._tcp.x', transport: 'quic' } }, 'dns.transport'],
      [{ service: 'w', static: ['nope'] }, 'static[0]'],
      [{ service: 'w', consul: {}, massFailureGuard: { threshold: -1 } }, 'massFailureGuard.threshold'],
      [{ service: 'w', consul: {}, maxTasksPerStage: 1.5 }, 'maxTasksPerStage'],
    ];
    const before = consul.requestCount();
    for (const [options, option] of cases) {
      assert.throws(
        () => createWorkerResolver(options as Parameters<typeof createWorkerResolver>[0]),
        (err) => err instanceof InvalidOptionError && err instanceof TypeError && err.option === option,
        option,
      );
    }
    assert.equal(consul.requestCount(), before);
  });
});

describe('StaticWorkerResolver', () => {
  it('serves a fixed, sorted, frozen list', () => {
    const r = new StaticWorkerResolver(['http://10.0.0.2:80', new URL('http://10.0.0.1:80'), 'http://10.0.0.2:80']);
    assert.deepEqual(
      r.getUrls().map((u) => u.href),
      ['http://10.0.0.1/', 'http://10.0.0.2/'],
    );
    assert.equal(r.getUrls(), r.getUrls());
    assert.equal(r.snapshot().version, 1);
    assert.equal(r.snapshot().source, 'static');
  });

  it('rejects invalid URLs with a TypeError', () => {
    assert.throws(() => new StaticWorkerResolver(['10.0.0.1:80 x']), { name: 'InvalidOptionError', option: 'urls[0]' });
  });
});
