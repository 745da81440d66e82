/**
 * A benchmark cluster on a REAL Consul agent (the counterpart of `cluster.ts` for the dev
 * server): raw HTTP calls on keep-alive loopback connections, registration of N instances
 * with bounded concurrency, and health changes through the agent API.
 *
 * The first {@link AGENT_INSTANCES} instances (those whose health changes) are registered
 * through the agent API (`PUT /v1/agent/service/register`, as workers do) with a TTL check, on
 * the agent's node; the rest through the catalog (`PUT /v1/catalog/register`), each on its own
 * node with a passing service check, as the dev-server cluster has them. Not all through the
 * agent: its local state is synced to the catalog by walking every local service, so 10,000
 * agent registrations take quadratic time (8,000 took over 12 minutes on this 2-core machine, under load), which
 * would measure the agent's anti-entropy rather than propagation. The catalog nodes carry no
 * `serfHealth` check, so the leader's reconciliation (which reaps nodes that have one and are
 * not Serf members) leaves them alone.
 */
import { Agent, request } from 'node:http';
import type { ConsulAgent } from '../test/helpers/consul-agent.js';
import { HEALTH_QUERY, SERVICE, workerRef } from './cluster.js';
import type { WorkerRef } from './cluster.js';
import { pause } from './section.js';

/** Instances registered through the agent API with a TTL check: the changes cycle through these. */
export const AGENT_INSTANCES = 50;

/** The health query both the floor and the resolver send (passing only, stale reads). */
export const HEALTH_PATH = `/v1/health/service/${SERVICE}?${HEALTH_QUERY}`;

/** One answer of the agent, read to its end. */
export interface Answer {
  readonly status: number;
  readonly index: number;
  readonly body: Buffer;
}

/** One request on `agent` (keep-alive); `onSent` fires once the request is written. */
export function call(
  base: string,
  method: string,
  path: string,
  agent: Agent,
  opts: { body?: string; onSent?: () => void } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      {
        method,
        agent,
        headers: opts.body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            index: Number(res.headers['x-consul-index'] ?? 0),
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (opts.onSent !== undefined) req.once('finish', opts.onSent);
    req.end(opts.body);
  });
}

export async function ok(answer: Promise<Answer>, what: string): Promise<Answer> {
  const a = await answer;
  if (a.status < 200 || a.status > 299) throw new Error(`${what}: HTTP ${a.status} ${a.body.toString().slice(0, 200)}`);
  return a;
}

/** Registers instances `from` .. `to - 1` (agent API or catalog, see above), `concurrency` at a time. */
export async function registerInstances(
  consul: ConsulAgent,
  from: number,
  to: number,
  concurrency: number,
  signal: AbortSignal,
): Promise<WorkerRef[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const refs: WorkerRef[] = [];
  for (let i = from; i < to; i += 1) refs.push(workerRef(i));
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < refs.length) {
      if (signal.aborted) throw new Error('registration cut short by the time budget');
      const i = from + next;
      const w = refs[next++] as WorkerRef;
      const service = { Address: w.address, Port: w.port, Tags: ['datafusion', 'v1'], Meta: { version: '1.4.2' } };
      const [path, body] =
        i < AGENT_INSTANCES
          ? [
              '/v1/agent/service/register',
              {
                Name: SERVICE,
                ID: w.serviceId,
                ...service,
                Check: { CheckID: w.checkId, Name: 'worker health', TTL: '1h', Status: 'passing' },
              },
            ]
          : [
              '/v1/catalog/register',
              {
                Node: w.node,
                Address: w.address,
                TaggedAddresses: { lan: w.address, wan: w.address },
                Service: { ID: w.serviceId, Service: SERVICE, ...service },
                Checks: [
                  {
                    CheckID: w.checkId,
                    Name: 'worker health',
                    Status: 'passing',
                    ServiceID: w.serviceId,
                    Output: 'HTTP 200',
                  },
                ],
              },
            ];
      await ok(call(consul.httpAddr, 'PUT', path, agent, { body: JSON.stringify(body) }), `register ${w.serviceId}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, lane));
  } finally {
    agent.destroy();
  }
  return refs;
}

/** Waits until the catalog answers `count` passing instances (the agent syncs registrations asynchronously). */
export async function waitForPassing(
  consul: ConsulAgent,
  count: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Answer> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const a = await ok(call(consul.httpAddr, 'GET', HEALTH_PATH, agent), 'health');
      const n = (JSON.parse(a.body.toString('utf8')) as unknown[]).length;
      if (n === count) return a;
      if (Date.now() > deadline) throw new Error(`bench: ${n} of ${count} instances passing after ${timeoutMs} ms`);
      if (signal?.aborted === true)
        throw new Error(`bench: ${n} of ${count} instances passing when the budget ran out`);
      await pause(250);
    }
  } finally {
    agent.destroy();
  }
}

/** Sends the health change of instance `w` (a TTL check update through the agent API). */
export function setTtl(consul: ConsulAgent, w: WorkerRef, down: boolean, agent: Agent): Promise<Answer> {
  const verb = down ? 'fail' : 'pass';
  return ok(
    call(consul.httpAddr, 'PUT', `/v1/agent/check/${verb}/${encodeURIComponent(w.checkId)}`, agent),
    `check ${verb}`,
  );
}
