/**
 * `worker-resolver serve` as a real child process (`node --import tsx src/cli/main.ts`)
 * against the Consul dev server with ACLs on: configuration from flags and environment,
 * the one-line usage errors that start nothing, the HTTP API through the process, graceful
 * SIGTERM, tracing through the OpenTelemetry SDK, and the token never shown.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ConsulDevServer } from '../../src/testing/index.js';
import { httpGet, runCli, within } from '../fixtures/cli-http.js';
import type { CliProcess } from '../fixtures/cli-http.js';
import { freeTcpPort as freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { registerWorker } from '../helpers/dev-workers.js';

const TOKEN = 'c0ffee00-5ec2-e7e7-0ken-000000000001';
const ERROR_LINE = /^worker-resolver: .+ \(ERR_[A-Z_]+\)$/;

/** Waits for a log line with this message; fails with the process's stderr. */
async function waitForLog(cli: CliProcess, msg: string): Promise<void> {
  try {
    await waitFor(() => cli.stderr().includes(`"msg":"${msg}"`), `"${msg}"`);
  } catch (err) {
    throw new Error(`${(err as Error).message}; stderr so far:\n${cli.stderr()}`);
  }
}

/** The sidecar URL from the "sidecar listening" log line. */
async function sidecarUrl(cli: CliProcess): Promise<string> {
  await waitFor(() => cli.stderr().includes('"msg":"sidecar listening"'), `the listening log line:\n${cli.stderr()}`);
  const line = cli
    .stderr()
    .split('\n')
    .find((l) => l.includes('"msg":"sidecar listening"'));
  return (JSON.parse(line ?? '{}') as { url: string }).url;
}

async function stop(cli: CliProcess): Promise<number | string> {
  if (cli.child.exitCode === null) cli.child.kill('SIGTERM');
  return within(cli.exited, 15_000, 'the process to exit');
}

describe('worker-resolver serve', () => {
  let consul: ConsulDevServer;
  const running: CliProcess[] = [];
  const start = (args: string[], env: Record<string, string>): CliProcess => {
    const cli = runCli(['serve', ...args], env);
    running.push(cli);
    return cli;
  };

  before(async () => {
    consul = await ConsulDevServer.start({ dns: false, aclToken: TOKEN });
    registerWorker(consul, 1);
    registerWorker(consul, 2);
  });
  after(async () => {
    for (const cli of running) if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
    await consul.stop();
  });

  it('runs from environment variables alone, serves long polls, and drains them on SIGTERM', async () => {
    const cli = start([], {
      WORKER_RESOLVER_SERVICE: 'worker',
      WORKER_RESOLVER_LISTEN: '127.0.0.1:0',
      WORKER_RESOLVER_MIN_PUBLISH_INTERVAL: '0ms',
      CONSUL_HTTP_ADDR: consul.httpAddr,
      CONSUL_HTTP_TOKEN: TOKEN,
    });
    const url = await sidecarUrl(cli);
    await waitForLog(cli, 'workers changed');
    const first = await httpGet(`${url}/v1/workers`);
    const body = JSON.parse(first.body) as { index: number; workers: { id: string }[] };
    assert.deepEqual(
      body.workers.map((w) => w.id),
      ['worker-1', 'worker-2'],
    );
    assert.equal((await httpGet(`${url}/readyz`)).status, 200);

    const poll = httpGet(`${url}/v1/workers?index=${body.index}&wait=60s`);
    await waitFor(() => consul.openLongPolls() >= 1, 'the resolver to hold its own long poll');
    await new Promise((resolve) => setTimeout(resolve, 100));
    registerWorker(consul, 3);
    const woken = await within(poll, 10_000, 'the long poll');
    const next = JSON.parse(woken.body) as { index: number; workers: unknown[] };
    assert.ok(next.index > body.index);
    assert.equal(next.workers.length, 3);

    const held = httpGet(`${url}/v1/workers?index=${next.index}&wait=5m`);
    const metrics = await httpGet(`${url}/metrics`);
    assert.match(metrics.body, /^worker_resolver_sidecar_long_polls 1$/m, 'the poll is held before SIGTERM');
    cli.child.kill('SIGTERM');
    const drained = await within(held, 10_000, 'the held poll to be answered on SIGTERM');
    assert.equal(drained.status, 200);
    assert.equal(drained.headers['x-worker-resolver-index'], String(next.index));
    assert.equal(await within(cli.exited, 15_000, 'exit'), 0);
    assert.match(cli.stderr(), /"msg":"stopped"/);
    for (const text of [cli.stdout(), cli.stderr(), first.body, woken.body, metrics.body]) {
      assert.ok(!text.includes(TOKEN), 'the token never appears');
    }
  });

  it('flags win over environment variables; a refused token is reported without showing it', async () => {
    const wrong = 'bad-token-9f8e7d6c5b4a';
    const cli = start(['--service', 'worker', '--consul', consul.httpAddr, '--listen', '127.0.0.1:0'], {
      WORKER_RESOLVER_SERVICE: 'not-this-one',
      CONSUL_HTTP_ADDR: 'http://127.0.0.1:1',
      CONSUL_HTTP_TOKEN: wrong,
    });
    const url = await sidecarUrl(cli);
    await waitFor(() => /ERR_CONSUL_ACL|403/.test(cli.stderr()), `an ACL error in the logs:\n${cli.stderr()}`);
    const ready = await httpGet(`${url}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(await stop(cli), 0);
    assert.match(cli.stderr(), /"service":"worker"/);
    for (const text of [cli.stdout(), cli.stderr(), ready.body]) assert.ok(!text.includes(wrong));
  });

  it('--token-file wins over CONSUL_HTTP_TOKEN, and text logs work', async () => {
    const dir = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/wr-serve-'));
    const file = `${dir}/token`;
    await import('node:fs/promises').then((fs) => fs.writeFile(file, `${TOKEN}\n`));
    const cli = start(
      ['--service', 'worker', '--token-file', file, '--listen', '127.0.0.1:0', '--log-format', 'text'],
      { CONSUL_HTTP_ADDR: consul.httpAddr, CONSUL_HTTP_TOKEN: 'overridden-by-the-file' },
    );
    await waitFor(
      () => / INFO {2}workers changed .*workers=\d/.test(cli.stderr()),
      `a text log line:\n${cli.stderr()}`,
    );
    assert.equal(await stop(cli), 0);
    assert.ok(!cli.stderr().includes(TOKEN));
  });

  it('bad flags and values: exactly one stderr line, exit 2, nothing started', async () => {
    const port = await freePort();
    const base = ['--service', 'worker', '--listen', `127.0.0.1:${port}`];
    const dir = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/wr-serve-bad-'));
    const empty = `${dir}/empty-token`;
    await import('node:fs/promises').then((fs) => fs.writeFile(empty, '\n'));
    const cases: { args: string[]; env?: Record<string, string>; mentions: RegExp; never?: RegExp }[] = [
      { args: [...base, '--wait', 'forever'], mentions: /--wait/ },
      { args: ['--service', 'worker', '--listen', 'nope'], mentions: /--listen/ },
      { args: [...base, '--stale', '--consistent'], mentions: /mutually exclusive/ },
      // Node's parser message, in our style: lower case, one line.
      { args: [...base, '--no-such-flag'], mentions: /^worker-resolver: unknown option '--no-such-flag'/ },
      // A token file from the environment is blamed on the variable, not on a flag nobody typed.
      {
        args: base,
        env: { CONSUL_HTTP_TOKEN: '', CONSUL_HTTP_TOKEN_FILE: '/nonexistent/token' },
        mentions: /CONSUL_HTTP_TOKEN_FILE: cannot read \/nonexistent\/token/,
        never: /--token-file/,
      },
      // An empty token file names the flag and the file.
      {
        args: [...base, '--token-file', empty],
        mentions: new RegExp(`--token-file: ${empty} is empty`),
        never: /consul\.token/,
      },
      { args: ['--listen', `127.0.0.1:${port}`], mentions: /--service/ },
      { args: base, env: { WORKER_RESOLVER_WAIT: 'forever' }, mentions: /WORKER_RESOLVER_WAIT/ },
      { args: [...base, '--wait', '11m'], mentions: /10m/ },
      // Below the library's floor (1 s): the library's message, under the flag's name.
      { args: [...base, '--leader-check', '100ms'], mentions: /^worker-resolver: --leader-check: .*1000/ },
      { args: [...base, '--dns-srv', '_w._tcp.x', '--dns-server', 'nope'], mentions: /--dns-server/ },
      {
        args: [...base, '--filter', ''],
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1' },
        mentions: /--filter/,
      },
      { args: [...base, '--consul', 'http://user:pw@127.0.0.1:8500'], mentions: /--consul/ },
    ];
    const before = consul.requestCount();
    await Promise.all(
      cases.map(async ({ args, env, mentions, never }) => {
        const cli = start(args, { CONSUL_HTTP_ADDR: consul.httpAddr, CONSUL_HTTP_TOKEN: TOKEN, ...env });
        const code = await within(cli.exited, 20_000, `exit of ${args.join(' ')}`);
        const lines = cli
          .stderr()
          .split('\n')
          .filter((l) => l !== '');
        assert.equal(code, 2, `${args.join(' ')}: ${cli.stderr()}`);
        assert.equal(lines.length, 1, `${args.join(' ')}: ${cli.stderr()}`);
        assert.match(lines[0] ?? '', ERROR_LINE);
        assert.match(lines[0] ?? '', mentions);
        if (never !== undefined) assert.doesNotMatch(lines[0] ?? '', never);
        assert.ok(!(lines[0] ?? '').includes('pw@'), 'credentials are not echoed');
        assert.equal(cli.stdout(), '');
      }),
    );
    assert.equal(consul.requestCount(), before, 'no request reached Consul');
    const probe = net.connect(port, '127.0.0.1');
    await assert.rejects(
      new Promise((resolve, reject) => probe.once('connect', resolve).once('error', reject)),
      /ECONNREFUSED/,
    );
  });

  it('an address in use: one stderr line, exit 1', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => blocker.once('listening', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const cli = start(['--service', 'worker', '--listen', `127.0.0.1:${port}`, '--log-level', 'error'], {
        CONSUL_HTTP_ADDR: consul.httpAddr,
        CONSUL_HTTP_TOKEN: TOKEN,
      });
      assert.equal(await within(cli.exited, 15_000, 'exit'), 1);
      assert.match(cli.stderr().trim(), /^worker-resolver: cannot listen on .*EADDRINUSE \(ERR_LISTEN\)$/);
    } finally {
      blocker.close();
    }
  });

  it('exports spans through the OpenTelemetry SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set, flushed on exit', async () => {
    const posts: string[] = [];
    const collector = http.createServer((req, res) => {
      posts.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      req.resume();
      req.on('end', () => res.writeHead(200, { 'Content-Type': 'application/x-protobuf' }).end());
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const { port } = collector.address() as net.AddressInfo;
    try {
      const cli = start(['--service', 'worker', '--listen', '127.0.0.1:0'], {
        CONSUL_HTTP_ADDR: consul.httpAddr,
        CONSUL_HTTP_TOKEN: TOKEN,
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_BSP_SCHEDULE_DELAY: '60000',
      });
      await waitForLog(cli, 'workers changed');
      assert.match(cli.stderr(), /"tracing":true/);
      assert.equal(await stop(cli), 0);
      assert.ok(
        posts.some((p) => p.startsWith('POST /v1/traces')),
        `spans flushed at shutdown: ${posts.join('; ')}`,
      );
    } finally {
      collector.closeAllConnections();
      collector.close();
    }
  });

  it('a second signal during a slow shutdown exits 1 at once', async () => {
    // A collector that accepts and never answers: the SDK's flush at shutdown hangs on it.
    const sockets: net.Socket[] = [];
    const collector = net.createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
    await new Promise((resolve) => collector.once('listening', resolve));
    const { port } = collector.address() as net.AddressInfo;
    try {
      const cli = start(['--service', 'worker', '--listen', '127.0.0.1:0'], {
        CONSUL_HTTP_ADDR: consul.httpAddr,
        CONSUL_HTTP_TOKEN: TOKEN,
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      });
      await waitForLog(cli, 'workers changed');
      cli.child.kill('SIGTERM');
      await waitFor(() => cli.stderr().includes('"msg":"shutting down"'), 'the graceful shutdown to start');
      cli.child.kill('SIGINT');
      assert.equal(await within(cli.exited, 4_000, 'exit on the second signal'), 1);
      assert.match(cli.stderr(), /"msg":"second signal: exiting now"/);
      assert.doesNotMatch(cli.stderr(), /"msg":"stopped"/);
    } finally {
      for (const socket of sockets) socket.destroy();
      collector.close();
    }
  });
});
