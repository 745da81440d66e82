/**
 * The example worker: a small HTTP server that does real work for the example coordinator
 * and registers ITSELF in Consul, with a health check, through the `consul` npm package —
 * exactly what a DataFusion worker does in a Consul cluster.
 *
 * Lifecycle, and why in this order:
 * - start: listen first, then register. A registration that points at a closed port would
 *   route traffic to nothing until the first check fails.
 * - health: an HTTP check (Consul probes `GET /health`) or a TTL check (the worker reports
 *   `pass` itself, more often than the TTL). Consul starts a check as critical, so a new
 *   worker gets traffic only once it proved itself healthy.
 * - close (graceful, e.g. SIGTERM): deregister FIRST, so coordinators' blocking queries
 *   return at once and no new task arrives, then let in-flight tasks finish, then close.
 * - crash (the demo's failure): the socket vanishes, the registration stays; Consul notices
 *   through the check (connection refused, or the TTL expiring) and stops listing it.
 *
 * HTTP API: `GET /health`, `GET /` (identity), `POST /tasks/partial` `{ dataset, partitions }`
 * → `{ worker, groups }` (stage 1), `POST /tasks/final` `{ groups }` → `{ worker, groups }`
 * (stage 2). Bodies are validated; a bad one is a 400, never a crash.
 */
import http from 'node:http';
import Consul from 'consul';
import { aggregatePartitions, checkDatasetSpec, checkGroups, mergeGroups } from './dataset.js';

/** How Consul decides that this worker is healthy. */
export type HealthCheckKind = 'http' | 'ttl';

/** Options of {@link startExampleWorker}. */
export interface ExampleWorkerOptions {
  /** Consul HTTP address, e.g. `http://127.0.0.1:8500`. */
  readonly consul: string | URL;
  /** Consul ACL token (needs `service:write` on the service). */
  readonly token?: string;
  /** Consul service name. Default `datafusion-worker`. */
  readonly service?: string;
  /** Instance id, unique per Consul agent. Default `<service>-<port>`. */
  readonly id?: string;
  /** Listen address. Default `127.0.0.1`. */
  readonly host?: string;
  /** Listen port; 0 = ephemeral. Default 0. */
  readonly port?: number;
  /** Address registered in Consul and probed by the HTTP check. Default `host` (`127.0.0.1` for a wildcard host). */
  readonly advertise?: string;
  /** Default `http`. */
  readonly check?: HealthCheckKind;
  /** HTTP check interval, or TTL heartbeat period (the TTL is 3 periods). Default 1000. */
  readonly checkIntervalMs?: number;
  readonly tags?: readonly string[];
  readonly meta?: Readonly<Record<string, string>>;
  /** Simulated I/O time per task (a real scan reads files). Default 0. */
  readonly taskLatencyMs?: number;
  /** Receives one line per lifecycle event. Default: silent. */
  readonly log?: (line: string) => void;
}

/** A running example worker. */
export interface ExampleWorker {
  readonly id: string;
  readonly service: string;
  /** The URL coordinators reach it at (`http://advertise:port`). */
  readonly url: string;
  readonly port: number;
  readonly check: HealthCheckKind;
  /** `running` (maybe unhealthy or in maintenance), `crashed` (see {@link ExampleWorker.crash}) or `closed`. */
  readonly state: 'running' | 'crashed' | 'closed';
  /** Tasks answered since start. */
  readonly tasksServed: number;
  /** Makes the health check fail (HTTP: `/health` answers 503; TTL: reports `fail`) or pass again. */
  setHealthy(healthy: boolean): Promise<void>;
  /** Consul maintenance mode: the operator's way to drain a worker before a restart. */
  setMaintenance(enable: boolean, reason?: string): Promise<void>;
  /** Simulates a process crash: connections cut, no deregistration, heartbeats stop. */
  crash(): Promise<void>;
  /** Starts again after {@link ExampleWorker.crash} on the same port, and registers again, as a restarted process would. */
  restart(): Promise<void>;
  /** Graceful shutdown: deregister, drain in-flight tasks (at most 5 s), close. Idempotent. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 4 << 20;
const DRAIN_TIMEOUT_MS = 5000;

/** Starts a worker and registers it in Consul. Rejects (and leaves nothing open) if either fails. */
export async function startExampleWorker(options: ExampleWorkerOptions): Promise<ExampleWorker> {
  const worker = new Worker(options);
  try {
    await worker.start(options.port ?? 0);
  } catch (err) {
    await worker.close().catch(() => undefined);
    throw err;
  }
  return worker;
}

/** Builds a `consul` client for an `http(s)://host:port` address. */
function consulClient(address: string | URL, token: string | undefined): Consul {
  const url = new URL(String(address));
  const secure = url.protocol === 'https:';
  // `timeout` (ms, per request) is one of the package's default options although its typings
  // omit it; without it a hung agent would hang registration forever.
  const defaults = { timeout: 5000, ...(token === undefined ? {} : { token }) };
  return new Consul({ host: url.hostname, port: Number(url.port || (secure ? 443 : 80)), secure, defaults });
}

class Worker implements ExampleWorker {
  readonly service: string;
  readonly check: HealthCheckKind;
  id = '';
  url = '';
  port = 0;
  state: ExampleWorker['state'] = 'running';
  tasksServed = 0;
  private readonly consul: Consul;
  private readonly host: string;
  private readonly advertise: string;
  private readonly intervalMs: number;
  private readonly log: (line: string) => void;
  /** Answer of `/health` and of the TTL heartbeat. */
  private healthy = true;
  /** The listening server; undefined while crashed or closed. */
  private server: http.Server | undefined;
  /** TTL heartbeat; only set while running with a TTL check. */
  private heartbeat: NodeJS.Timeout | undefined;
  /** The close in progress or done. */
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ExampleWorkerOptions) {
    this.service = options.service ?? 'datafusion-worker';
    this.check = options.check ?? 'http';
    this.host = options.host ?? '127.0.0.1';
    const wildcard = this.host === '0.0.0.0' || this.host === '::';
    this.advertise = options.advertise ?? (wildcard ? '127.0.0.1' : this.host);
    this.intervalMs = options.checkIntervalMs ?? 1000;
    this.log = options.log ?? (() => undefined);
    this.consul = consulClient(options.consul, options.token);
  }

  async start(port: number): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    this.id = this.options.id ?? `${this.service}-${this.port}`;
    const host = this.advertise.includes(':') ? `[${this.advertise}]` : this.advertise;
    this.url = `http://${host}:${this.port}`;
    await this.register();
    this.state = 'running';
    this.healthy = true;
    if (this.check === 'ttl') {
      await this.report();
      this.heartbeat = setInterval(() => void this.report(), this.intervalMs);
      this.heartbeat.unref();
    }
    this.log(`${this.id} registered at ${this.url} (${this.check} check)`);
  }

  private async register(): Promise<void> {
    const checkId = `service:${this.id}`;
    const interval = `${this.intervalMs}ms`;
    await this.consul.agent.service.register({
      name: this.service,
      id: this.id,
      address: this.advertise,
      port: this.port,
      tags: [...(this.options.tags ?? [])],
      meta: { ...(this.options.meta ?? {}) },
      check:
        this.check === 'http'
          ? {
              checkid: checkId,
              name: 'HTTP GET /health',
              http: `${this.url}/health`,
              interval,
              timeout: interval,
              // A real Consul reaps a worker that stays critical (a crashed host) after this.
              deregistercriticalserviceafter: '1m',
            }
          : {
              checkid: checkId,
              name: 'TTL heartbeat',
              ttl: `${this.intervalMs * 3}ms`,
              timeout: interval,
              deregistercriticalserviceafter: '1m',
            },
    });
  }

  /** One TTL heartbeat. A failed report is logged, not thrown: the next tick retries. */
  private async report(): Promise<void> {
    const id = `service:${this.id}`;
    try {
      if (this.healthy) await this.consul.agent.check.pass({ id, note: 'heartbeat' });
      else await this.consul.agent.check.fail({ id, note: 'unhealthy' });
    } catch (err) {
      if (this.state === 'running') this.log(`${this.id} heartbeat failed: ${(err as Error).message}`);
    }
  }

  async setHealthy(healthy: boolean): Promise<void> {
    this.healthy = healthy;
    if (this.check === 'ttl' && this.state === 'running') await this.report();
  }

  async setMaintenance(enable: boolean, reason = 'drained by operator'): Promise<void> {
    await this.consul.agent.service.maintenance({ id: this.id, enable, reason });
  }

  async crash(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'crashed';
    this.stopServing();
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())));
    this.server = undefined;
  }

  async restart(): Promise<void> {
    if (this.state !== 'crashed') throw new Error(`cannot restart a worker that is ${this.state}`);
    await this.start(this.port);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const wasRunning = this.state === 'running';
      this.state = 'closed';
      clearInterval(this.heartbeat);
      if (wasRunning && this.id !== '') {
        try {
          await this.consul.agent.service.deregister(this.id);
        } catch (err) {
          this.log(`${this.id} deregistration failed: ${(err as Error).message}`);
        }
      }
      const server = this.server;
      if (server !== undefined) {
        const drained = new Promise<void>((resolve) => server.close(() => resolve()));
        const force = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS);
        force.unref();
        await drained;
        clearTimeout(force);
      }
      this.server = undefined;
      this.consul.destroy();
      this.log(`${this.id} deregistered and closed`);
    })();
    return this.closing;
  }

  private stopServing(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.server?.closeAllConnections();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown): void => {
      if (res.destroyed) return;
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json' });
      res.end(text);
    };
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/health')
        return send(this.healthy ? 200 : 503, this.healthy ? 'ok' : 'unhealthy');
      if (req.method === 'GET' && path === '/')
        return send(200, { id: this.id, service: this.service, tasks: this.tasksServed });
      if (req.method !== 'POST' || (path !== '/tasks/partial' && path !== '/tasks/final'))
        return send(404, 'not found');
      const body = (await readJson(req)) as Record<string, unknown> | null;
      if (typeof body !== 'object' || body === null) return send(400, 'the body must be a JSON object');
      const latency = this.options.taskLatencyMs ?? 0;
      if (latency > 0) await new Promise((resolve) => setTimeout(resolve, latency));
      let groups;
      if (path === '/tasks/partial') {
        const partitions: unknown = body['partitions'];
        if (!Array.isArray(partitions) || !partitions.every((p) => Number.isInteger(p))) {
          return send(400, 'partitions must be an array of integers');
        }
        groups = aggregatePartitions(checkDatasetSpec(body['dataset']), partitions as number[]);
      } else {
        groups = mergeGroups([checkGroups(body['groups'])]);
      }
      this.tasksServed += 1;
      return send(200, { worker: this.id, groups });
    } catch (err) {
      // Validation errors are the client's fault; anything else is ours.
      send(
        err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError ? 400 : 500,
        (err as Error).message,
      );
    }
  }
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new RangeError('body too large'));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new SyntaxError('the body is not valid JSON'));
      }
    });
  });
}
