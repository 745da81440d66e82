/**
 * Proof against a real Prometheus (docs/design.md §7): a resolver runs against the Consul dev server
 * with churn, failures and a failover; its registry is served over HTTP on loopback;
 * `promtool check metrics` lints the exposition; a real Prometheus scrapes it every second
 * and loads the alert rules; then every dashboard panel query (template variables
 * substituted) and every alert expression is evaluated through Prometheus's HTTP API.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { Planner } from '../../src/planner-instrumented.js';
import { createResolverMetrics } from '../../src/metrics.js';
import type { ResolverMetrics } from '../../src/metrics.js';
import { createWorkerResolver } from '../../src/resolver.js';
import type { DiscoveringWorkerResolver } from '../../src/resolver.js';
import { createResolverTracing } from '../../src/tracing.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { startSidecar } from '../../src/sidecar.js';
import type { Sidecar } from '../../src/sidecar.js';
import { ALERT_NAMES, dashboardsPath, loadDashboard, panelQueries, substitute } from '../helpers/dashboard.js';
import { PrometheusProcess, promtool } from '../helpers/prometheus.js';
import type { PromSample } from '../helpers/prometheus.js';
import { delay, waitFor } from '../helpers/wait.js';
import { freeTcpPort } from '../helpers/ports.js';
import { silentLogger } from '../helpers/dev-workers.js';

const JOB = 'worker-resolver';
const SERVICE = 'worker';
/** Panels whose queries must return real numbers after the scenario (docs/design.md §7 "important ones"). */
const IMPORTANT = new Set([
  'Workers now',
  'Workers by instance and source',
  'Worker changes',
  'Snapshot publishes',
  'Request latency (non-blocking)',
  'Long-poll hold time (blocking)',
  'Requests by outcome',
  'Source errors by type',
  'Task cap now',
  'Task cap over time',
  'Planned tasks per stage',
  'Capped stages',
]);

function register(dev: ConsulDevServer, n: number): void {
  dev.registerService({
    Name: SERVICE,
    ID: `w${n}`,
    Address: '127.0.0.1',
    Port: 9000 + n,
    Check: { CheckID: `check-w${n}`, TTL: '1h', Status: 'passing' },
  });
}

describe('dashboard and alerts against a real Prometheus', { timeout: 90_000 }, () => {
  let dev: ConsulDevServer;
  let resolver: DiscoveringWorkerResolver;
  let metrics: ResolverMetrics;
  let sidecar: Sidecar;
  let prom: PrometheusProcess;
  let instance: string;
  /** A second resolver of the same service whose Consul never answers: no snapshot, ever. */
  let broken: DiscoveringWorkerResolver;
  let brokenServer: http.Server;
  let brokenInstance: string;
  const registry = new Registry();
  const exporter = new InMemorySpanExporter();

  before(async () => {
    dev = await ConsulDevServer.start();
    for (const n of [1, 2, 3, 4]) register(dev, n);
    metrics = createResolverMetrics({ registry, service: SERVICE });
    const tracing = createResolverTracing({
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
      service: SERVICE,
    });
    resolver = createWorkerResolver({
      service: SERVICE,
      consul: {
        address: dev.httpAddr,
        waitMs: 1000,
        timeoutMarginMs: 1000,
        backoff: { baseMs: 20, capMs: 200 },
        leaderCheckMs: 1000,
      },
      dns: { name: `_${SERVICE}._tcp.service.consul`, servers: [dev.dnsAddr ?? ''], minRefreshMs: 200 },
      minPublishIntervalMs: 0,
      massFailureGuard: false,
      env: {},
      observers: [metrics, tracing],
      logger: silentLogger,
    });
    metrics.attach(() => resolver.snapshot());
    await resolver.ready({ timeoutMs: 10_000 });
    // Scraped through a real sidecar: its /metrics merges the resolver's registry with its own
    // (long polls, requests, process metrics), as `worker-resolver serve` serves it.
    sidecar = await startSidecar({ resolver, registry, port: 0 });
    instance = `${sidecar.host}:${sidecar.port}`;
    const brokenRegistry = new Registry();
    broken = createWorkerResolver({
      service: SERVICE,
      consul: { address: `127.0.0.1:${await freeTcpPort()}`, backoff: { baseMs: 200, capMs: 1000 } },
      env: {},
      registry: brokenRegistry,
      logger: silentLogger,
    });
    brokenServer = http.createServer((_req, res) => {
      brokenRegistry.metrics().then(
        (body) => res.writeHead(200, { 'Content-Type': brokenRegistry.contentType }).end(body),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    });
    await new Promise<void>((resolve) => brokenServer.listen(0, '127.0.0.1', resolve));
    brokenInstance = `127.0.0.1:${(brokenServer.address() as net.AddressInfo).port}`;
    prom = await PrometheusProcess.start({
      target: instance,
      moreTargets: [brokenInstance],
      job: JOB,
      ruleFiles: [dashboardsPath('alerts.yml')],
    });
    // Prometheus applies new targets with a few seconds' delay: the scenario must start after
    // the first scrape, or its increments happen before any sample and no rate() sees them.
    await prom.waitForScrape(JOB, 20_000);
  });

  after(async () => {
    await prom?.stop();
    await resolver?.close();
    await broken?.close();
    brokenServer?.closeAllConnections();
    await new Promise<void>((resolve) =>
      brokenServer === undefined ? resolve() : brokenServer.close(() => resolve()),
    );
    await sidecar?.close();
    await dev?.stop();
  });

  it('exposes metrics that pass promtool check metrics without findings', async () => {
    const { status, output } = promtool(['check', 'metrics'], await registry.metrics());
    assert.equal(status, 0, output);
    assert.equal(output.trim(), '', `promtool findings:\n${output}`);
  });

  it('has data for every panel and alert after a churn scenario', async () => {
    const planner = new Planner({ service: SERVICE, metrics });
    let stage = 0;
    const plan = (): void => {
      const snapshot = resolver.snapshot();
      for (const desiredTasks of [1, 3, 16]) {
        const p = planner.planStage(snapshot, { stageId: `s${(stage += 1)}`, desiredTasks });
        if (snapshot.workers.length > 0) {
          planner.routeTasks(snapshot, { queryId: `q${stage}`, stageId: p.stageId, taskCount: p.plannedTasks });
        }
      }
    };
    const health = '/v1/health/service/';
    const steps: (() => void)[] = [
      () => register(dev, 5),
      () => dev.setCheckStatus('check-w2', 'critical'),
      () => dev.failNext(2, { status: 500, path: health }),
      () => dev.setCheckStatus('check-w2', 'passing'),
      () => dev.setServiceMaintenance('w3', true),
      () => dev.failNext(1, { status: 429, headers: { 'Retry-After': '0' }, path: health }),
      () => dev.bumpIndex(SERVICE),
      () => dev.setServiceMaintenance('w3', false),
      () => dev.resetIndex(), // the index goes backwards: the resolver restarts with a non-blocking request
      () => dev.failNext(4, { status: 503, path: health }), // failoverAfter = 3: fail over to DNS, then back
      () => dev.deregisterService('w5'),
      () => register(dev, 6),
    ];
    for (const step of steps) {
      step();
      plan();
      await delay(400);
    }
    const failovers = (): number =>
      exporter.getFinishedSpans().filter((s) => s.name === 'worker_resolver.failover').length;
    await waitFor(() => failovers() >= 2, 'failover and failback', 15_000);

    // Let Prometheus scrape the final state a few times, then check what it stored.
    const has = async (expr: string): Promise<boolean> => {
      const r = await prom.query(expr);
      return r.status === 'success' && (r.data.result as PromSample[]).length > 0;
    };
    const deadline = Date.now() + 20_000;
    const wanted = [
      `worker_resolver_worker_changes_total{change="removed"} > 0`,
      `worker_resolver_refresh_duration_seconds_count{blocking="true"} > 0`,
      `worker_resolver_refresh_duration_seconds_count{blocking="false", source="dns"} > 0`,
      `worker_resolver_source_errors_total{error_type="http"} > 0`,
      `worker_resolver_failovers_total{from="dns", to="consul"} > 0`,
      `worker_resolver_stages_capped_total > 0`,
      `count_over_time(worker_resolver_workers{source="consul"}[1m]) > 5`,
    ];
    for (const expr of wanted) {
      while (!(await has(expr))) {
        assert.ok(Date.now() < deadline, `Prometheus never saw ${expr}\n${prom.output}`);
        await delay(250);
      }
    }

    const { dashboard } = loadDashboard();
    const vars = {
      job: JOB,
      instance,
      service: SERVICE,
      datasource: 'prometheus',
      __rate_interval: '1m',
      __range: '5m',
      __interval: '1s',
    };
    const empty: string[] = [];
    for (const q of panelQueries(dashboard)) {
      const expr = substitute(q.expr, vars);
      const r = await prom.query(expr);
      assert.equal(r.status, 'success', `${q.panel}/${q.refId}: ${r.error ?? ''}\n${expr}`);
      assert.equal(r.data.resultType, 'vector', `${q.panel}/${q.refId}`);
      const samples = r.data.result as PromSample[];
      if (samples.length === 0) empty.push(`${q.panel}/${q.refId}: ${expr}`);
      if (IMPORTANT.has(q.panel)) {
        assert.ok(
          samples.some((s) => Number.isFinite(Number(s.value[1]))),
          `${q.panel}/${q.refId} has a finite value: ${JSON.stringify(samples)}\n${expr}`,
        );
      }
    }
    assert.deepEqual(empty, [], 'every panel query returns data');

    // Template variable queries (label_values) through the series API, as Grafana runs them.
    const labels = await prom.api<string[]>('label/service/values', { 'match[]': 'worker_resolver_workers' });
    assert.deepEqual(labels.data, [SERVICE]);

    // Specific values the scenario must have produced.
    const scalar = async (expr: string): Promise<number> => {
      const r = await prom.query(substitute(expr, vars));
      const [first] = r.data.result as PromSample[];
      assert.ok(first, `no result for ${expr}`);
      return Number(first.value[1]);
    };
    const workersNow = resolver.snapshot().workers.length;
    assert.ok(workersNow >= 3);
    // Prometheus scrapes once a second: the last change may not be stored yet, so wait for the scrape that has it.
    const settled = async (expr: string): Promise<number> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const v = await scalar(expr);
        if (v === resolver.snapshot().workers.length || Date.now() > deadline) return v;
        await delay(250);
      }
    };
    assert.equal(
      await settled('sum(worker_resolver_workers{instance="$instance"})'),
      resolver.snapshot().workers.length,
    );
    assert.equal(
      await settled('worker_resolver_stage_task_cap{instance="$instance"}'),
      resolver.snapshot().workers.length,
    );
    assert.ok((await scalar('sum(increase(worker_resolver_worker_changes_total[5m]))')) > 0);

    // Alert rules: loaded by Prometheus, evaluated without error, and their expressions run.
    let groups: { rules: { name: string; query: string; health: string; lastError?: string }[] }[] = [];
    const rulesDeadline = Date.now() + 10_000;
    for (;;) {
      const rules = await prom.api<{ groups: typeof groups }>('rules');
      assert.equal(rules.status, 'success');
      groups = rules.data.groups;
      if (groups.flatMap((g) => g.rules).every((r) => r.health === 'ok')) break;
      assert.ok(Date.now() < rulesDeadline, `rules not healthy: ${JSON.stringify(groups)}`);
      await delay(250);
    }
    const rules = groups.flatMap((g) => g.rules);
    assert.deepEqual(
      rules.map((r) => r.name),
      ALERT_NAMES,
    );
    for (const rule of rules) {
      const r = await prom.query(rule.query);
      assert.equal(r.status, 'success', `${rule.name}: ${r.error ?? ''}`);
    }
    // Nothing is wrong at the end of the scenario: no alert fires. (One may be pending: the
    // failover may have been scraped, and WorkerResolverFallbackActive waits 5 minutes.)
    const alerts = await prom.api<{ alerts: { state: string; labels: Record<string, string> }[] }>('alerts');
    assert.deepEqual(
      alerts.data.alerts.filter((a) => a.state === 'firing'),
      [],
    );

    // Spans: a long poll's refresh span never covers its wait.
    const polls = exporter
      .getFinishedSpans()
      .filter((s) => s.name === 'worker_resolver.refresh' && s.attributes['worker_resolver.blocking'] === true);
    assert.ok(polls.length > 0);
    for (const s of polls) assert.ok(s.duration[0] === 0 && s.duration[1] < 500e6, 'blocking span is short');
  });

  /**
   * The leader panel and WorkerResolverConsulNoLeader on a healthy cluster and on a lost quorum.
   * The dev server double suffices here: what reaches Prometheus is the resolver's leader state,
   * learned from GET /v1/status/leader (an address, or "" without a leader), and the double's
   * answers to it — and its streaming-backend leader headers, which must not count — are the
   * real agent's: test/real-consul/contract-consul-http.test.ts ("a blocking health read is
   * served by the streaming backend …") pins them on both backends, and
   * test/real-consul/consul-cluster.test.ts shows the same resolver on a real 3-server cluster
   * reporting none on quorum loss and known again after it.
   */
  it('the leader panel and the no-leader alert are true on a healthy cluster and on a lost quorum', async () => {
    const vars = { job: JOB, instance, service: SERVICE, datasource: 'prometheus', __rate_interval: '1m' };
    const { dashboard } = loadDashboard();
    const panel = panelQueries(dashboard).find((q) => q.panel === 'Consul leader known');
    assert.ok(panel, 'the dashboard has the leader panel');
    const rules = await prom.api<{ groups: { rules: { name: string; query: string }[] }[] }>('rules');
    const rule = rules.data.groups.flatMap((g) => g.rules).find((r) => r.name === 'WorkerResolverConsulNoLeader');
    assert.ok(rule, 'the no-leader alert is loaded');
    const values = async (expr: string): Promise<number[]> => {
      const r = await prom.query(expr);
      assert.equal(r.status, 'success', expr);
      return (r.data.result as PromSample[]).map((x) => Number(x.value[1]));
    };
    const eventually = async (what: string, ok: () => Promise<boolean>): Promise<void> => {
      const deadline = Date.now() + 30_000;
      while (!(await ok())) {
        assert.ok(Date.now() < deadline, `${what}\n${prom.output}`);
        await delay(250);
      }
    };
    const ruleHere = `(${rule.query}) and on (instance) up{instance="${instance}"}`;
    // Healthy (the dev server's blocking reads say KnownLeader false, as a streaming agent's do).
    await eventually('the panel shows a leader', async () => (await values(substitute(panel.expr, vars))).includes(1));
    assert.deepEqual(await values(ruleHere), [], 'no alert condition on a healthy cluster');
    // Quorum lost.
    dev.setLeader(false);
    try {
      await eventually('the panel shows no leader', async () =>
        (await values(substitute(panel.expr, vars))).includes(0),
      );
      await eventually('the alert condition holds, valued with the time since a leader', async () =>
        (await values(ruleHere)).some((v) => v >= 1),
      );
      assert.ok(resolver.snapshot().workers.length > 0, 'the last good set is still served');
    } finally {
      dev.setLeader(true);
    }
    await eventually('the alert condition clears', async () => (await values(ruleHere)).length === 0);
    await eventually('the panel shows a leader again', async () =>
      (await values(substitute(panel.expr, vars))).every((v) => v === 1),
    );
  });

  it('shows the worst resolver in the top row: one that never had a snapshot is not hidden by a healthy one', async () => {
    const { dashboard } = loadDashboard();
    // Both resolvers: the healthy one (workers, fresh) and the one whose Consul never answered.
    const vars = { job: JOB, instance: '.*', service: SERVICE, datasource: 'prometheus', __rate_interval: '1m' };
    const top = (title: string): string => {
      const q = panelQueries(dashboard).find((p) => p.panel === title);
      assert.ok(q, `panel "${title}" exists`);
      return substitute(q.expr, vars);
    };
    const value = async (expr: string): Promise<number> => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const r = await prom.query(expr);
        const [first] = r.data.result as PromSample[];
        if (first !== undefined) return Number(first.value[1]);
        assert.ok(Date.now() < deadline, `no result for ${expr}\n${prom.output}`);
        await delay(250);
      }
    };
    await waitFor(() => broken.snapshot().version === 0, 'the broken resolver to have no snapshot');
    // Both targets scraped: the broken one's version series exists.
    await value(`worker_resolver_snapshot_version{instance="${brokenInstance}"}`);
    assert.equal(await value(top('Workers now (worst resolver)')), 0, 'the resolver with no worker shows');
    assert.equal(await value(top('Snapshot state (worst resolver)')), 2, '"none yet" beats the healthy "fresh"');
    assert.ok((await value(top('Since last change (worst resolver)'))) >= 1e9, '"never" for the broken one');
    // The healthy resolver alone reads healthy.
    const healthy = { ...vars, instance };
    const only = (title: string): string =>
      substitute(panelQueries(dashboard).find((p) => p.panel === title)!.expr, healthy);
    assert.ok((await value(only('Workers now (worst resolver)'))) >= 3);
    assert.equal(await value(only('Snapshot state (worst resolver)')), 0);
  });
});
