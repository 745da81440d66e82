/**
 * A benchmark cluster: the Consul dev server (the project's test double) with N worker
 * instances, each on its own node with a node check (`serfHealth`) and a service check, as a
 * real Consul health answer has them.
 *
 * Registration goes through the dev agent's catalog-register logic (the same code as
 * `PUT /v1/catalog/register`, without HTTP), one write per worker, so 10,000 workers take
 * well under a second. Health changes go through the agent's check update with an explicit
 * node, so the benchmark does not pay for the dev server's check lookup across 10,000 nodes
 * (a cost of the double, not of Consul): the measured time starts at the state write.
 */
import { get } from 'node:http';
import type { Agent } from 'node:http';
import { ConsulDevServer } from '../src/testing/index.js';
import type { ConsulDevServerOptions } from '../src/testing/index.js';
import type { DevAgent } from '../src/testing/consul-dev-agent.js';

/** The service name every benchmark uses. */
export const SERVICE = 'worker';

/** One registered worker. */
export interface WorkerRef {
  readonly node: string;
  readonly serviceId: string;
  readonly checkId: string;
  readonly address: string;
  readonly port: number;
}

/** The dev agent behind a dev server (private there; the benchmarks drive state directly). */
export function devAgent(dev: ConsulDevServer): DevAgent {
  return dev['agent'];
}

/** Worker `i` (0-based): node `node-00000`, address in 10.0.0.0/8, port 8080. */
export function workerRef(i: number): WorkerRef {
  const n = i + 1;
  const id = String(i).padStart(5, '0');
  return {
    node: `node-${id}`,
    serviceId: `${SERVICE}-${id}`,
    checkId: `service:${SERVICE}-${id}`,
    address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
    port: 8080,
  };
}

/** Registers workers `from` .. `to - 1` (passing) on `dev`. */
export function registerWorkers(dev: ConsulDevServer, to: number, from = 0): WorkerRef[] {
  const agent = devAgent(dev);
  const refs: WorkerRef[] = [];
  for (let i = from; i < to; i += 1) {
    const w = workerRef(i);
    agent.catalogRegister({
      Node: w.node,
      Address: w.address,
      TaggedAddresses: { lan: w.address, wan: w.address },
      NodeMeta: { 'consul-network-segment': '' },
      Service: {
        ID: w.serviceId,
        Service: SERVICE,
        Address: w.address,
        Port: w.port,
        Tags: ['datafusion', 'v1'],
        Meta: { version: '1.4.2' },
      },
      Checks: [
        { CheckID: 'serfHealth', Name: 'Serf Health Status', Status: 'passing', Output: 'Agent alive and reachable' },
        { CheckID: w.checkId, Name: 'worker health', Status: 'passing', ServiceID: w.serviceId, Output: 'HTTP 200' },
      ],
    });
    refs.push(w);
  }
  return refs;
}

/** Sets a worker's service check: one Consul write, which wakes the blocking queries. */
export function setHealth(dev: ConsulDevServer, w: WorkerRef, status: 'passing' | 'critical'): void {
  devAgent(dev).updateCheck(w.checkId, status, status === 'passing' ? 'HTTP 200' : 'HTTP 503', { node: w.node });
}

/** A dev server with `count` passing workers. DNS off unless asked for. */
export async function startCluster(
  count: number,
  options: ConsulDevServerOptions = {},
): Promise<{ dev: ConsulDevServer; workers: WorkerRef[] }> {
  const dev = await ConsulDevServer.start({ dns: false, ...options });
  // Registered before this function returns, i.e. before the event loop runs a request.
  const workers = registerWorkers(dev, count);
  return { dev, workers };
}

/** The query string the resolver sends by default (passing only, stale reads). */
export const HEALTH_QUERY = 'passing=1&stale=';

/** Fetches a path from `base` over `agent`: status and body bytes. */
export function httpGet(base: string, path: string, agent: Agent): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = get(`${base}${path}`, { agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}
