/**
 * `worker-resolver demo` as a user runs it: the real CLI in a child process, on ephemeral
 * loopback ports (`--port-base 0`), with a faster schedule so a short run shows a drain and
 * a crash. While it runs, its sidecar is queried over HTTP. The embedded default, then the
 * same demo against a real Consul agent (`--consul`, the test harness's `consul agent -dev`)
 * and against a separately started dev server named by `CONSUL_HTTP_ADDR`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import http from 'node:http';
import { ConsulDevServer } from '../../src/testing/index.js';
import { ConsulAgent, consulVersion } from '../helpers/consul-agent.js';
import { waitFor } from '../helpers/wait.js';

interface Run {
  readonly child: ChildProcessWithoutNullStreams;
  /** Everything printed so far (stdout). */
  out(): string;
  err(): string;
  /** Resolves with the exit code, and when the summary line appeared / the process exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; summaryAt: number; exitAt: number }>;
}

/** The environment without Consul's variables: the embedded default, whatever the caller's shell exports. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CONSUL_')));
}

function startDemo(args: readonly string[], env: Readonly<Record<string, string>> = {}): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'demo', '--port-base', '0', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...cleanEnv(), NO_COLOR: '1', ...env },
  });
  let out = '';
  let err = '';
  let summaryAt = Number.POSITIVE_INFINITY;
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (summaryAt === Number.POSITIVE_INFINITY && out.includes('demo stopped after')) summaryAt = Date.now();
  });
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; summaryAt: number; exitAt: number }>(
    (resolve) => child.once('exit', (code, signal) => resolve({ code, signal, summaryAt, exitAt: Date.now() })),
  );
  return { child, out: () => out, err: () => err, exited };
}

function get(url: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

/** Index of the first line matching `re` at or after line `from`; -1 when none. */
function lineIndex(lines: readonly string[], re: RegExp, from = 0): number {
  for (let i = from; i < lines.length; i += 1) if (re.test(lines[i] ?? '')) return i;
  return -1;
}

describe('worker-resolver demo', () => {
  it(
    'runs verified jobs, serves the sidecar, shows drains and crashes, and exits 0 by itself',
    { timeout: 90_000 },
    async () => {
      const run = startDemo(['--duration', '9s', '--events-every', '1500ms', '--job-every', '1s']);
      try {
        await waitFor(
          () => /sidecar +http:\/\/127\.0\.0\.1:\d+/.test(run.out()),
          `the demo header (${run.err()})`,
          30_000,
        );
        const sidecar = /sidecar +(http:\/\/127\.0\.0\.1:\d+)/.exec(run.out())?.[1] ?? '';

        const workers = await get(`${sidecar}/v1/workers`);
        assert.equal(workers.status, 200);
        assert.match(String(workers.headers['x-worker-resolver-index']), /^\d+$/);
        const body = JSON.parse(workers.body) as { source: string; workers: { url: string; id: string }[] };
        assert.equal(body.source, 'consul');
        assert.ok(body.workers.length >= 1, workers.body);
        assert.ok(body.workers.every((w) => /^worker-\d+$/.test(w.id) && w.url.startsWith('http://127.0.0.1:')));

        const metrics = await get(`${sidecar}/metrics`);
        assert.equal(metrics.status, 200);
        assert.match(metrics.body, /^worker_resolver_workers\{[^}]*service="datafusion-worker"[^}]*\} [1-9]/m);
        await waitFor(() => /job q1 /.test(run.out()), 'a first job');
        assert.match(
          (await get(`${sidecar}/metrics`)).body,
          /^worker_resolver_stage_planned_tasks_count\{[^}]*\} [1-9]/m,
        );

        const { code, summaryAt, exitAt } = await run.exited;
        const out = run.out();
        assert.equal(code, 0, `${out}\n${run.err()}`);
        // The CLI forces an exit 3 s after the demo returns only if a handle still holds the process, and says so.
        assert.doesNotMatch(run.err(), /ERR_HANDLE_LEFT/, `a handle was left open (${exitAt - summaryAt} ms)`);

        const lines = out.split('\n');
        const jobs = lines.filter((l) => /\] job q\d+ +snapshot v\d+ \(consul, \d+ workers\) +OK /.test(l));
        assert.ok(jobs.length >= 4, `at least 4 verified jobs:\n${out}`);
        assert.doesNotMatch(out, /MISMATCH|FAILED/);
        assert.match(out, /stage 1 partial aggregate +desired 8 cap \d+ planned \d+/);
        assert.match(out, /stage 2 final aggregate +desired 4 cap \d+ planned \d+/);
        // A drain and a crash, each followed by a worker-set change without that worker.
        const drained = lineIndex(lines, /event +worker-2 drained/);
        assert.ok(drained >= 0, `a drain event:\n${out}`);
        assert.ok(
          lineIndex(lines, /workers v\d+ consul: .*\] .*-worker-2/, drained) > drained,
          `worker-2 leaves the set:\n${out}`,
        );
        const crashed = lineIndex(lines, /event +worker-1 crashed/);
        assert.ok(crashed >= 0, `a crash event:\n${out}`);
        assert.ok(
          lineIndex(lines, /workers v\d+ consul: .*\] .*-worker-1/, crashed) > crashed,
          `worker-1 leaves the set:\n${out}`,
        );
        assert.match(out, /demo stopped after [\d.]+s: \d+ jobs \(\d+ OK, 0 mismatch, 0 failed\)/);
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    },
  );

  it('stops cleanly on SIGINT mid-run and exits 0', { timeout: 60_000 }, async () => {
    const run = startDemo([]);
    try {
      await waitFor(() => /\] job q1 /.test(run.out()), `a first job (${run.err()})`, 30_000);
      run.child.kill('SIGINT');
      const { code, signal, summaryAt, exitAt } = await run.exited;
      assert.equal(signal, null, 'it handled the signal instead of dying of it');
      assert.equal(code, 0, `${run.out()}\n${run.err()}`);
      assert.match(run.out(), /demo stopped after/);
      assert.equal(
        run.err(),
        '',
        `nothing left open, nothing on stderr (exit ${exitAt - summaryAt} ms after the summary)`,
      );
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  });

  it(
    'rejects a bad flag with one usage line and exit code 2, before starting anything',
    { timeout: 30_000 },
    async () => {
      const run = startDemo(['--workers', 'many']);
      const { code } = await run.exited;
      assert.equal(code, 2);
      assert.equal(run.out(), '');
      assert.match(run.err(), /^worker-resolver: demo: --workers must be an integer in \[1, 32\] \(ERR_USAGE\)\n$/);
    },
  );
});

/** The demo's instances registered on the agent (`GET /v1/agent/services`). */
async function demoInstances(agent: ConsulAgent): Promise<string[]> {
  const services = (await agent.call('GET', '/v1/agent/services')).json as Record<string, { Service: string }>;
  return Object.keys(services).filter((id) => id.startsWith('demo-worker-'));
}

describe('worker-resolver demo against a Consul it did not start', () => {
  let agent: ConsulAgent;
  before(async () => {
    agent = await ConsulAgent.start();
  });
  after(() => agent.stop());

  it(
    '--consul URL: runs on a real Consul agent, uses its DNS, and deregisters every instance it registered',
    { timeout: 90_000 },
    async () => {
      const run = startDemo([
        '--consul',
        agent.httpAddr,
        '--duration',
        '9s',
        '--events-every',
        '1500ms',
        '--job-every',
        '1s',
      ]);
      try {
        await waitFor(
          () => /sidecar +http:\/\/127\.0\.0\.1:\d+/.test(run.out()),
          `the demo header (${run.err()})`,
          30_000,
        );
        const out0 = run.out();
        assert.match(out0, /service "worker-resolver-demo"/);
        assert.ok(
          out0.includes(
            `Consul agent       ${agent.httpAddr}  (Consul ${consulVersion().replace(/^v/, '')}, from --consul)`,
          ),
          out0,
        );
        // The DNS address came from the agent itself (/v1/agent/self).
        assert.ok(
          out0.includes(`dig @127.0.0.1 -p ${agent.ports.dns} _worker-resolver-demo._tcp.service.consul SRV`),
          out0,
        );
        const sidecar = /sidecar +(http:\/\/127\.0\.0\.1:\d+)/.exec(out0)?.[1] ?? '';
        const body = JSON.parse((await get(`${sidecar}/v1/workers`)).body) as {
          source: string;
          workers: { id: string }[];
        };
        assert.equal(body.source, 'consul');
        assert.ok(
          body.workers.length >= 1 && body.workers.every((w) => /^demo-worker-\d+$/.test(w.id)),
          JSON.stringify(body),
        );
        // The workers really are in the agent's catalog, with their health checks.
        const health = (await agent.call('GET', '/v1/health/service/worker-resolver-demo')).json as unknown[];
        assert.ok(health.length >= 1);

        const { code } = await run.exited;
        const out = run.out();
        assert.equal(code, 0, `${out}\n${run.err()}`);
        assert.ok(out.split('\n').filter((l) => /\] job q\d+ .* OK /.test(l)).length >= 4, `verified jobs:\n${out}`);
        assert.doesNotMatch(out, /MISMATCH|FAILED|Consul outage/);
        assert.match(out, /event +demo-worker-2 drained/);
        assert.match(out, /event +demo-worker-1 crashed/);
        // Crashed or not, nothing the demo registered is left behind on the agent.
        assert.deepEqual(await demoInstances(agent), []);
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    },
  );

  it(
    'CONSUL_HTTP_ADDR: the demo uses that Consul (here a dev server started by the test)',
    { timeout: 90_000 },
    async () => {
      const dev = await ConsulDevServer.start();
      const hostPort = dev.httpAddr.replace(/^http:\/\//, '');
      const run = startDemo(
        ['--consul-dns', dev.dnsAddr ?? '', '--duration', '4s', '--service', 'env-demo', '--workers', '2'],
        {
          CONSUL_HTTP_ADDR: hostPort,
        },
      );
      try {
        const { code } = await run.exited;
        const out = run.out();
        assert.equal(code, 0, `${out}\n${run.err()}`);
        assert.ok(
          out.includes(`Consul agent       ${dev.httpAddr}  (Consul `) && out.includes(', from CONSUL_HTTP_ADDR)'),
          out,
        );
        assert.ok(out.includes(`dig @${dev.dnsAddr?.replace(':', ' -p ')} _env-demo._tcp.service.consul SRV`), out);
        const registrations = dev.requests.filter((r) => r.method === 'PUT' && r.path === '/v1/agent/service/register');
        assert.ok(registrations.length >= 2, 'the workers registered in this Consul');
        assert.ok(dev.requestCount('/v1/health/service/env-demo') >= 1, 'the resolver watched it');
        assert.deepEqual(dev.healthyInstances('env-demo') ?? [], [], 'and deregistered them at the end');
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
        await dev.stop();
      }
    },
  );

  it(
    '--embedded wins over CONSUL_HTTP_ADDR; an unreachable --consul is one line and exit 1; a bad one exit 2',
    { timeout: 60_000 },
    async () => {
      const embedded = startDemo(['--embedded', '--duration', '2s', '--quiet', '--workers', '1'], {
        CONSUL_HTTP_ADDR: 'http://127.0.0.1:1',
      });
      const e = await embedded.exited;
      assert.equal(e.code, 0, embedded.err());
      assert.match(embedded.out(), /Consul dev server +http:\/\/127\.0\.0\.1:\d+ +\(export CONSUL_HTTP_ADDR=/);

      const unreachable = startDemo(['--consul', 'http://127.0.0.1:1', '--duration', '2s']);
      const u = await unreachable.exited;
      assert.equal(u.code, 1);
      assert.match(
        unreachable.err(),
        /^worker-resolver demo: cannot reach Consul at http:\/\/127\.0\.0\.1:1 \(--consul\): ECONNREFUSED\n$/,
      );

      for (const args of [
        ['--consul', 'ftp://x'],
        ['--consul-dns', '127.0.0.1:8600'],
        ['--embedded', '--consul', 'x:1'],
      ]) {
        const bad = startDemo(args);
        assert.equal((await bad.exited).code, 2, args.join(' '));
        assert.match(bad.err(), /^worker-resolver: demo: .+ \(ERR_USAGE\)\n$/, args.join(' '));
      }
    },
  );
});
