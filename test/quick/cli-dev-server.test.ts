/**
 * `worker-resolver dev-server` as other programs use it: the CLI in a child process
 * (`node --import tsx src/cli/main.ts`, the same code `dist/cli/main.js` is built from) on
 * ephemeral loopback ports, its addresses read from the one `--json` line, a service
 * registered through its HTTP API and seen over DNS (UDP and TCP), health changes through
 * the check endpoints, SIGTERM/SIGINT stopping it with every port closed, and bad flags
 * refused with exit code 2 and one line before anything listens.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SrvData } from 'dns-packet';
import { runCli, within } from '../fixtures/cli-http.js';
import type { CliProcess } from '../fixtures/cli-http.js';
import { ConsulApi } from '../helpers/consul-api.js';
import { dnsQuery } from '../helpers/dns-query.js';
import { freeTcpPort } from '../helpers/ports.js';
import { delay, waitFor } from '../helpers/wait.js';

const ERROR_LINE = /^worker-resolver: .+ \((ERR_[A-Z_]+)\)$/;

/** What `--json` prints. */
interface Announcement {
  readonly http: string;
  readonly httpPort: number;
  readonly dns: string | null;
  readonly dnsPort: number | null;
  readonly host: string;
  readonly datacenter: string;
  readonly node: string;
  readonly acl: boolean;
  readonly pid: number;
  readonly seeded: readonly { service: string; count: number; ports: string }[];
}

const running: CliProcess[] = [];

function start(args: readonly string[]): CliProcess {
  const cli = runCli(['dev-server', ...args]);
  running.push(cli);
  return cli;
}

/** Starts with `--json` on ephemeral ports and parses the announcement line. */
async function startJson(args: readonly string[] = []): Promise<{ cli: CliProcess; info: Announcement }> {
  const cli = start(['--listen', '127.0.0.1:0', '--json', ...args]);
  await waitFor(() => cli.stdout().includes('\n') || cli.child.exitCode !== null, 'the announcement line', 30_000);
  assert.equal(cli.child.exitCode, null, `dev-server exited early:\n${cli.stderr()}`);
  const lines = cli.stdout().split('\n');
  assert.equal(lines.length, 2, `exactly one line on stdout, got: ${cli.stdout()}`);
  return { cli, info: JSON.parse(lines[0] ?? '') as Announcement };
}

async function stop(cli: CliProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
  if (cli.child.exitCode === null) cli.child.kill(signal);
  return within(cli.exited, 15_000, 'the dev server to exit');
}

/** True when a TCP connection to `port` is refused (nobody listens). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** The SRV targets:ports of a DNS answer, sorted. */
function srvPorts(answers: readonly { type: string; data?: unknown }[] | undefined): number[] {
  return (answers ?? [])
    .filter((a) => a.type === 'SRV')
    .map((a) => (a.data as SrvData).port)
    .sort((x, y) => x - y);
}

/** Runs the command to its exit; returns the exit code, stdout and stderr. */
async function runToExit(args: readonly string[]): Promise<{ code: number | string; out: string; err: string }> {
  const cli = start(args);
  const code = await within(cli.exited, 30_000, 'the command to exit');
  return { code, out: cli.stdout(), err: cli.stderr() };
}

describe('worker-resolver dev-server', () => {
  after(async () => {
    await Promise.all(running.map((cli) => stop(cli, 'SIGKILL').catch(() => undefined)));
  });

  it('announces its ephemeral ports in one JSON line; a service registered over HTTP is served over DNS', async () => {
    const { cli, info } = await startJson();
    assert.equal(info.host, '127.0.0.1');
    assert.equal(info.http, `http://127.0.0.1:${info.httpPort}`);
    assert.ok(info.httpPort > 0 && info.dnsPort !== null && info.dnsPort > 0, JSON.stringify(info));
    assert.equal(info.dns, `127.0.0.1:${info.dnsPort}`);
    assert.equal(info.datacenter, 'dc1');
    assert.equal(info.pid, cli.child.pid);
    assert.deepEqual(info.seeded, []);

    const consul = new ConsulApi(info.http, undefined);
    const leader = await consul.call('GET', '/v1/status/leader');
    assert.equal(typeof leader.json, 'string');
    for (const i of [1, 2]) {
      await consul.registerService({
        Name: 'api',
        ID: `api-${i}`,
        Address: '127.0.0.1',
        Port: 7000 + i,
        Check: { CheckID: `api-${i}-ttl`, TTL: '1h', Status: 'passing' },
      });
    }
    const health = await consul.call('GET', '/v1/health/service/api', { query: { passing: true } });
    assert.equal((health.json as unknown[]).length, 2);
    assert.match(String(health.headers['x-consul-index']), /^\d+$/);

    const udp = await dnsQuery(info.dns ?? '', 'api.service.consul', 'SRV');
    assert.equal(udp.rcode, 'NOERROR');
    assert.deepEqual(srvPorts(udp.answers), [7001, 7002]);
    const tcp = await dnsQuery(info.dns ?? '', '_api._tcp.service.consul', 'SRV', { transport: 'tcp' });
    assert.deepEqual(srvPorts(tcp.answers), [7001, 7002]);

    // A failing check takes the instance out of DNS; none left healthy is NXDOMAIN, as in Consul.
    await consul.setCheckStatus('api-1-ttl', 'critical');
    assert.deepEqual(srvPorts((await dnsQuery(info.dns ?? '', 'api.service.consul', 'SRV')).answers), [7002]);
    await consul.setServiceMaintenance('api-2', true, 'test');
    assert.equal((await dnsQuery(info.dns ?? '', 'api.service.consul', 'SRV')).rcode, 'NXDOMAIN');

    assert.equal(await stop(cli, 'SIGTERM'), 0);
    assert.match(cli.stderr(), /SIGTERM: stopping/);
    assert.equal(await refused(info.httpPort), true, 'HTTP port closed after exit');
  });

  it('answers a blocking query when a health change arrives, and Ctrl-C (SIGINT) ends a held one', async () => {
    const { cli, info } = await startJson(['--seed', 'web=2']);
    const consul = new ConsulApi(info.http, undefined);
    const first = await consul.call('GET', '/v1/health/service/web', { query: { passing: true } });
    const index = String(first.headers['x-consul-index']);
    const blocked = consul.call('GET', '/v1/health/service/web', { query: { passing: true, index, wait: '30s' } });
    await consul.setCheckStatus('service:web-1', 'critical');
    const answer = await within(blocked, 20_000, 'the blocking query to return');
    assert.ok(Number(answer.headers['x-consul-index']) > Number(index));
    assert.equal((answer.json as unknown[]).length, 1);

    // A query held when the signal arrives does not keep the process alive.
    const held = consul
      .request('GET', '/v1/health/service/web', {
        query: { index: String(answer.headers['x-consul-index']), wait: '5m' },
        timeoutMs: 60_000,
      })
      .then(
        () => 'answered',
        () => 'cut',
      );
    await delay(300); // let it reach the server (if it does not, the test still holds)
    assert.equal(await stop(cli, 'SIGINT'), 0);
    assert.ok(['answered', 'cut'].includes(await within(held, 15_000, 'the held query to end')));
  });

  it('seeds N instances per --seed with tags, on consecutive ports, with passing TTL checks', async () => {
    const seedPort = 30_001;
    const { cli, info } = await startJson([
      '--seed',
      'web=3',
      '--seed',
      'db=1',
      '--seed-port',
      String(seedPort),
      '--seed-tag',
      'blue',
      '--datacenter',
      'lab',
      '--node',
      'box-1',
    ]);
    assert.deepEqual(info.seeded, [
      { service: 'web', count: 3, ports: '30001-30003' },
      { service: 'db', count: 1, ports: '30004-30004' },
    ]);
    assert.equal(info.datacenter, 'lab');
    assert.equal(info.node, 'box-1');
    const consul = new ConsulApi(info.http, undefined);
    const web = (await consul.call('GET', '/v1/health/service/web', { query: { passing: true, tag: 'blue' } }))
      .json as { Node: { Node: string }; Service: { ID: string; Port: number }; Checks: { CheckID: string }[] }[];
    assert.deepEqual(web.map((e) => [e.Service.ID, e.Service.Port]).sort(), [
      ['web-1', 30001],
      ['web-2', 30002],
      ['web-3', 30003],
    ]);
    assert.ok(web.every((e) => e.Node.Node === 'box-1'));
    assert.ok(web.every((e) => e.Checks.some((c) => c.CheckID === `service:${e.Service.ID}`)));
    const dns = info.dns ?? '';
    assert.deepEqual(srvPorts((await dnsQuery(dns, 'blue.web.service.consul', 'SRV')).answers), [30001, 30002, 30003]);
    assert.deepEqual(srvPorts((await dnsQuery(dns, 'db.service.lab.consul', 'SRV')).answers), [30004]);
    assert.equal(await stop(cli), 0);
  });

  it('prints where it listens for people, and --no-dns turns DNS off', async () => {
    const cli = start(['--listen', '127.0.0.1:0', '--no-dns', '--seed', 'web=1']);
    await waitFor(() => /seeded/.test(cli.stdout()) || cli.child.exitCode !== null, 'the banner', 30_000);
    const out = cli.stdout();
    assert.match(out, /HTTP API +http:\/\/127\.0\.0\.1:\d+/);
    assert.match(out, /export CONSUL_HTTP_ADDR=http:\/\/127\.0\.0\.1:\d+/);
    assert.match(out, /DNS +off/);
    assert.match(out, /web: 1 instances on 127\.0\.0\.1:20001-20001/);
    assert.equal(await stop(cli, 'SIGINT'), 0);
  });

  it('--acl-token-file turns ACLs on: the anonymous token sees nothing, the management token everything', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'wr-dev-server-'));
    try {
      const token = 'c0ffee00-5ec2-e7e7-0ken-00000000dev1';
      await writeFile(join(dir, 'token'), `${token}\n`);
      const { cli, info } = await startJson(['--acl-token-file', join(dir, 'token'), '--seed', 'web=2']);
      assert.equal(info.acl, true);
      assert.doesNotMatch(cli.stdout() + cli.stderr(), new RegExp(token), 'the token is never printed');
      const anonymous = new ConsulApi(info.http, undefined);
      const hidden = await anonymous.call('GET', '/v1/health/service/web');
      assert.deepEqual(hidden.json, []);
      const managed = new ConsulApi(info.http, token);
      assert.equal(((await managed.call('GET', '/v1/health/service/web')).json as unknown[]).length, 2);
      assert.equal((await managed.request('GET', '/v1/health/service/web', { token: 'not-a-token' })).status, 403);
      assert.equal(await stop(cli), 0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--exit-on-stdin-close: the server stops when its parent closes stdin', async () => {
    const { cli, info } = await startJson(['--exit-on-stdin-close', '--no-dns']);
    assert.equal(info.dns, null);
    cli.child.stdin.end();
    assert.equal(await within(cli.exited, 15_000, 'the exit after stdin closed'), 0);
    assert.match(cli.stderr(), /stdin closed: stopping/);
    assert.equal(await refused(info.httpPort), true);
  });

  it('DNS follows an ephemeral --listen, or takes its own --dns-listen port', async () => {
    const dnsPort = await freeTcpPort();
    const { cli, info } = await startJson(['--dns-listen', `127.0.0.1:${dnsPort}`]);
    assert.equal(info.dnsPort, dnsPort);
    assert.equal(await stop(cli), 0);
  });

  it('exits 1 with ERR_LISTEN when its port is taken, leaving nothing behind', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const { code, out, err } = await runToExit(['--listen', `127.0.0.1:${port}`, '--no-dns']);
      assert.equal(code, 1);
      assert.equal(out, '');
      const lines = err.trim().split('\n');
      assert.equal(lines.length, 1, err);
      assert.equal(ERROR_LINE.exec(lines[0] ?? '')?.[1], 'ERR_LISTEN', err);
      assert.match(err, new RegExp(`127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('refuses bad flags up front: exit 2, one line with ERR_USAGE, nothing listening', async () => {
    const cases: readonly (readonly string[])[] = [
      ['--listen', 'nope'],
      ['--listen', '127.0.0.1:70000'],
      ['--dns-listen', '127.0.0.2:0', '--listen', '127.0.0.1:0'],
      ['--dns-listen', '127.0.0.1:0', '--no-dns'],
      ['--listen', '127.0.0.1:8601', '--dns-listen', '127.0.0.1:8601'],
      ['--seed', 'web'],
      ['--seed', 'web=0'],
      ['--seed', 'web=10001'],
      ['--seed', 'bad_name=2'],
      ['--seed', 'web=2', '--seed', 'WEB=1'],
      ['--seed', 'web=10', '--seed-port', '65530'],
      ['--seed-port', 'x'],
      ['--seed-tag', 'blue'],
      ['--datacenter', 'dc 1'],
      ['--acl-token-file', '/nonexistent/token'],
      ['--check-interval-floor', 'soon'],
      ['--bogus'],
      ['positional'],
    ];
    for (const args of cases) {
      const { code, out, err } = await runToExit(args);
      assert.equal(code, 2, `${args.join(' ')}: exit ${code}\n${err}`);
      assert.equal(out, '', args.join(' '));
      const lines = err.trim().split('\n');
      assert.equal(lines.length, 1, `${args.join(' ')}: ${err}`);
      assert.equal(ERROR_LINE.exec(lines[0] ?? '')?.[1], 'ERR_USAGE', `${args.join(' ')}: ${err}`);
    }
  });

  it('--help describes every flag; the top-level help lists the command', async () => {
    const help = await runToExit(['--help']);
    assert.equal(help.code, 0);
    const flags = ['--listen', '--dns-listen', '--no-dns', '--seed', '--seed-port', '--seed-tag', '--json'];
    for (const flag of [...flags, '--acl-token-file', '--check-interval-floor', '--exit-on-stdin-close']) {
      assert.ok(help.out.includes(flag), `${flag} in --help`);
    }
    assert.match(help.out, /TEST DOUBLE/);
    const top = runCli(['--help']);
    assert.equal(await within(top.exited, 30_000, 'help'), 0);
    assert.match(top.stdout(), /worker-resolver dev-server \[flags\]/);
  });
});
