/**
 * Static checks of the Grafana dashboard, the alert rules and the provisioning files, plus
 * `promtool check rules` / `promtool test rules`. The live check against a real Prometheus
 * is test/quick/prometheus.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { createResolverMetrics } from '../../src/metrics.js';
import { StaticWorkerResolver } from '../../src/resolver.js';
import type { DiscoveringWorkerResolver } from '../../src/resolver.js';
import { startSidecar } from '../../src/sidecar.js';
import { ALERT_NAMES, dashboardsPath, loadDashboard, metricNames, panelQueries } from '../helpers/dashboard.js';
import { promtool } from '../helpers/prometheus.js';

const { raw, dashboard } = loadDashboard();
const panels = dashboard.panels.filter((p) => p.type !== 'row');
const rows = dashboard.panels.filter((p) => p.type === 'row');

async function registeredMetrics(): Promise<{
  names: Set<string>;
  histograms: Set<string>;
  labels: Map<string, Set<string>>;
}> {
  const registry = new Registry();
  createResolverMetrics({ registry, service: 'svc' });
  const json = await registry.getMetricsAsJSON();
  const labels = new Map(
    json.map((m) => [m.name, new Set(m.values.flatMap((v) => Object.keys(v.labels)).filter((l) => l !== 'le'))]),
  );
  // The sidecar's own families (long polls, requests, process metrics), read from a real one's /metrics.
  const fixed = new StaticWorkerResolver(['http://10.0.0.1:8080']);
  const resolver = Object.assign(fixed, {
    service: 'svc',
    subscribe: () => () => undefined,
    consulLeader: () => undefined,
  });
  const sidecar = await startSidecar({ resolver: resolver as unknown as DiscoveringWorkerResolver, registry, port: 0 });
  let text: string;
  try {
    text = await (await fetch(`${sidecar.url}/metrics`)).text();
  } finally {
    await sidecar.close();
  }
  const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)];
  return {
    names: new Set(types.map((m) => m[1] ?? '')),
    histograms: new Set(types.filter((m) => m[2] === 'histogram').map((m) => m[1] ?? '')),
    labels,
  };
}

describe('dashboard: shape', () => {
  it('is an importable dashboard with a datasource variable and no ${DS_...} inputs', () => {
    assert.equal(dashboard.uid, 'worker-resolver');
    assert.ok(dashboard.title.length > 0);
    assert.ok(dashboard.schemaVersion >= 36);
    assert.ok(!('__inputs' in dashboard), 'no __inputs');
    assert.doesNotMatch(raw, /\$\{DS_/);
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    assert.deepEqual([...vars.keys()], ['datasource', 'job', 'instance', 'service']);
    assert.equal(vars.get('datasource')?.type, 'datasource');
    assert.equal(vars.get('datasource')?.query, 'prometheus');
    for (const name of ['job', 'instance', 'service']) {
      const v = vars.get(name);
      assert.equal(v?.type, 'query', name);
      assert.equal(v?.datasource?.uid, '${datasource}', `${name} uses the datasource variable`);
      assert.match(v?.definition ?? '', /^label_values\(worker_resolver_\w+.*, \w+\)$/, name);
    }
  });

  it('uses timeseries, stat and heatmap panels, in the required rows', () => {
    const types = new Set(panels.map((p) => p.type));
    for (const t of ['timeseries', 'stat', 'heatmap']) assert.ok(types.has(t), `has a ${t} panel`);
    assert.deepEqual(
      rows.map((r) => r.title),
      [
        'Workers',
        'Changes',
        'Refresh latency',
        'Errors',
        'Fallback, failover and staleness',
        'Planner: tasks per stage',
        'Consul cluster',
        'Sidecar and process',
      ],
    );
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      assert.ok(g !== undefined && g.x >= 0 && g.x + g.w <= 24 && g.h > 0, `${p.title}: grid position`);
    }
  });

  it('gives every panel a unit, a description, the datasource variable and at least one query', () => {
    for (const p of panels) {
      assert.ok((p.description ?? '').length >= 20, `${p.title}: description`);
      assert.ok((p.fieldConfig?.defaults?.unit ?? '') !== '', `${p.title}: unit`);
      if (p.type === 'heatmap') assert.ok((p.options?.yAxis?.unit ?? '') !== '', `${p.title}: y axis unit`);
      assert.equal(p.datasource?.uid, '${datasource}', `${p.title}: datasource`);
      assert.ok((p.targets ?? []).length > 0, `${p.title}: targets`);
      for (const t of p.targets ?? []) {
        assert.ok((t.expr ?? '').length > 0, `${p.title}/${t.refId}: expr`);
        assert.equal(t.datasource?.uid, '${datasource}', `${p.title}/${t.refId}: datasource`);
      }
    }
  });

  it('uses $__rate_interval for every range (the in-range stat: $__range) and filters by job, instance, service', async () => {
    const { labels } = await registeredMetrics();
    for (const q of panelQueries(dashboard)) {
      const ranges = q.expr.match(/\[[^\]]+\]/g) ?? [];
      for (const r of ranges) assert.ok(r === '[$__rate_interval]' || r === '[$__range]', `${q.panel}: ${r}`);
      if (/\b(rate|increase)\(/.test(q.expr)) assert.ok(ranges.length > 0, `${q.panel}: range in rate()`);
      const selectors = q.expr.match(/(?:worker_resolver|process|nodejs)_\w+\{[^}]*\}/g) ?? [];
      assert.ok(selectors.length > 0, `${q.panel}: has selectors`);
      for (const s of selectors) {
        assert.match(s, /job=~"\$job", instance=~"\$instance"/, `${q.panel}: ${s}`);
        const metric = s.slice(0, s.indexOf('{')).replace(/_(bucket|sum|count)$/, '');
        if (labels.get(metric)?.has('service')) assert.match(s, /service=~"\$service"/, `${q.panel}: ${s}`);
      }
    }
  });

  it('references only metrics the library registers, and shows every required one', async () => {
    const { names, histograms } = await registeredMetrics();
    const used = new Set<string>();
    const exprs = [
      ...panelQueries(dashboard).map((q) => q.expr),
      ...dashboard.templating.list.map((v) => v.definition ?? ''),
    ];
    for (const expr of exprs) {
      for (const name of metricNames(expr, histograms)) {
        assert.ok(names.has(name), `unknown metric ${name} in ${expr}`);
        used.add(name);
      }
    }
    for (const name of names) {
      if (name.startsWith('worker_resolver_')) assert.ok(used.has(name), `the dashboard shows ${name}`);
    }
    for (const name of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
      assert.ok(used.has(name), `the dashboard shows the sidecar's ${name}`);
    }
  });
});

describe('alerts', () => {
  const text = readFileSync(dashboardsPath('alerts.yml'), 'utf8');

  it('define the alerts, each with severity, summary, description and a runbook section that exists', async () => {
    const blocks = text.split(/^\s+- alert: /m).slice(1);
    const names = blocks.map((b) => b.slice(0, b.indexOf('\n')));
    assert.deepEqual(names, ALERT_NAMES);
    const runbooks = readFileSync(new URL('../../docs/runbooks.md', import.meta.url), 'utf8');
    const headings = new Set([...runbooks.matchAll(/^## (\S+)/gm)].map((m) => (m[1] ?? '').toLowerCase()));
    for (const [i, b] of blocks.entries()) {
      assert.match(b, /^\s+severity: (warning|critical)$/m);
      assert.match(b, /^\s+summary: \S/m);
      assert.match(b, /^\s+description: \S/m);
      assert.match(b, /^\s+for: \d+m$/m);
      const url = /^\s+runbook_url: '([^']+)'$/m.exec(b)?.[1];
      assert.equal(url, `docs/runbooks.md#${(names[i] ?? '').toLowerCase()}`, `${names[i]}: runbook_url`);
      assert.ok(headings.has((names[i] ?? '').toLowerCase()), `docs/runbooks.md has a section for ${names[i]}`);
      assert.doesNotMatch(b, /\{\{ \$value \}\}/, `${names[i]}: $value is formatted (humanize)`);
    }
    const { names: registered, histograms } = await registeredMetrics();
    for (const name of metricNames(text, histograms)) assert.ok(registered.has(name), `unknown metric ${name}`);
  });

  it('pass promtool check rules', () => {
    const { status, output } = promtool(['check', 'rules', dashboardsPath('alerts.yml')]);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS: 8 rules found/);
  });

  it('pass their promtool unit tests', () => {
    const { status, output } = promtool(['test', 'rules', dashboardsPath('alerts.test.yml')]);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS/);
  });
});

describe('grafana provisioning', () => {
  it('provisions the Prometheus datasource and the dashboards directory', () => {
    const datasource = readFileSync(dashboardsPath('provisioning/datasources/prometheus.yml'), 'utf8');
    assert.match(datasource, /^apiVersion: 1$/m);
    assert.match(datasource, /type: prometheus$/m);
    assert.match(datasource, /url: http:\/\/prometheus:9090$/m);
    const provider = readFileSync(dashboardsPath('provisioning/dashboards/worker-resolver.yml'), 'utf8');
    assert.match(provider, /^apiVersion: 1$/m);
    assert.match(provider, /type: file$/m);
    assert.match(provider, /path: \/var\/lib\/grafana\/dashboards$/m);
  });
});
