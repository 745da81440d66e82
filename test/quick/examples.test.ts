/**
 * The example worker and coordinator (src/examples, examples/), against the Consul dev
 * server over loopback: registration with HTTP and TTL checks, real task answers,
 * deregistration, the coordinator's plan/route/merge, retries on a failed worker, and the
 * `examples/worker.ts` entry point as a process of its own.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { EMPTY_SNAPSHOT, Planner, StaticWorkerResolver, createWorkerResolver } from '../../src/index.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { runJob } from '../../src/examples/coordinator.js';
import { aggregatePartitions, expectedResult, mergeGroups, sameResult } from '../../src/examples/dataset.js';
import type { DatasetSpec, Group } from '../../src/examples/dataset.js';
import { formatJob } from '../../src/examples/report.js';
import { startExampleWorker } from '../../src/examples/worker.js';
import type { ExampleWorker } from '../../src/examples/worker.js';
import { delay, waitFor } from '../helpers/wait.js';

const SERVICE = 'datafusion-worker';
const DATASET: DatasetSpec = { seed: 7, partitions: 6, rowsPerPartition: 2000, keys: 8 };
const planner = new Planner({ service: SERVICE });

/** POSTs JSON, or GETs without a body; resolves with the status and the parsed or raw body. */
function call(url: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: body === undefined ? 'GET' : 'POST', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // a text answer
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
  });
}

function healthyIds(consul: ConsulDevServer): string[] {
  return (consul.healthyInstances(SERVICE) ?? []).map((i) => `${i.serviceAddress}:${i.port}`);
}

describe('example worker', () => {
  let consul: ConsulDevServer;
  before(async () => {
    consul = await ConsulDevServer.start({ dns: false });
  });
  after(() => consul.stop());

  it('registers with an HTTP check that turns passing, computes partial and final aggregates, deregisters on close', async () => {
    const worker = await startExampleWorker({
      consul: consul.httpAddr,
      id: 'w-http',
      check: 'http',
      checkIntervalMs: 200,
    });
    try {
      const checks = (await call(`${consul.httpAddr}/v1/health/checks/${SERVICE}`)).body as {
        Type: string;
        ServiceID: string;
      }[];
      assert.deepEqual(
        checks.map((c) => [c.ServiceID, c.Type]),
        [['w-http', 'http']],
      );
      await waitFor(() => healthyIds(consul).includes(`127.0.0.1:${worker.port}`), 'the HTTP check to pass');

      const partial = await call(`${worker.url}/tasks/partial`, { dataset: DATASET, partitions: [0, 3] });
      assert.equal(partial.status, 200);
      const groups = (partial.body as { worker: string; groups: Group[] }).groups;
      assert.equal((partial.body as { worker: string }).worker, 'w-http');
      assert.deepEqual(groups, aggregatePartitions(DATASET, [0, 3]));
      assert.equal(
        groups.reduce((n, g) => n + g.count, 0),
        2 * DATASET.rowsPerPartition,
      );

      const final = await call(`${worker.url}/tasks/final`, { groups: [...groups, ...groups] });
      assert.deepEqual((final.body as { groups: Group[] }).groups, mergeGroups([groups, groups]));

      assert.equal(
        (await call(`${worker.url}/tasks/partial`, { dataset: { ...DATASET, keys: 0 }, partitions: [0] })).status,
        400,
      );
      assert.equal((await call(`${worker.url}/tasks/partial`, { dataset: DATASET, partitions: [99] })).status, 400);
      assert.equal((await call(`${worker.url}/tasks/final`, 'not json')).status, 400);
      assert.equal(worker.tasksServed, 2);
    } finally {
      await worker.close();
    }
    assert.equal(consul.healthyInstances(SERVICE), undefined, 'deregistered: no instance left at all');
    await assert.rejects(call(`${worker.url}/health`), { code: 'ECONNREFUSED' });
  });

  it('a TTL worker heartbeats; failing, crashing and maintenance take it out, restart brings it back', async () => {
    const worker = await startExampleWorker({
      consul: consul.httpAddr,
      id: 'w-ttl',
      check: 'ttl',
      checkIntervalMs: 100,
    });
    const listed = (): boolean => healthyIds(consul).includes(`127.0.0.1:${worker.port}`);
    try {
      await waitFor(listed, 'the TTL check to pass');
      await worker.setHealthy(false);
      assert.equal(listed(), false, 'a fail report takes effect at once');
      await worker.setHealthy(true);
      assert.equal(listed(), true);

      await worker.setMaintenance(true, 'test drain');
      assert.equal(listed(), false, 'maintenance excludes it');
      await worker.setMaintenance(false);
      assert.equal(listed(), true);

      await worker.crash();
      assert.equal(worker.state, 'crashed');
      await waitFor(() => !listed(), 'the TTL to expire after the crash', 5000);
      assert.notEqual(consul.healthyInstances(SERVICE), undefined, 'a crash does not deregister');
      await worker.restart();
      await waitFor(listed, 'the restarted worker to pass again');
    } finally {
      await worker.close();
    }
  });

  it('examples/worker.ts registers from its environment and deregisters on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/worker.ts'], {
      env: { ...process.env, CONSUL_HTTP_ADDR: consul.httpAddr, WORKER_ID: 'w-proc', WORKER_CHECK: 'ttl' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = once(child, 'exit');
    try {
      await waitFor(() => /w-proc registered/.test(output), `the worker to register (output: ${output})`, 20_000);
      await waitFor(() => (consul.healthyInstances(SERVICE) ?? []).length === 1, 'the worker to be healthy');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, output);
      assert.match(output, /w-proc deregistered and closed/);
      assert.equal(consul.healthyInstances(SERVICE), undefined);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('example coordinator', () => {
  let consul: ConsulDevServer;
  const workers: ExampleWorker[] = [];
  const expected = expectedResult(DATASET);

  before(async () => {
    consul = await ConsulDevServer.start({ dns: false });
    for (const id of ['c-1', 'c-2', 'c-3']) {
      workers.push(await startExampleWorker({ consul: consul.httpAddr, id, check: 'ttl', checkIntervalMs: 200 }));
    }
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.close()));
    await consul.stop();
  });

  it('plans with the cap, routes to the discovered workers, and merges the expected answer', async () => {
    const resolver = createWorkerResolver({ service: SERVICE, consul: { address: consul.httpAddr }, env: {} });
    try {
      await waitFor(() => resolver.snapshot().workers.length === 3, 'three workers in the snapshot');
      const report = await runJob(resolver.snapshot(), {
        planner: resolver.planner,
        queryId: 'q1',
        dataset: DATASET,
        expected,
      });
      assert.equal(report.status, 'ok', formatJob(report));
      assert.ok(sameResult(report.result, expected));
      assert.equal(report.retries, 0);
      const [scan, final] = report.stages;
      assert.deepEqual(
        [scan?.plan.desiredTasks, scan?.plan.cap, scan?.plan.plannedTasks, scan?.plan.capped],
        [6, 3, 3, true],
      );
      assert.deepEqual([final?.plan.desiredTasks, final?.plan.plannedTasks], [4, 3]);
      const used = new Set(scan?.tasks.map((t) => t.worker));
      assert.deepEqual([...used].sort(), ['c-1', 'c-2', 'c-3'], 'round-robin spreads the tasks over every worker');
    } finally {
      await resolver.close();
    }
  });

  it('retries a task whose worker is down on another worker of the same snapshot', async () => {
    const dead = http.createServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    dead.close();
    await once(dead, 'close');
    const snapshot = new StaticWorkerResolver([deadUrl, workers[0]?.url ?? '']).snapshot();
    const report = await runJob(snapshot, { planner, queryId: 'q2', dataset: DATASET, expected });
    assert.equal(report.status, 'ok', formatJob(report));
    assert.ok(report.retries >= 2, 'each stage routed one task to the dead worker');
    const failed = report.stages.flatMap((s) => s.tasks.flatMap((t) => t.attempts)).filter((a) => a.error);
    assert.ok(
      failed.every((a) => a.url === `${deadUrl}/` && a.error === 'ECONNREFUSED'),
      JSON.stringify(failed),
    );
    assert.match(formatJob(report), /retry stage 1 t\d: .* ECONNREFUSED → /);
  });

  it('retries a task whose worker crashes mid-task', async () => {
    const slow = await startExampleWorker({ consul: consul.httpAddr, id: 'slow', check: 'ttl', taskLatencyMs: 2000 });
    try {
      const snapshot = new StaticWorkerResolver([slow.url, workers[1]?.url ?? '']).snapshot();
      const job = runJob(snapshot, { planner, queryId: 'q3', dataset: DATASET, expected });
      await delay(300); // the tasks are in flight: the slow worker holds each for 2 s
      await slow.crash();
      const report = await job;
      assert.equal(report.status, 'ok', formatJob(report));
      const errors = report.stages.flatMap((s) => s.tasks.flatMap((t) => t.attempts)).map((a) => a.error);
      assert.ok(errors.includes('ECONNRESET') || errors.includes('socket hang up'), JSON.stringify(errors));
    } finally {
      await slow.close();
    }
  });

  it('fails the job (never throws) when every worker of the snapshot is down, and runs locally with none', async () => {
    const nobody = new StaticWorkerResolver(['http://127.0.0.1:1']).snapshot();
    const failed = await runJob(nobody, { planner, queryId: 'q4', dataset: DATASET, expected, taskTimeoutMs: 1000 });
    assert.equal(failed.status, 'failed');
    assert.match(failed.error ?? '', /failed on every worker tried/);

    const local = await runJob(EMPTY_SNAPSHOT, { planner, queryId: 'q5', dataset: DATASET, expected });
    assert.equal(local.status, 'ok');
    assert.deepEqual(
      local.stages.map((s) => [s.plan.plannedTasks, s.tasks[0]?.worker]),
      [
        [1, 'local'],
        [1, 'local'],
      ],
    );
  });

  it('reports a mismatch when a worker answers wrong', async () => {
    const liar = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ worker: 'liar', groups: [{ key: 'k00', count: 1, sum: 1 }] }));
    });
    liar.listen(0, '127.0.0.1');
    await once(liar, 'listening');
    try {
      const snapshot = new StaticWorkerResolver([
        `http://127.0.0.1:${(liar.address() as AddressInfo).port}`,
      ]).snapshot();
      const report = await runJob(snapshot, { planner, queryId: 'q6', dataset: DATASET, expected });
      assert.equal(report.status, 'mismatch');
      assert.match(formatJob(report), /MISMATCH/);
    } finally {
      liar.close();
    }
  });
});
