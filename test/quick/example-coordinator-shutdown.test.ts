/**
 * `examples/coordinator.ts` stops cleanly whatever the trace collector does: SIGTERM with spans
 * pending and the collector refusing connections, or accepting them and never answering, exits
 * 0 within a bound and says once on stderr that spans were lost (the docker compose cluster sends
 * SIGTERM on every `stop`; a collector that is down must not turn that into a failure).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { ConsulDevServer } from '../../src/testing/index.js';
import { startExampleWorker } from '../../src/examples/worker.js';
import type { ExampleWorker } from '../../src/examples/worker.js';
import { waitFor } from '../helpers/wait.js';

const SERVICE = 'shutdown-workers';
/** The sidecar's bound on the span flush (src/cli/otel.ts) plus the process's own stop. */
const EXIT_BOUND_MS = 8_000;

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Runs the example coordinator until it has run jobs (spans pending), then SIGTERM; its exit code, time and output. */
async function stopWithCollector(
  consul: ConsulDevServer,
  endpoint: string,
): Promise<{ code: number | null; ms: number; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/coordinator.ts'], {
    env: {
      ...process.env,
      CONSUL_HTTP_ADDR: consul.httpAddr,
      WORKER_SERVICE: SERVICE,
      COORDINATOR_LISTEN: '127.0.0.1:0',
      JOB_EVERY_MS: '100',
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_SERVICE_NAME: 'example-coordinator',
      // Spans stay in the batch until the shutdown flushes them.
      OTEL_BSP_SCHEDULE_DELAY: '60000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = once(child, 'exit');
  try {
    await waitFor(
      () => (output.match(/^job q\d+ .* OK /gm) ?? []).length >= 3,
      `three jobs (output: ${output})`,
      30_000,
    );
    const t0 = Date.now();
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    return { code, ms: Date.now() - t0, output };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

describe('examples/coordinator.ts shutdown with an unusable trace collector', () => {
  let consul: ConsulDevServer;
  let worker: ExampleWorker;
  before(async () => {
    consul = await ConsulDevServer.start();
    worker = await startExampleWorker({ consul: consul.httpAddr, service: SERVICE, id: 'w1', check: 'ttl' });
  });
  after(async () => {
    await worker.close();
    await consul.stop();
  });

  it('a collector refusing connections: exit 0 with a warning, within the bound', async () => {
    const { code, ms, output } = await stopWithCollector(consul, `http://127.0.0.1:${await closedPort()}`);
    assert.equal(code, 0, output);
    assert.ok(ms < EXIT_BOUND_MS, `exited ${ms} ms after SIGTERM`);
    assert.match(output, /coordinator: spans not flushed at shutdown/);
    assert.doesNotMatch(output, /Unhandled|UnhandledPromiseRejection|^\s+at /m);
  });

  it('a collector that accepts and never answers: exit 0 with a warning, within the bound', async () => {
    const sockets: net.Socket[] = [];
    const collector = net.createServer((socket) => sockets.push(socket)).listen(0, '127.0.0.1');
    await once(collector, 'listening');
    const { port } = collector.address() as net.AddressInfo;
    try {
      const { code, ms, output } = await stopWithCollector(consul, `http://127.0.0.1:${port}`);
      assert.equal(code, 0, output);
      assert.ok(ms < EXIT_BOUND_MS, `exited ${ms} ms after SIGTERM`);
      assert.match(output, /coordinator: spans not flushed at shutdown/);
    } finally {
      for (const s of sockets) s.destroy();
      collector.close();
    }
  });
});
