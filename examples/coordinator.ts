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
 * The planning, routing, retry and merge logic lives in src/examples/coordinator.ts.
 */
import { NodeSDK } from '@opentelemetry/sdk-node';
import { trace } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import { createWorkerResolver, startSidecar } from 'worker-resolver';
import { formatJob, formatSnapshot, runJobs } from 'worker-resolver/examples';

const env = process.env;
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
await sdk?.shutdown();
