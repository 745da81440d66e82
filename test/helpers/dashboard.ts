/** Reading dashboards/worker-resolver.json and dashboards/alerts.yml in tests. */
import { readFileSync } from 'node:fs';

/** Absolute path of a file under dashboards/. */
export function dashboardsPath(file: string): string {
  return new URL(`../../dashboards/${file}`, import.meta.url).pathname;
}

/** The subset of Grafana's dashboard model the tests look at. */
export interface GrafanaPanel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly description?: string;
  readonly datasource?: { type?: string; uid?: string };
  readonly fieldConfig?: { defaults?: { unit?: string } };
  readonly options?: { yAxis?: { unit?: string } };
  readonly gridPos?: { h: number; w: number; x: number; y: number };
  readonly targets?: readonly { expr?: string; refId?: string; format?: string; datasource?: { uid?: string } }[];
}

/** A dashboard template variable. */
export interface GrafanaVariable {
  readonly name: string;
  readonly type: string;
  readonly query?: unknown;
  readonly definition?: string;
  readonly datasource?: { type?: string; uid?: string };
}

/** The dashboard. */
export interface GrafanaDashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly panels: readonly GrafanaPanel[];
  readonly templating: { readonly list: readonly GrafanaVariable[] };
}

/** Parses the dashboard JSON. */
export function loadDashboard(): { raw: string; dashboard: GrafanaDashboard } {
  const raw = readFileSync(dashboardsPath('worker-resolver.json'), 'utf8');
  return { raw, dashboard: JSON.parse(raw) as GrafanaDashboard };
}

/** One panel query. */
export interface PanelQuery {
  readonly panel: string;
  readonly refId: string;
  readonly expr: string;
}

/** Every `targets[].expr` of every non-row panel. */
export function panelQueries(dashboard: GrafanaDashboard): PanelQuery[] {
  return dashboard.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title, refId: t.refId ?? '?', expr: t.expr ?? '' })),
  );
}

/** Replaces Grafana's variables the way Grafana would for single values. */
export function substitute(expr: string, vars: Readonly<Record<string, string>>): string {
  return expr.replace(/\$(__\w+|\w+)|\$\{(\w+)\}/g, (whole, a?: string, b?: string) => {
    const name = a ?? b ?? '';
    const value = vars[name];
    if (value === undefined) throw new Error(`no value for variable ${whole} in: ${expr}`);
    return value;
  });
}

/** Metric names referenced by a PromQL expression (histogram series suffixes removed). */
export function metricNames(expr: string, histograms: ReadonlySet<string>): string[] {
  const names = expr.match(/\b(?:worker_resolver|process|nodejs)_[a-z0-9_]+\b/g) ?? [];
  return [
    ...new Set(
      names.map((n) => {
        const base = n.replace(/_(bucket|sum|count)$/, '');
        return base !== n && histograms.has(base) ? base : n;
      }),
    ),
  ];
}

/** The alerts of dashboards/alerts.yml, in file order: the static and the live tests check the same list. */
export const ALERT_NAMES: readonly string[] = [
  'WorkerResolverNeverReady',
  'WorkerResolverRefreshFailing',
  'WorkerResolverFallbackActive',
  'WorkerResolverFlapping',
  'WorkerResolverSnapshotStale',
  'WorkerResolverNoWorkers',
  'WorkerResolverGuardHolding',
  'WorkerResolverConsulNoLeader',
];
