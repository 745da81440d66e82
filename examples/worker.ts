/**
 * An example worker process: serves the example job's tasks and registers itself in Consul
 * with a health check; deregisters on SIGTERM / SIGINT before it stops (a graceful stop,
 * e.g. a rolling restart, never routes a task to a closing worker).
 *
 * Local run, next to `worker-resolver demo` or any Consul agent:
 *
 *     CONSUL_HTTP_ADDR=http://127.0.0.1:8500 node --import tsx examples/worker.ts
 *
 * Environment (all optional):
 * - `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`: the agent to register with (Consul's own variables).
 * - `WORKER_SERVICE` (`datafusion-worker`), `WORKER_ID` (`<service>-<port>`).
 * - `WORKER_LISTEN` (`127.0.0.1:0`): where to listen; `0.0.0.0:8080` in a container.
 * - `WORKER_ADVERTISE`: the address other hosts reach this worker at, registered in Consul
 *   and probed by the health check. Default: the listen address, or the host name when
 *   listening on every interface (in docker compose, the container's name resolves).
 * - `WORKER_CHECK` (`http` or `ttl`), `WORKER_TAGS` (comma-separated).
 *
 * The logic (registration, health check, task handlers) lives in src/examples/worker.ts.
 */
import { hostname } from 'node:os';
import { startExampleWorker } from 'worker-resolver/examples';

const env = process.env;
const listen = env['WORKER_LISTEN'] ?? '127.0.0.1:0';
const colon = listen.lastIndexOf(':');
const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
const port = Number(listen.slice(colon + 1));
if (colon < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
  throw new TypeError(`WORKER_LISTEN must be host:port (got "${listen}")`);
}
const check = env['WORKER_CHECK'] ?? 'http';
if (check !== 'http' && check !== 'ttl') throw new TypeError('WORKER_CHECK must be http or ttl');
const wildcard = host === '0.0.0.0' || host === '::';

// Signal handlers first: the worker logs "registered" (and may pass its TTL check) before
// startExampleWorker returns, and a SIGTERM in that window must still drain, not kill.
const state: { worker?: Awaited<ReturnType<typeof startExampleWorker>>; stopRequested: boolean } = {
  stopRequested: false,
};
// Stop on the first signal; a second one falls through to Node's default (exit at once).
const stop = (): void => {
  const w = state.worker;
  if (w === undefined) {
    state.stopRequested = true;
    return;
  }
  w.close().then(
    () => (process.exitCode = 0),
    (err: unknown) => {
      console.error(`worker ${w.id}: ${String(err)}`);
      process.exitCode = 1;
    },
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

state.worker = await startExampleWorker({
  consul: env['CONSUL_HTTP_ADDR'] ?? 'http://127.0.0.1:8500',
  ...(env['CONSUL_HTTP_TOKEN'] ? { token: env['CONSUL_HTTP_TOKEN'] } : {}),
  ...(env['WORKER_SERVICE'] ? { service: env['WORKER_SERVICE'] } : {}),
  ...(env['WORKER_ID'] ? { id: env['WORKER_ID'] } : {}),
  host,
  port,
  advertise: env['WORKER_ADVERTISE'] ?? (wildcard ? hostname() : host),
  check,
  tags: (env['WORKER_TAGS'] ?? 'example').split(',').filter((t) => t !== ''),
  log: (line) => console.log(line),
});
if (state.stopRequested) stop();
