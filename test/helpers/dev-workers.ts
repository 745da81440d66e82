/**
 * What many tests need around the Consul dev server: a logger that prints nothing, and example
 * workers registered with a passing TTL check (`worker-<n>` on 127.0.1.<n>:900<n> by default).
 */
import type { Logger } from '../../src/events.js';
import type { ConsulDevServer, ServiceDefinition } from '../../src/testing/index.js';

/** A logger that drops every line, for resolvers whose logs a test does not read. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** The registration fields a test may override (Consul's PascalCase keys). */
export type WorkerFields = Partial<ServiceDefinition>;

/**
 * Registers worker `n` of service `worker`: ID `worker-<n>`, address `127.0.1.<n>`, port `9000 + n`,
 * a passing TTL check `check-<n>` that does not expire during a test; `fields` override any of these.
 */
export function registerWorker(consul: ConsulDevServer, n: number, fields: WorkerFields = {}): void {
  consul.registerService({
    Name: 'worker',
    ID: `worker-${n}`,
    Address: `127.0.1.${n}`,
    Port: 9000 + n,
    Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
    ...fields,
  });
}

/** Registers workers 1..`count` with {@link registerWorker}. */
export function registerWorkers(consul: ConsulDevServer, count: number, fields: WorkerFields = {}): void {
  for (let n = 1; n <= count; n += 1) registerWorker(consul, n, fields);
}
