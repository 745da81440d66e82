/**
 * The docker compose cluster, running for real (started by scripts/test-compose.sh, which passes
 * the compose command line in WORKER_RESOLVER_COMPOSE, one argument per line; docs/compose.md).
 * Every request goes to 127.0.0.1 (the ports the file publishes) or through `compose exec`.
 *
 * Checks, in order, each with its bound:
 *   1. every service of the file (Grafana aside) is running and healthy;
 *   2. the sidecar lists the 3 Rust workers, and the Rust coordinator's queries run on them and
 *      give single-node DataFusion's answers; the TypeScript coordinator's jobs are OK;
 *   3. `stop worker-2` (a graceful drain), `kill worker-3` (a crash) and `consul maint` each take
 *      the worker out of /v1/workers within their bound, and `up` / `maint -disable` bring it
 *      back; no Rust query fails through the drain and the maintenance; through the crash, only
 *      queries started before the removal reached the coordinator may fail, and no more than
 *      CRASH_FAILED_MAX; no TypeScript job fails at all; no answer is ever wrong;
 *   4. Prometheus: every target up (the scrape targets of deploy/prometheus.yml), the rules of
 *      dashboards/alerts.yml loaded, and its worker-count series equal to the sidecar's list;
 *   5. Jaeger's query API: a sidecar long-poll span that continues the Rust coordinator's trace
 *      (its client's traceparent; the parent must be an exported coordinator span as soon as the
 *      coordinator exports spans), and refresh spans from the sidecar and the TypeScript coordinator.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const run = promisify(execFile);

/** A graceful stop: SIGTERM → maintenance at once → out of the sidecar's answer (Consul, then one long poll). */
const DRAIN_REMOVED_MS = 5_000;
/** A crash: the HTTP check (every 1 s, 1 s timeout) turns critical, then Consul → sidecar. */
const CRASH_REMOVED_MS = 6_000;
/** `consul maint -enable`: Consul drops the instance from healthy answers at once. */
const MAINT_REMOVED_MS = 5_000;
/** Back after `up -d`: a container start, the worker's registration and its first passing check. */
const BACK_MS = 30_000;
/** `maint -disable`: healthy again at once (the check kept passing). */
const MAINT_BACK_MS = 5_000;
/**
 * Rust queries that may fail through one crash (README, "end to end": only queries started while
 * the dead worker was still listed may fail). The coordinator runs one query per second and a
 * query to a dead worker fails within seconds, so the window of CRASH_REMOVED_MS allows a few.
 */
const CRASH_FAILED_MAX = 10;
/** Time for queries started before a removal was seen to finish (and fail, if they were to). */
const SETTLE_MS = 5_000;

const SIDECAR = 'http://127.0.0.1:9464';
const RUST_COORDINATOR = 'http://127.0.0.1:9466';
const PROMETHEUS = 'http://127.0.0.1:9090';
const JAEGER = 'http://127.0.0.1:16686';
const WORKERS = ['worker-1', 'worker-2', 'worker-3'];

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const COMPOSE = (process.env['WORKER_RESOLVER_COMPOSE'] ?? '').split('\n').filter((a) => a !== '');

/** Runs `compose ARGS…`; its stdout. */
async function compose(...args: string[]): Promise<string> {
  const [command = 'docker-compose', ...base] = COMPOSE;
  const { stdout } = await run(command, [...base, ...args], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, `GET ${url}: ${res.status}`);
  return (await res.json()) as T;
}

async function getText(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, `GET ${url}: ${res.status}`);
  return res.text();
}

/** Polls `probe` every 100 ms until it returns true; the elapsed ms, or a failure naming `what` after `timeoutMs`. */
async function within(
  timeoutMs: number,
  what: string | (() => string),
  probe: () => Promise<boolean>,
): Promise<number> {
  const t0 = Date.now();
  let last: string | undefined;
  for (;;) {
    try {
      if (await probe()) return Date.now() - t0;
    } catch (err) {
      last = err instanceof Error ? err.message : JSON.stringify(err);
    }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(
        `not within ${timeoutMs} ms: ${typeof what === 'string' ? what : what()}${last === undefined ? '' : ` (last error: ${last})`}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The worker IDs the sidecar lists (its /v1/workers, answered at once). */
async function listed(): Promise<string[]> {
  const body = await getJson<{ workers: { id: string; url: string }[] }>(`${SIDECAR}/v1/workers`);
  return body.workers.map((w) => w.id).sort();
}

const sameList = (a: string[], b: string[]): boolean => a.join() === [...b].sort().join();

/** The Rust coordinator's query counts by result (ok | wrong | error), from its /metrics. */
async function rustQueries(): Promise<{ ok: number; wrong: number; error: number }> {
  const text = await getText(`${RUST_COORDINATOR}/metrics`);
  const counts = { ok: 0, wrong: 0, error: 0 };
  for (const [, result = '', value = '0'] of text.matchAll(
    /^worker_resolver_coordinator_queries_total\{[^}]*result="([a-z]+)"[^}]*\} (\S+)$/gm,
  )) {
    assert.ok(result === 'ok' || result === 'wrong' || result === 'error', `query result "${result}"`);
    counts[result] += Number(value);
  }
  return counts;
}

/** The TypeScript example coordinator's job lines so far, by verdict. */
async function tsJobs(): Promise<{ ok: number; bad: string[] }> {
  const logs = await compose('logs', '--no-color', '--no-log-prefix', 'coordinator');
  const jobs = [...logs.matchAll(/^job q\d+ .*$/gm)].map((m) => m[0]);
  return { ok: jobs.filter((j) => / OK /.test(j)).length, bad: jobs.filter((j) => !/ OK /.test(j)) };
}

/**
 * Runs `action` while watching the sidecar's list: the ms from the action's start until the list
 * equals `expected` (the action may still be running then: `compose stop` returns after the drain).
 */
async function changeWithin(
  timeoutMs: number,
  what: string,
  expected: string[],
  action: () => Promise<unknown>,
): Promise<number> {
  const t0 = Date.now();
  const acting = action();
  const seen = within(timeoutMs, what, async () => sameList(await listed(), expected)).then(() => Date.now() - t0);
  const [ms] = await Promise.all([seen, acting]);
  return ms;
}

describe('the compose cluster', { skip: COMPOSE.length === 0 ? 'run by scripts/test-compose.sh' : false }, () => {
  const events: string[] = [];
  let tsBefore: { ok: number; bad: string[] };

  before(async () => {
    tsBefore = await tsJobs();
  });

  it('runs every service of the file but Grafana, each healthy', async () => {
    const expected = (await compose('config', '--services'))
      .split('\n')
      .filter((s) => s !== '')
      .sort();
    for (const name of ['consul', ...WORKERS, 'sidecar', 'rust-coordinator', 'coordinator', 'prometheus', 'jaeger']) {
      assert.ok(expected.includes(name), `service ${name} in the file`);
    }
    assert.ok(!expected.includes('grafana'), 'Grafana is out of the test (test/compose/docker-compose.test.yml)');
    const ps = (await compose('ps', '--all', '--format', 'json'))
      .split('\n')
      .filter((l) => l.trim() !== '')
      .flatMap((l) => {
        const parsed = JSON.parse(l) as unknown;
        return (Array.isArray(parsed) ? parsed : [parsed]) as { Service: string; State: string; Health: string }[];
      });
    assert.deepEqual(ps.map((c) => c.Service).sort(), expected);
    for (const c of ps) {
      assert.equal(`${c.Service} ${c.State} ${c.Health}`, `${c.Service} running healthy`);
    }
  });

  it('the sidecar lists the 3 Rust workers, at the addresses they advertise', async () => {
    await within(30_000, 'the sidecar to list worker-1..3', async () => sameList(await listed(), WORKERS));
    const body = await getJson<{ source: string; workers: { id: string; url: string }[] }>(`${SIDECAR}/v1/workers`);
    assert.equal(body.source, 'consul');
    assert.deepEqual(body.workers.map((w) => w.url).sort(), WORKERS.map((w) => `http://${w}:50051/`).sort());
  });

  it('the Rust coordinator runs queries on them, each answer checked against single-node DataFusion', async () => {
    const start = await rustQueries();
    await within(
      60_000,
      'three more Rust queries answered right',
      async () => (await rustQueries()).ok >= start.ok + 3,
    );
    const now = await rustQueries();
    assert.equal(now.wrong, 0, 'no wrong answer');
    // Without the ANSI colours tracing may add (--no-color applies to compose's prefixes only).
    const logs = (await compose('logs', '--no-color', '--no-log-prefix', 'rust-coordinator')).replace(ANSI, '');
    // One line per query: its snapshot version, the tasks of each stage and the result check.
    const line = [...logs.matchAll(/^.*\bquery\b.*$/gm)].map((m) => m[0]).find((l) => /snapshot_version=\d+/.test(l));
    assert.ok(line !== undefined, `a query line in the coordinator's log:\n${logs.slice(-2000)}`);
    assert.match(line, /tasks_per_stage=/);
    assert.match(line, /check=/);
    assert.match(line, /workers=3\b/);
    const ts = await tsJobs();
    assert.ok(ts.ok > 0, 'the TypeScript coordinator has run jobs');
    assert.deepEqual(ts.bad, [], 'no TypeScript job failed');
  });

  it('a graceful stop of worker-2 drains: out of the list within its bound, 0 failed queries, back on up', async () => {
    const before = await rustQueries();
    const gone = await changeWithin(DRAIN_REMOVED_MS, 'worker-2 out after stop', ['worker-1', 'worker-3'], () =>
      compose('stop', 'worker-2'),
    );
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const drained = await rustQueries();
    const back = await changeWithin(BACK_MS, 'worker-2 back after up', WORKERS, () => compose('up', '-d', 'worker-2'));
    const after = await rustQueries();
    events.push(`stop worker-2: out in ${gone} ms, back in ${back} ms after up`);
    assert.ok(drained.ok > before.ok, 'queries went on during the drain');
    assert.equal(after.error - before.error, 0, 'no query failed through the drain and the return');
    assert.equal(after.wrong, 0);
  });

  it('a crash of worker-3: out within its bound, failed queries bounded and only before the removal, back on up', async () => {
    const before = await rustQueries();
    const gone = await changeWithin(CRASH_REMOVED_MS, 'worker-3 out after kill', ['worker-1', 'worker-2'], () =>
      compose('kill', 'worker-3'),
    );
    // Queries started before the coordinator saw the removal finish (and may fail) in this time.
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const settled = await rustQueries();
    // After that, every query runs on the two live workers: none may fail.
    await within(
      30_000,
      'three more Rust queries after the crash',
      async () => (await rustQueries()).ok >= settled.ok + 3,
    );
    const later = await rustQueries();
    const back = await changeWithin(BACK_MS, 'worker-3 back after up', WORKERS, () => compose('up', '-d', 'worker-3'));
    const failed = settled.error - before.error;
    events.push(`kill worker-3: out in ${gone} ms, ${failed} failed Rust queries, back in ${back} ms after up`);
    assert.ok(failed <= CRASH_FAILED_MAX, `${failed} queries failed through the crash (at most ${CRASH_FAILED_MAX})`);
    assert.equal(later.error, settled.error, 'no query failed once the removal was seen');
    assert.equal(later.wrong, 0);
  });

  it('consul maint takes worker-1 out within its bound with 0 failed queries, and -disable brings it back', async () => {
    await within(BACK_MS, 'worker-1..3 listed', async () => sameList(await listed(), WORKERS));
    const before = await rustQueries();
    const maint = (enable: boolean) => () =>
      compose('exec', '-T', 'consul', 'consul', 'maint', enable ? '-enable' : '-disable', '-service', 'worker-1');
    const gone = await changeWithin(
      MAINT_REMOVED_MS,
      'worker-1 out in maintenance',
      ['worker-2', 'worker-3'],
      maint(true),
    );
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const back = await changeWithin(MAINT_BACK_MS, 'worker-1 back after maint -disable', WORKERS, maint(false));
    const after = await rustQueries();
    events.push(`consul maint worker-1: out in ${gone} ms, back in ${back} ms after -disable`);
    assert.equal(after.error - before.error, 0, 'no query failed through the maintenance');
    assert.equal(after.wrong, 0);
  });

  it('no TypeScript coordinator job failed across these events', async () => {
    const ts = await tsJobs();
    assert.ok(ts.ok > tsBefore.ok, 'jobs ran through the events');
    assert.deepEqual(ts.bad, [], 'no job FAILED or MISMATCH');
    console.log(`compose events: ${events.join('; ')}`);
  });

  it('Prometheus: every target up, the alert rules loaded, its worker count equal to the sidecar list', async () => {
    const config = parse(readFileSync(path.join(ROOT, 'deploy/prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const wanted = config.scrape_configs.flatMap((c) =>
      c.static_configs.flatMap((s) => s.targets.map((t) => `${c.job_name} ${t}`)),
    );
    type Targets = { data: { activeTargets: { scrapePool: string; labels: { instance: string }; health: string }[] } };
    let seen: string[] = [];
    await within(
      30_000,
      () => `every target up (${seen.join(', ')})`,
      async () => {
        const targets = await getJson<Targets>(`${PROMETHEUS}/api/v1/targets`);
        seen = targets.data.activeTargets.map((t) => `${t.scrapePool} ${t.labels.instance} ${t.health}`);
        return sameList(
          seen,
          wanted.map((w) => `${w} up`),
        );
      },
    );

    const alerts = parse(readFileSync(path.join(ROOT, 'dashboards/alerts.yml'), 'utf8')) as {
      groups: { name: string; rules: unknown[] }[];
    };
    const rules = await getJson<{ data: { groups: { name: string; rules: { health?: string }[] }[] } }>(
      `${PROMETHEUS}/api/v1/rules`,
    );
    assert.deepEqual(
      rules.data.groups.map((g) => `${g.name} ${g.rules.length}`).sort(),
      alerts.groups.map((g) => `${g.name} ${g.rules.length}`).sort(),
    );

    // The sidecar's worker count as Prometheus scraped it, against the sidecar's own list.
    await within(30_000, 'Prometheus to scrape the sidecar worker count equal to /v1/workers', async () => {
      const q = await getJson<{ data: { result: { value: [number, string] }[] } }>(
        `${PROMETHEUS}/api/v1/query?query=${encodeURIComponent('sum(worker_resolver_workers{role="sidecar"})')}`,
      );
      const count = Number(q.data.result[0]?.value[1] ?? NaN);
      return count === (await listed()).length && count === WORKERS.length;
    });
  });

  it('Jaeger: a trace from the Rust coordinator into the sidecar, refresh spans from the sidecar and the TS coordinator', async () => {
    type Trace = {
      traceID: string;
      spans: { spanID: string; operationName: string; processID: string; references: { spanID: string }[] }[];
      processes: Record<string, { serviceName: string }>;
    };
    const traces = async (service: string, operation?: string): Promise<Trace[]> => {
      const q = new URLSearchParams({ service, limit: '200', lookback: '1h' });
      if (operation !== undefined) q.set('operation', operation);
      return (await getJson<{ data: Trace[] | null }>(`${JAEGER}/api/traces?${q.toString()}`)).data ?? [];
    };
    const service = (t: Trace, processID: string): string => t.processes[processID]?.serviceName ?? '';

    let services: string[] = [];
    await within(
      60_000,
      () => `the sidecar and the TypeScript coordinator in Jaeger (${services.join(', ')})`,
      async () => {
        services = (await getJson<{ data: string[] | null }>(`${JAEGER}/api/services`)).data ?? [];
        return ['worker-resolver-sidecar', 'example-coordinator'].every((s) => services.includes(s));
      },
    );

    // The sidecar's server span of a long poll, child of the span whose ids the Rust client sent in `traceparent`
    // (only the Rust coordinator long-polls the sidecar; the test's own requests send none, so theirs are roots).
    // When the coordinator exports its spans too, that parent must be one of them: one trace, two processes.
    const exporting = services.includes('worker-resolver-coordinator');
    await within(60_000, 'a trace from the Rust coordinator continued in the sidecar', async () => {
      for (const t of await traces('worker-resolver-sidecar', 'GET /v1/workers')) {
        const byId = new Map(t.spans.map((s) => [s.spanID, s]));
        const crossing = t.spans.some(
          (s) =>
            service(t, s.processID) === 'worker-resolver-sidecar' &&
            s.operationName === 'GET /v1/workers' &&
            s.references.some((r) => {
              const parent = byId.get(r.spanID);
              return exporting
                ? parent !== undefined && service(t, parent.processID) === 'worker-resolver-coordinator'
                : parent === undefined;
            }),
        );
        if (crossing) return true;
      }
      return false;
    });
    console.log(
      `jaeger: the Rust coordinator ${exporting ? 'exports its spans' : 'does not export spans (its traceparent only)'}`,
    );

    for (const name of ['worker-resolver-sidecar', 'example-coordinator']) {
      await within(60_000, `refresh spans from ${name}`, async () =>
        (await traces(name, 'worker_resolver.refresh')).some((t) =>
          t.spans.some((s) => s.operationName === 'worker_resolver.refresh' && service(t, s.processID) === name),
        ),
      );
    }
  });
});
