/**
 * An example coordinator process: embeds worker-resolver, and every couple of seconds plans,
 * routes and runs the example job (a two-stage GROUP BY) on the workers it discovers, then
 * checks the merged answer against one computed locally.
 *
 * Local run, against `worker-resolver demo`'s Consul or any agent with example workers:
 *
 *     CONSUL_HTTP_ADDR=http://127.0.0.1:8500 node --import tsx examples/coordinator.ts
 *
 * Environment (all optional): `CONSUL_HTTP_ADDR` and Consul's other variables;
 * `WORKER_SERVICE` (`datafusion-worker`); `COORDINATOR_LISTEN` (`127.0.0.1:9465`: its own
 * `/metrics` and `/v1/workers`); `JOB_EVERY_MS` (2000); `MAX_TASKS_PER_STAGE` (0 = the worker
 * count); `OTEL_EXPORTER_OTLP_ENDPOINT` (traces of each planned and routed stage).
 *
 * SIGTERM / SIGINT: stops after the job in progress and exits 0 within a few seconds; spans that
 * cannot be flushed then (an unreachable collector) are a warning, as in `worker-resolver serve`.
 *
 * The planning, routing, retry and merge logic lives in src/examples/coordinator.ts.
 */
import { NodeSDK } from '@opentelemetry/sdk-node';
import { trace } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import { createWorkerResolver, startSidecar } from 'worker-resolver';
import { formatJob, formatSnapshot, runJobs } from 'worker-resolver/examples';

const env = process.env;
/** The longest wait for the span flush at shutdown (the sidecar's bound, src/cli/otel.ts). */
const SHUTDOWN_TRACES_MS = 5_000;
const service = env['WORKER_SERVICE'] ?? 'datafusion-worker';
const [host = '127.0.0.1', port = '9465'] = (env['COORDINATOR_LISTEN'] ?? '127.0.0.1:9465').split(/:(?=\d+$)/);

// Traces only when asked for, through the standard OTEL_* variables the SDK reads itself.
const sdk = env['OTEL_EXPORTER_OTLP_ENDPOINT']
  ? new NodeSDK({ metricReaders: [], logRecordProcessors: [] })
  : undefined;
sdk?.start();

// 1. Embed the resolver: Consul blocking queries (address and token from CONSUL_HTTP_*),
//    metrics on our own registry, spans through the global tracer provider.
const registry = new Registry();
const resolver = createWorkerResolver({
  service,
  consul: {},
  registry,
  tracerProvider: trace.getTracerProvider(),
  maxTasksPerStage: Number(env['MAX_TASKS_PER_STAGE'] ?? 0),
});
// The first snapshot (possibly empty: then every stage runs locally until workers appear).
await resolver.ready({ timeoutMs: 60_000 });
console.log(formatSnapshot(resolver.snapshot()));
resolver.subscribe((snapshot) => console.log(formatSnapshot(snapshot)));

// 2. Serve /metrics (planner metrics included) and /v1/workers from this process.
const http = await startSidecar({ resolver, registry, host, port: Number(port) });
console.log(`coordinator: ${service} via Consul; metrics at ${http.url}/metrics`);

// 3. Run jobs until SIGTERM / SIGINT: each one plans and routes against one snapshot.
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
process.once('SIGINT', () => stop.abort());
await runJobs({
  resolver,
  intervalMs: Number(env['JOB_EVERY_MS'] ?? 2000),
  signal: stop.signal,
  onJob: (report) => console.log(formatJob(report)),
});

// 4. Stop in reverse order; nothing is left open, so the process exits by itself.
await http.close();
await resolver.close();
if (sdk !== undefined) await shutdownTraces(sdk, SHUTDOWN_TRACES_MS);

/**
 * Flushes the spans and stops the exporter, bounded by `timeoutMs`. A stop is never an error: a
 * collector that is unreachable (the SDK's shutdown rejects once its export retries give up) or
 * slow only loses spans, which is said once on stderr. After a timeout the exporter may still
 * hold a socket or a retry timer, so the process exits explicitly instead of waiting for it.
 */
async function shutdownTraces(tracing: NodeSDK, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const result = await Promise.race([tracing.shutdown().then(() => 'done' as const), timedOut]).catch(
    (err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      console.warn(`coordinator: spans not flushed at shutdown (trace export failed: ${message.split('\n')[0]})`);
      return 'failed' as const;
    },
  );
  clearTimeout(timer);
  if (result === 'timeout') {
    console.warn(`coordinator: spans not flushed at shutdown (trace export still running after ${timeoutMs} ms)`);
    process.exit(0);
  }
}
