/**
 * `worker-resolver watch` as a child process whose stdout is a pipe (not a terminal): one
 * plain line per change, no ANSI codes, exit 0 on SIGINT. Followed both directly through
 * Consul and through a running sidecar's long-poll API.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createWorkerResolver } from '../../src/index.js';
import { startSidecar } from '../../src/sidecar.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { runCli, within } from '../fixtures/cli-http.js';
import type { CliProcess } from '../fixtures/cli-http.js';
import { delay, waitFor } from '../helpers/wait.js';
import { freePorts, freeTcpPort } from '../helpers/ports.js';
import { registerWorker, silentLogger } from '../helpers/dev-workers.js';

function lines(cli: CliProcess): string[] {
  return cli
    .stdout()
    .split('\n')
    .filter((l) => l !== '');
}

/** Adds worker 3, then removes worker 1, checking the line each change prints. */
async function exercise(cli: CliProcess, consul: ConsulDevServer): Promise<void> {
  await waitFor(() => lines(cli).length >= 1, `the initial line:\n${cli.stdout()}${cli.stderr()}`, 20_000);
  const [initial] = lines(cli);
  assert.match(initial ?? '', /^\S+Z version=\d+ source=consul stale=false workers=2 /);
  assert.match(initial ?? '', / \+http:\/\/127\.0\.1\.1:9001\/ \+http:\/\/127\.0\.1\.2:9002\/$/);

  registerWorker(consul, 3);
  await waitFor(() => lines(cli).length >= 2, 'a line for the added worker');
  assert.match(lines(cli)[1] ?? '', / workers=3 \+http:\/\/127\.0\.1\.3:9003\/$/);

  consul.deregisterService('worker-1');
  await waitFor(() => lines(cli).length >= 3, 'a line for the removed worker');
  assert.match(lines(cli)[2] ?? '', / workers=2 -http:\/\/127\.0\.1\.1:9001\/$/);

  cli.child.kill('SIGINT');
  assert.equal(await within(cli.exited, 15_000, 'exit on SIGINT'), 0);
  assert.ok(!cli.stdout().includes('\x1b'), 'no ANSI escape codes without a terminal');
  assert.equal(lines(cli).length, 3, 'one line per change, nothing else');
}

describe('worker-resolver watch (not a terminal)', () => {
  let consul: ConsulDevServer;
  before(async () => {
    consul = await ConsulDevServer.start({ dns: false });
  });
  after(() => consul.stop());

  it('prints the initial set and one line per added or removed worker, following Consul', async () => {
    registerWorker(consul, 1);
    registerWorker(consul, 2);
    const cli = runCli(['watch', '--service', 'worker', '--consul', consul.httpAddr, '--min-publish-interval', '0ms']);
    try {
      await exercise(cli, consul);
    } finally {
      cli.child.kill('SIGKILL');
      consul.deregisterService('worker-2');
      consul.deregisterService('worker-3');
    }
  });

  it('follows a running sidecar through its long-poll API with --sidecar', async () => {
    registerWorker(consul, 1);
    registerWorker(consul, 2);
    const resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      minPublishIntervalMs: 0,
      env: {},
      logger: silentLogger,
    });
    await resolver.ready({ timeoutMs: 10_000 });
    const sidecar = await startSidecar({ resolver, port: 0 });
    const cli = runCli(['watch', '--sidecar', sidecar.url, '--wait', '30s']);
    try {
      await exercise(cli, consul);
    } finally {
      cli.child.kill('SIGKILL');
      await sidecar.close();
      await resolver.close();
    }
  });
});

describe('worker-resolver watch through outages', () => {
  it('stays up while Consul is down, says so, and shows the workers once Consul comes up', async () => {
    // Consul comes up on this port later: one no outgoing connection can take meanwhile.
    const [port] = (await freePorts(1)) as [number];
    const cli = runCli([
      'watch',
      '--service',
      'worker',
      '--consul',
      `127.0.0.1:${port}`,
      '--min-publish-interval',
      '0ms',
    ]);
    let consul: ConsulDevServer | undefined;
    try {
      await waitFor(
        () => /unreachable|ECONNREFUSED/i.test(cli.stderr()),
        `the outage on stderr:\n${cli.stderr()}`,
        20_000,
      );
      // The library's backoff timers are unref'd; watch must keep itself alive through them.
      await delay(1500);
      assert.equal(cli.child.exitCode, null, `watch exited during the outage:\n${cli.stderr()}`);
      consul = await ConsulDevServer.start({ dns: false, port });
      registerWorker(consul, 1);
      await waitFor(() => lines(cli).length >= 1, `the first line once Consul is up:\n${cli.stderr()}`, 40_000);
      assert.match(lines(cli)[0] ?? '', / workers=1 \+http:\/\/127\.0\.1\.1:9001\/$/);
      cli.child.kill('SIGINT');
      assert.equal(await within(cli.exited, 15_000, 'exit on SIGINT'), 0);
    } finally {
      cli.child.kill('SIGKILL');
      await consul?.stop();
    }
  });

  it('--sidecar: a refused connection is named as such, and watch keeps retrying', async () => {
    const port = await freeTcpPort();
    const cli = runCli(['watch', '--sidecar', `http://127.0.0.1:${port}`]);
    try {
      await waitFor(() => /connection refused/.test(cli.stderr()), `the reason on stderr:\n${cli.stderr()}`, 20_000);
      assert.doesNotMatch(cli.stderr(), /fetch failed/);
      await delay(1000);
      assert.equal(cli.child.exitCode, null, 'still running');
    } finally {
      cli.child.kill('SIGKILL');
    }
  });
});
