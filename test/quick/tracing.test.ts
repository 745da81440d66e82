import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import type { EngineConfig } from '../../src/engine.js';
import { ErrorCode, InvalidOptionError, WorkerResolverError } from '../../src/errors.js';
import type { RefreshEvent } from '../../src/events.js';
import { Planner } from '../../src/planner-instrumented.js';
import { createResolverMetrics } from '../../src/metrics.js';
import { planStage, routeTasks } from '../../src/planner.js';
import { createResolverTracing } from '../../src/tracing.js';
import type { ResolverTracing } from '../../src/tracing.js';
import { EMPTY_SNAPSHOT, makeSnapshot } from '../../src/snapshot.js';
import { buildWorkerSet } from '../../src/worker-set.js';
import { workers } from '../helpers/fake-source.js';
import { createWorkerResolver } from '../../src/resolver.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { freeUdpPort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { startEngine } from '../helpers/engine-harness.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(options: { maxWorkerEvents?: number } = {}) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracing = createResolverTracing({ tracerProvider: provider, service: 'svc', ...options });
  const spans = (name?: string): ReadableSpan[] =>
    exporter.getFinishedSpans().filter((s) => name === undefined || s.name === name);
  return { exporter, provider, tracing, spans };
}

function engineWith(tracing: ResolverTracing, overrides: Partial<EngineConfig> = {}) {
  return startEngine({
    failoverAfterFailures: 2,
    guard: { threshold: 0.5, minWorkers: 3, holdMs: 10_000 },
    observers: [tracing],
    ...overrides,
  });
}

const ms = (hr: readonly [number, number]): number => hr[0] * 1000 + hr[1] / 1e6;
const durationMs = (span: ReadableSpan): number => ms(span.duration);

function refreshEvent(outcome: Record<string, unknown>): RefreshEvent {
  return {
    service: 'svc',
    rejected: 0,
    active: true,
    outcome: {
      ok: true,
      source: 'consul',
      workers: [],
      rejected: 0,
      unchanged: false,
      durationMs: 0,
      blocking: false,
      ...outcome,
    },
  };
}

describe('tracing: refresh spans', () => {
  it('one span per processed answer, with counts, index and worker events from the publish', async () => {
    const { tracing, spans } = setup();
    const { engine, consul } = engineWith(tracing);
    consul.answer(workers(3), { index: 42 });
    await tick();
    consul.answer(workers(2, 2), { index: 43 });
    await tick();
    consul.answer(workers(2, 2), { index: 44, unchanged: true });
    await tick();
    const refreshes = spans('worker_resolver.refresh');
    assert.equal(refreshes.length, 3);
    const [first, second, third] = refreshes as [ReadableSpan, ReadableSpan, ReadableSpan];
    assert.deepEqual(
      { ...first.attributes },
      {
        'worker_resolver.service': 'svc',
        'worker_resolver.source': 'consul',
        'worker_resolver.outcome': 'success',
        'worker_resolver.blocking': false,
        'worker_resolver.active': true,
        'worker_resolver.request.duration_ms': 1,
        'worker_resolver.consul.index': 42,
        'worker_resolver.workers.count': 3,
        'worker_resolver.workers.rejected': 0,
        'worker_resolver.workers.added': 3,
        'worker_resolver.workers.removed': 0,
        'worker_resolver.workers.updated': 0,
        'worker_resolver.snapshot.version': 1,
      },
    );
    assert.deepEqual(
      first.events.map((e) => [e.name, e.attributes?.['worker_resolver.worker.url']]),
      [
        ['worker.added', 'http://10.0.0.1:8080/'],
        ['worker.added', 'http://10.0.0.2:8080/'],
        ['worker.added', 'http://10.0.0.3:8080/'],
      ],
    );
    assert.equal(second.attributes['worker_resolver.workers.added'], 0);
    assert.equal(second.attributes['worker_resolver.workers.removed'], 1);
    assert.deepEqual(
      second.events.map((e) => [e.name, e.attributes?.['worker_resolver.worker.id']]),
      [['worker.removed', 'w1']],
    );
    assert.equal(third.attributes['worker_resolver.outcome'], 'unchanged');
    assert.equal(third.attributes['worker_resolver.workers.added'], 0);
    assert.equal(third.attributes['worker_resolver.workers.count'], undefined);
    for (const s of refreshes) assert.equal(s.status.code, SpanStatusCode.UNSET);
    await engine.close();
  });

  it('a non-blocking span starts when the request did; a long poll does not span its wait', async () => {
    const { tracing, spans } = setup();
    tracing.onRefresh?.(refreshEvent({ durationMs: 250, blocking: false }));
    tracing.onRefresh?.(refreshEvent({ durationMs: 300_000, blocking: true, unchanged: true, index: 9 }));
    await tick();
    const [fast, poll] = spans('worker_resolver.refresh') as [ReadableSpan, ReadableSpan];
    assert.ok(durationMs(fast) >= 245, `non-blocking span covers the request (${durationMs(fast)} ms)`);
    assert.ok(durationMs(poll) < 1000, `blocking span does not cover the 5 min wait (${durationMs(poll)} ms)`);
    assert.equal(poll.attributes['worker_resolver.blocking'], true);
    assert.equal(poll.attributes['worker_resolver.request.duration_ms'], 300_000);
  });

  it('a failed request: status ERROR, error.type, code and HTTP status', async () => {
    const { tracing, spans } = setup();
    const error = new WorkerResolverError(ErrorCode.CONSUL_ACL, '403 from Consul', { status: 403 });
    tracing.onRefresh?.({
      service: 'svc',
      rejected: 0,
      active: true,
      outcome: { ok: false, source: 'consul', error, durationMs: 4, blocking: true, retryInMs: 30_000 },
    });
    await tick();
    const [span] = spans('worker_resolver.refresh') as [ReadableSpan];
    assert.equal(span.status.code, SpanStatusCode.ERROR);
    assert.equal(span.status.message, '403 from Consul');
    assert.equal(span.attributes['error.type'], 'acl');
    assert.equal(span.attributes['worker_resolver.error.code'], 'ERR_CONSUL_ACL');
    assert.equal(span.attributes['http.response.status_code'], 403);
    assert.equal(span.attributes['worker_resolver.outcome'], 'error');
  });

  it('caps worker events per span and counts the rest', async () => {
    const { tracing, spans } = setup({ maxWorkerEvents: 5 });
    const { engine, consul } = engineWith(tracing);
    consul.answer(workers(8), { index: 1 });
    await tick();
    const [span] = spans('worker_resolver.refresh') as [ReadableSpan];
    assert.equal(span.events.length, 5);
    assert.equal(span.attributes['worker_resolver.worker_events.dropped'], 3);
    assert.equal(span.attributes['worker_resolver.workers.added'], 8);
    await engine.close();
  });

  it('a damped publish gets its own publish span', async () => {
    const { tracing, spans } = setup();
    const { engine, clock, consul } = engineWith(tracing, { minPublishIntervalMs: 1000 });
    consul.answer(workers(2), { index: 1 });
    consul.answer(workers(3), { index: 2 });
    await tick();
    assert.equal(spans('worker_resolver.publish').length, 0);
    clock.advance(1000);
    const [publish] = spans('worker_resolver.publish') as [ReadableSpan];
    assert.equal(publish.attributes['worker_resolver.snapshot.version'], 2);
    assert.equal(publish.attributes['worker_resolver.workers.added'], 1);
    assert.equal(publish.attributes['worker_resolver.consul.index'], 2);
    assert.equal(publish.events.length, 1);
    await engine.close();
  });
});

describe('tracing: failover, staleness, guard', () => {
  it('failover and failback spans with from, to and reason, under the refresh that caused them', async () => {
    const { tracing, spans } = setup();
    const { engine, clock, consul, dns } = engineWith(tracing);
    consul.answer(workers(3), { index: 1 });
    await tick();
    consul.fail();
    consul.fail();
    await tick();
    dns.answer(workers(3));
    await tick();
    consul.answer(workers(3), { index: 2 });
    await tick();
    const failovers = spans('worker_resolver.failover');
    assert.deepEqual(
      failovers.map((s) => [
        s.attributes['worker_resolver.failover.from'],
        s.attributes['worker_resolver.failover.to'],
        s.attributes['worker_resolver.failover.reason'],
      ]),
      [
        ['consul', 'dns', 'consul-failures'],
        ['dns', 'consul', 'consul-recovered'],
      ],
    );
    const refreshIds = new Set(spans('worker_resolver.refresh').map((s) => s.spanContext().spanId));
    for (const f of failovers) assert.ok(refreshIds.has(f.parentSpanContext?.spanId ?? ''), 'nested under a refresh');

    clock.advance(61_000);
    const [stale] = spans('worker_resolver.stale_change') as [ReadableSpan];
    assert.equal(stale.attributes['worker_resolver.stale'], true);
    assert.equal(stale.parentSpanContext, undefined, 'a timer-driven change is a root span');

    consul.answer(workers(1), { index: 3 });
    await tick();
    const [guard] = spans('worker_resolver.guard_change') as [ReadableSpan];
    assert.deepEqual(
      [guard.attributes['worker_resolver.guard.active'], guard.attributes['worker_resolver.guard.reported']],
      [true, 1],
    );
    await engine.close();
  });

  it('rejects bad options', () => {
    assert.throws(
      () => createResolverTracing({ tracerProvider: {} as BasicTracerProvider, service: 's' }),
      InvalidOptionError,
    );
    const tracerProvider = new BasicTracerProvider();
    assert.throws(() => createResolverTracing({ tracerProvider, service: '' }), InvalidOptionError);
    assert.throws(
      () => createResolverTracing({ tracerProvider, service: 's', maxWorkerEvents: -1 }),
      InvalidOptionError,
    );
  });
});

describe('instrumented planner', () => {
  const snapshot = makeSnapshot({
    version: 4,
    source: 'consul',
    workers: buildWorkerSet(workers(3)).workers,
    updatedAt: 1,
    lastContactAt: 1,
    stale: false,
    guarded: false,
    consulIndex: 7,
  });

  it('plans like the pure helper and records a span and metrics per stage', async () => {
    const { tracing, spans } = setup();
    const registry = new Registry();
    const metrics = createResolverMetrics({ registry, service: 'svc' });
    const planner = new Planner({ service: 'svc', metrics, tracing });
    assert.equal(planner.taskCap(snapshot), 3);
    const plan = planner.planStage(snapshot, { stageId: 's1', desiredTasks: 10 });
    assert.deepEqual(plan, planStage(snapshot, { stageId: 's1', desiredTasks: 10 }));
    const [span] = spans('worker_resolver.plan_stage') as [ReadableSpan];
    assert.deepEqual(
      { ...span.attributes },
      {
        'worker_resolver.service': 'svc',
        'worker_resolver.source': 'consul',
        'worker_resolver.snapshot.version': 4,
        'worker_resolver.workers.count': 3,
        'worker_resolver.stage.id': 's1',
        'worker_resolver.stage.desired_tasks': 10,
        'worker_resolver.stage.task_cap': 3,
        'worker_resolver.stage.planned_tasks': 3,
        'worker_resolver.stage.capped': true,
      },
    );
    const text = await registry.metrics();
    assert.match(text, /^worker_resolver_stages_capped_total\{service="svc"\} 1$/m);
    assert.match(text, /^worker_resolver_stage_planned_tasks_count\{service="svc"\} 1$/m);
  });

  it('routes like the pure helper in a span with strategy, task count and distinct workers', () => {
    const { tracing, spans } = setup();
    const planner = new Planner({ service: 'svc', strategy: 'seeded', tracing });
    const urls = planner.routeTasks(snapshot, { queryId: 'q1', stageId: 2, taskCount: 5 });
    assert.deepEqual(urls, routeTasks(snapshot, { queryId: 'q1', stageId: 2, taskCount: 5, strategy: 'seeded' }));
    const [span] = spans('worker_resolver.route_stage') as [ReadableSpan];
    assert.equal(span.attributes['worker_resolver.route.strategy'], 'seeded');
    assert.equal(span.attributes['worker_resolver.route.task_count'], 5);
    assert.equal(span.attributes['worker_resolver.route.distinct_workers'], 3);
    assert.equal(span.attributes['worker_resolver.query.id'], 'q1');
    assert.equal(span.attributes['worker_resolver.stage.id'], '2');
  });

  it('records failures on the span and rethrows them', () => {
    const { tracing, spans } = setup();
    const planner = new Planner({ service: 'svc', tracing });
    assert.throws(
      () => planner.routeTasks(EMPTY_SNAPSHOT, { queryId: 'q', stageId: 1, taskCount: 2 }),
      (err: unknown) => err instanceof WorkerResolverError && err.code === ErrorCode.NO_WORKERS,
    );
    assert.throws(() => planner.planStage(snapshot, { stageId: 1, desiredTasks: 0 }), InvalidOptionError);
    const [route] = spans('worker_resolver.route_stage') as [ReadableSpan];
    assert.equal(route.status.code, SpanStatusCode.ERROR);
    assert.equal(route.attributes['worker_resolver.error.code'], 'ERR_NO_WORKERS');
    const [plan] = spans('worker_resolver.plan_stage') as [ReadableSpan];
    assert.equal(plan.status.code, SpanStatusCode.ERROR);
    assert.equal(plan.attributes['error.type'], 'other');
    assert.equal(plan.attributes['worker_resolver.error.code'], 'ERR_INVALID_OPTION');
  });

  it('refuses metrics or tracing made for another service, or another cap', () => {
    const registry = new Registry();
    const metrics = createResolverMetrics({ registry, service: 'svc', maxTasksPerStage: 4 });
    assert.equal(new Planner({ service: 'svc', metrics }).maxTasksPerStage, 4);
    assert.throws(() => new Planner({ service: 'other', metrics }), InvalidOptionError);
    assert.throws(() => new Planner({ service: 'svc', metrics, maxTasksPerStage: 2 }), InvalidOptionError);
    assert.throws(() => new Planner({ service: 'other', tracing: setup().tracing }), InvalidOptionError);
    assert.throws(() => new Planner({ service: 'svc', strategy: 'random' as unknown as 'seeded' }), InvalidOptionError);
  });
});

describe('tracing: Consul client spans', () => {
  it('each Consul request is a CLIENT span with the HTTP semantic conventions', async () => {
    const exporter = new InMemorySpanExporter();
    const dev = await ConsulDevServer.start({ dns: false });
    dev.registerService({ Name: 'worker', ID: 'w1', Address: '127.0.0.1', Port: 9001 });
    const resolver = createWorkerResolver({
      service: 'worker',
      env: {},
      consul: { address: dev.httpAddr, waitMs: 2000, backoff: { baseMs: 1, capMs: 5 } },
      minPublishIntervalMs: 0,
      massFailureGuard: false,
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
    });
    try {
      await resolver.ready({ timeoutMs: 5000 });
      const port = Number(new URL(dev.httpAddr).port);
      const clients = (): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT);
      await waitFor(() => clients().length >= 1, 'the first client span');
      const [first] = clients();
      assert.ok(first);
      assert.equal(first.name, 'GET');
      assert.equal(first.attributes['http.request.method'], 'GET');
      assert.equal(first.attributes['server.address'], '127.0.0.1');
      assert.equal(first.attributes['server.port'], port);
      assert.equal(first.attributes['url.full'], `${dev.httpAddr.replace(/\/$/, '')}/v1/health/service/worker`);
      assert.equal(first.attributes['http.response.status_code'], 200);
      const refreshes = exporter.getFinishedSpans().filter((s) => s.name === 'worker_resolver.refresh');
      assert.equal(first.parentSpanContext?.spanId, refreshes[0]?.spanContext().spanId, 'child of its refresh span');

      // A long poll answered by a change: its client span is a root covering the wait, linked from the refresh.
      dev.registerService({ Name: 'worker', ID: 'w2', Address: '127.0.0.2', Port: 9002 });
      await waitFor(() => resolver.getUrls().length === 2, 'the second worker');
      await waitFor(() => clients().some((s) => s.attributes['worker_resolver.blocking'] === true), 'a long-poll span');
      const poll = clients().find((s) => s.attributes['worker_resolver.blocking'] === true)!;
      assert.equal(poll.parentSpanContext, undefined);
      const linked = exporter
        .getFinishedSpans()
        .find(
          (s) =>
            s.name === 'worker_resolver.refresh' && s.links.some((l) => l.context.spanId === poll.spanContext().spanId),
        );
      assert.ok(linked, 'the refresh span links to the long poll');

      // A failed request: status ERROR, its HTTP status, error.type.
      dev.failNext(1, { status: 500, path: '/v1/health/service/' });
      dev.registerService({ Name: 'worker', ID: 'w3', Address: '127.0.0.3', Port: 9003 });
      await waitFor(
        () => clients().some((s) => s.attributes['http.response.status_code'] === 500),
        'a failed request span',
      );
      const failed = clients().find((s) => s.attributes['http.response.status_code'] === 500)!;
      assert.equal(failed.status.code, SpanStatusCode.ERROR);
      assert.equal(failed.attributes['error.type'], 'http');
    } finally {
      await resolver.close();
      await dev.stop();
    }
  });
});

describe('tracing: DNS client spans', () => {
  it('each DNS exchange is a CLIENT span under its refresh; a server that does not answer is an ERROR span', async () => {
    const exporter = new InMemorySpanExporter();
    const dev = await ConsulDevServer.start();
    dev.registerService({ Name: 'worker', ID: 'w1', Address: '127.0.0.1', Port: 9001 });
    // Nothing listens there: the first server fails at once (ICMP port unreachable on loopback), the second answers.
    const silent = await freeUdpPort();
    const devDns = new URL(`dns://${dev.dnsAddr ?? ''}`);
    const resolver = createWorkerResolver({
      service: 'worker',
      env: {},
      dns: {
        name: '_worker._tcp.service.consul',
        servers: [`127.0.0.1:${silent}`, `${devDns.hostname}:${devDns.port}`],
        transport: 'udp',
        timeoutMs: 1000,
      },
      minPublishIntervalMs: 0,
      massFailureGuard: false,
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
    });
    try {
      await resolver.ready({ timeoutMs: 5000 });
      assert.deepEqual(
        resolver.getUrls().map((u) => u.host),
        ['127.0.0.1:9001'],
      );
      const dns = (): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === 'DNS SRV');
      await waitFor(() => dns().length >= 2, 'the first lookup’s client spans');
      const [failed, answered] = dns();
      assert.ok(failed && answered);
      for (const span of [failed, answered]) {
        assert.equal(span.kind, SpanKind.CLIENT);
        assert.equal(span.attributes['dns.question.name'], '_worker._tcp.service.consul');
        assert.equal(span.attributes['worker_resolver.dns.question.type'], 'SRV');
        assert.equal(span.attributes['network.transport'], 'udp');
        assert.equal(span.attributes['server.address'], '127.0.0.1');
      }
      assert.equal(failed.attributes['server.port'], silent);
      assert.equal(failed.status.code, SpanStatusCode.ERROR);
      assert.equal(failed.attributes['error.type'], 'unreachable');
      assert.equal(failed.attributes['worker_resolver.error.code'], ErrorCode.DNS_UNREACHABLE);
      assert.equal(failed.attributes['worker_resolver.dns.rcode'], undefined);
      assert.equal(answered.attributes['server.port'], Number(devDns.port));
      assert.equal(answered.attributes['worker_resolver.dns.rcode'], 'NOERROR');
      assert.notEqual(answered.status.code, SpanStatusCode.ERROR);
      // Both under the refresh span of that lookup, and inside its time window.
      const refresh = exporter
        .getFinishedSpans()
        .find((s) => s.name === 'worker_resolver.refresh' && s.attributes['worker_resolver.source'] === 'dns');
      assert.ok(refresh);
      for (const span of [failed, answered]) {
        assert.equal(span.parentSpanContext?.spanId, refresh.spanContext().spanId);
      }
      const ms = (t: readonly [number, number]): number => t[0] * 1e3 + t[1] / 1e6;
      assert.ok(ms(failed.startTime) <= ms(answered.startTime), 'in the order they were sent');
      assert.ok(ms(answered.endTime) <= ms(refresh.endTime) + 1, 'within the refresh');
    } finally {
      await resolver.close();
      await dev.stop();
    }
  });
});
