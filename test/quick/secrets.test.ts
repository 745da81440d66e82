/**
 * The Consul token must never appear in a metric, a span (attributes, events, status) or a
 * log line, nor in the errors the resolver reports — with a wrong token (403s) and with the
 * right one (including ACL failures injected while it is in use).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import type { Logger, ResolverObserver } from '../../src/events.js';
import { Planner } from '../../src/planner-instrumented.js';
import { createResolverMetrics } from '../../src/metrics.js';
import { createWorkerResolver } from '../../src/resolver.js';
import type { DiscoveringWorkerResolver } from '../../src/resolver.js';
import { createResolverTracing } from '../../src/tracing.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

const RIGHT = 'a7d1e3f0-right-token-5c2b9e41d6aa';
const WRONG = 'c0ffee12-wrong-token-88f1d2b7e301';
/** The tokens and their distinctive fragments: a truncated token is a leak too. */
const NEEDLES = [RIGHT, WRONG, ...[RIGHT, WRONG].flatMap((t) => t.split('-').filter((part) => part.length >= 8))];

function assertClean(where: string, text: string): void {
  for (const needle of NEEDLES) assert.ok(!text.includes(needle), `${where} contains token material "${needle}"`);
}

describe('the Consul token never leaks', { timeout: 30_000 }, () => {
  let dev: ConsulDevServer;
  const resolvers: DiscoveringWorkerResolver[] = [];
  const lines: string[] = [];
  const errors: unknown[] = [];
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const registries = { wrong: new Registry(), right: new Registry() };

  /** Records every log call completely: message and fields rendered to any depth. */
  const record =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push(`${level} ${message} ${inspect(fields, { depth: 10, showHidden: true })}`);
    };
  const logger: Logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };
  const errorCollector: ResolverObserver = {
    onRefresh: ({ outcome }) => {
      if (!outcome.ok) errors.push(outcome.error);
    },
  };

  function start(name: 'wrong' | 'right', consul: { token?: string }, env: Record<string, string>) {
    const metrics = createResolverMetrics({ registry: registries[name], service: 'worker' });
    const tracing = createResolverTracing({ tracerProvider, service: 'worker' });
    const resolver = createWorkerResolver({
      service: 'worker',
      consul: {
        address: dev.httpAddr,
        waitMs: 1000,
        timeoutMarginMs: 1000,
        backoff: { baseMs: 20, capMs: 100 },
        aclRetryMs: 50,
        ...consul,
      },
      minPublishIntervalMs: 0,
      massFailureGuard: false,
      env,
      observers: [metrics, tracing, errorCollector],
      logger,
    });
    metrics.attach(() => resolver.snapshot());
    resolvers.push(resolver);
    return { resolver, metrics, tracing };
  }

  before(async () => {
    dev = await ConsulDevServer.start({ dns: false, aclToken: RIGHT });
    for (const n of [1, 2, 3]) {
      dev.registerService({
        Name: 'worker',
        ID: `w${n}`,
        Address: '127.0.0.1',
        Port: 9100 + n,
        Check: { CheckID: `check-w${n}`, TTL: '1h', Status: 'passing' },
      });
    }
  });

  after(async () => {
    await Promise.all(resolvers.map((r) => r.close()));
    await dev?.stop();
  });

  it('with a wrong token (403s) and with the right one', async () => {
    // Wrong token, as an option: every request is denied.
    start('wrong', { token: WRONG }, {});
    await waitFor(() => errors.length >= 3, 'three ACL errors');

    // Right token, from CONSUL_HTTP_TOKEN as Consul's CLI reads it; then ACL failures while it is in use.
    const right = start('right', {}, { CONSUL_HTTP_TOKEN: RIGHT });
    const snapshot = await right.resolver.ready({ timeoutMs: 10_000 });
    assert.equal(snapshot.workers.length, 3);
    const before403 = errors.length;
    dev.failNext(2, { status: 403, body: 'Permission denied', path: '/v1/health/service/' });
    dev.deregisterService('w3');
    await waitFor(() => right.resolver.snapshot().workers.length === 2, 'the right resolver sees w3 leave');
    assert.ok(errors.length >= before403 + 2, 'the injected 403s were reported');
    const planner = new Planner({ service: 'worker', metrics: right.metrics, tracing: right.tracing });
    const plan = planner.planStage(right.resolver.snapshot(), { stageId: 1, desiredTasks: 4 });
    planner.routeTasks(right.resolver.snapshot(), { queryId: 'q', stageId: 1, taskCount: plan.plannedTasks });

    // The checks below are only meaningful if the ACL failures were observed everywhere.
    const wrongText = await registries.wrong.metrics();
    assert.match(
      wrongText,
      /worker_resolver_source_errors_total\{service="worker",source="consul",error_type="acl"\} [1-9]/,
    );
    const spans = exporter.getFinishedSpans();
    assert.ok(spans.some((s) => s.attributes['error.type'] === 'acl'));
    assert.ok(lines.some((l) => l.includes('ERR_CONSUL_ACL')));

    assertClean('metrics (wrong token)', wrongText);
    assertClean('metrics (right token)', await registries.right.metrics());
    for (const s of spans) {
      const exported = inspect(
        { name: s.name, attributes: s.attributes, events: s.events, status: s.status, links: s.links },
        { depth: 10 },
      );
      assertClean(`span ${s.name}`, exported);
    }
    for (const line of lines) assertClean('log line', line);
    for (const err of errors) {
      assertClean('error', inspect(err, { depth: 10, showHidden: true }));
      assertClean('error message', (err as Error).message);
      assertClean('error stack', (err as Error).stack ?? '');
    }
  });
});
