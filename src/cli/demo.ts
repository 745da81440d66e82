/**
 * `worker-resolver demo` (= `npm start`): the whole story on one machine, all on 127.0.0.1.
 *
 * Starts the Consul dev server (HTTP + DNS), example workers that register themselves with
 * HTTP or TTL checks through the Consul HTTP API, a resolver, the sidecar (so `/metrics` and
 * `/v1/workers` can be looked at) and the example coordinator, which runs a small two-stage
 * aggregation every couple of seconds and checks its answer. Meanwhile workers get drained,
 * crash, fail their checks, join and leave on a schedule, and Consul itself has an outage
 * (the resolver falls back to DNS SRV and comes back).
 *
 * With `--consul URL` (or `CONSUL_HTTP_ADDR`) the same runs against that real agent instead
 * of the embedded dev server: the workers register there (under a service of the demo's own,
 * `worker-resolver-demo` unless `--service` says otherwise, so a real service is never
 * touched), its DNS interface is the fallback (asked from `/v1/agent/self` unless
 * `--consul-dns` names it), the Consul token and TLS variables are honoured, and the outage
 * event — which needs the dev server's fault injection — is left out. On exit every instance
 * the demo registered is deregistered again, crashed ones included.
 *
 * Shutdown (Ctrl-C, SIGTERM or `--duration`) stops things in the reverse order of their
 * start and leaves no handle behind, so the process exits by itself with status 0.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Registry } from 'prom-client';
import type { Logger } from '../events.js';
import { createWorkerResolver } from '../resolver.js';
import type { DiscoveringWorkerResolver } from '../resolver.js';
import { startSidecar } from '../sidecar.js';
import { DEMO_USAGE, parseDemoFlags } from './demo-flags.js';
import type { Env } from './demo-flags.js';
import { startOtel } from './otel.js';
import type { Sidecar } from '../sidecar.js';
import type { WorkerSnapshot } from '../snapshot.js';
import { connectRealConsul, startEmbeddedConsul } from './demo-consul.js';
import type { DemoConsul } from './demo-consul.js';
import { runJobs } from '../examples/coordinator.js';
import type { JobReport } from '../examples/coordinator.js';
import { DEFAULT_DATASET } from '../examples/dataset.js';
import { formatJob, formatSnapshot } from '../examples/report.js';
import type { WorkerNamer } from '../examples/report.js';
import { startExampleWorker } from '../examples/worker.js';
import type { ExampleWorker } from '../examples/worker.js';

/** Tries `preferred`, then an ephemeral port when it is taken: a demo must start even if 8500 is in use. */
async function onFreePort<T>(preferred: number, start: (port: number) => Promise<T>): Promise<T> {
  try {
    return await start(preferred);
  } catch (err) {
    if (preferred === 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    return start(0);
  }
}

/** Resolves once `resolver` lists `count` workers, after `timeoutMs` (the demo starts anyway), or on abort. */
function waitForWorkers(
  resolver: DiscoveringWorkerResolver,
  count: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      unsubscribe();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    signal.addEventListener('abort', done, { once: true });
    const unsubscribe = resolver.subscribe((s) => {
      if (s.workers.length >= count) done();
    });
    if (resolver.snapshot().workers.length >= count) done();
  });
}

/** A step of the schedule: what the terminal says, and what it does. */
interface DemoEvent {
  readonly say: string;
  readonly run: () => Promise<void> | void;
}

/**
 * The schedule of worker events, repeated in a cycle. Drain and crash come first so that a
 * short run (`--duration 10s`) already shows a worker leaving the set.
 */
function schedule(
  consul: DemoConsul,
  service: string,
  initial: readonly ExampleWorker[],
  startWorker: (n: number) => Promise<ExampleWorker>,
  idOf: (n: number) => string,
): DemoEvent[] {
  const n = initial.length;
  const [a, b, c] = [initial[0], initial[1 % n], initial[2 % n]] as [ExampleWorker, ExampleWorker, ExampleWorker];
  let joiner: ExampleWorker | undefined;
  const dev = consul.dev;
  // A real agent has no fault injection: its outage is left out of the schedule.
  const outage: DemoEvent[] =
    dev === undefined
      ? []
      : [
          {
            say: 'Consul outage: the next 6 health queries get HTTP 500 (watch the fallback to DNS SRV and back)',
            run: () => dev.failNext(6, { status: 500, path: `/v1/health/service/${service}` }),
          },
        ];
  return [
    { say: `${b.id} drained: Consul maintenance mode`, run: () => b.setMaintenance(true, 'demo: rolling restart') },
    {
      say: `${a.id} crashed: server gone, still registered; its ${a.check} check turns critical`,
      run: () => a.crash(),
    },
    { say: `${b.id} back from maintenance`, run: () => b.setMaintenance(false) },
    { say: `${idOf(n + 1)} joins (TTL check)`, run: async () => void (joiner = await startWorker(n + 1)) },
    { say: `${a.id} restarted: registers again`, run: () => a.restart() },
    {
      say: `${c.id} health check failing (${c.check === 'http' ? '/health answers 503' : 'TTL reports fail'})`,
      run: () => c.setHealthy(false),
    },
    { say: `${c.id} healthy again`, run: () => c.setHealthy(true) },
    ...outage,
    { say: `${idOf(n + 1)} leaves: deregisters, then drains`, run: () => joiner?.close() },
  ];
}

/**
 * Runs the demo until `--duration` elapses, or SIGINT / SIGTERM. Resolves with the exit
 * status: 0 after a clean stop, 1 when the demo could not start or a job's answer was wrong.
 * @throws {CliUsageError} on a bad flag, before anything is started.
 */
export async function runDemo(argv: readonly string[], env: Env = process.env): Promise<number> {
  const flags = parseDemoFlags(argv, env);
  if (flags === 'help') {
    process.stdout.write(`${DEMO_USAGE}\n`);
    return 0;
  }
  const { quiet } = flags;
  const started = Date.now();
  const stamp = (): string => {
    const s = (Date.now() - started) / 1000;
    return `[${String(Math.floor(s / 60)).padStart(2, '0')}:${(s % 60).toFixed(1).padStart(4, '0')}]`;
  };
  const print = (text: string): void => void process.stdout.write(`${text}\n`);
  const say = (text: string): void => {
    if (!quiet) print(`${stamp()} ${text.replaceAll('\n', `\n${' '.repeat(10)}`)}`);
  };

  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const durationTimer = flags.durationMs === undefined ? undefined : setTimeout(() => stop.abort(), flags.durationMs);
  // Cleanups in start order; run in reverse. Each one is awaited even if another failed.
  const cleanups: (() => Promise<void> | void)[] = [];
  const counts = { jobs: 0, ok: 0, mismatch: 0, failed: 0, retries: 0, changes: 0 };
  let status = 0;
  try {
    const base = flags.portBase;
    const port = (offset: number, fallback: number): number =>
      base === undefined ? fallback : base === 0 ? 0 : base + offset;
    const real = flags.consul;
    const consul =
      real === undefined
        ? await onFreePort(port(0, 8500), (p) => onFreePort(port(1, 8600), (d) => startEmbeddedConsul(p, d)))
        : await connectRealConsul(real, {
            dns: flags.consulDns,
            origin: flags.consulOrigin,
            env,
          });
    cleanups.push(() => consul.stop());
    const SERVICE = flags.service;
    // On a real agent the IDs say whose they are, so the final clean-up cannot hit someone else's instance.
    const idOf = (i: number): string => (real === undefined ? `worker-${i}` : `demo-worker-${i}`);
    const registered = new Set<string>();
    cleanups.push(() => consul.deregister([...registered]));

    const workers = new Map<string, ExampleWorker>();
    // Names by host:port, so DNS answers (ids `target:port`) read like Consul's.
    const nameOf: WorkerNamer = (url, id) => {
      const host = new URL(url).host;
      return [...workers.values()].find((w) => new URL(w.url).host === host)?.id ?? id ?? url;
    };
    cleanups.push(() => Promise.all([...workers.values()].map((w) => w.close())).then(() => undefined));
    const startWorker = async (i: number): Promise<ExampleWorker> => {
      const worker = await onFreePort(port(9 + i, 0), (p) =>
        startExampleWorker({
          consul: consul.httpAddr,
          ...(consul.token === undefined ? {} : { token: consul.token }),
          service: SERVICE,
          id: idOf(i),
          port: p,
          // Half the workers prove their health by being probed, half by heartbeats.
          check: i % 2 === 0 ? 'ttl' : 'http',
          tags: ['demo'],
          meta: { version: '1' },
          taskLatencyMs: 15,
        }),
      );
      workers.set(worker.id, worker);
      registered.add(worker.id);
      return worker;
    };
    const initial: ExampleWorker[] = [];
    for (let i = 1; i <= flags.workers; i += 1) initial.push(await startWorker(i));

    const registry = new Registry();
    const sidecarLogger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (m) => say(`sidecar   ${m}`),
      error: (m) => print(`${stamp()} sidecar   ${m}`),
    };
    const logger: Logger = {
      debug: () => undefined,
      info: (m) => say(`resolver  ${m}`),
      warn: (m) => say(`resolver  ${m}`),
      error: (m) => print(`${stamp()} resolver  ${m}`),
    };
    // Spans go to an OTLP collector only when the standard OTEL_* variables ask for it.
    const otel = await startOtel(process.env, logger);
    if (otel !== undefined) cleanups.push(() => otel.shutdown());
    const resolver = createWorkerResolver({
      service: SERVICE,
      // A short wait so the Consul outage event bites within seconds, not minutes.
      consul: { address: consul.httpAddr, waitMs: 10_000, backoff: { baseMs: 200, capMs: 2000 } },
      ...(consul.dnsAddr === undefined
        ? {}
        : { dns: { name: `_${SERVICE}._tcp.service.consul`, servers: [consul.dnsAddr], maxRefreshMs: 2000 } }),
      registry,
      logger,
      ...(otel === undefined ? {} : { tracerProvider: otel.tracerProvider }),
      // The user's own CONSUL_HTTP_TOKEN and friends are for their Consul, not the embedded one.
      env: real === undefined ? {} : env,
    });
    cleanups.push(() => resolver.close());
    await resolver.ready({ timeoutMs: 10_000, signal: stop.signal });
    await waitForWorkers(resolver, flags.workers, 10_000, stop.signal);

    const sidecar: Sidecar = await onFreePort(port(2, 9464), (p) =>
      startSidecar({ resolver, host: '127.0.0.1', port: p, registry, logger: sidecarLogger }),
    );
    cleanups.push(() => sidecar.close());

    print(
      [
        `worker-resolver demo: ${flags.workers} workers of service "${SERVICE}", all on 127.0.0.1`,
        `  ${consul.label.padEnd(17)}  ${consul.httpAddr}  (${consul.note})`,
        consul.dnsAddr === undefined
          ? '  Consul DNS         unknown: no DNS SRV fallback (name it with --consul-dns)'
          : `  Consul DNS         dig @${consul.dnsAddr.replace(/:(\d+)$/, ' -p $1')} _${SERVICE}._tcp.service.consul SRV`,
        `  sidecar            ${sidecar.url}`,
        `    workers          curl ${sidecar.url}/v1/workers`,
        `    long poll        curl '${sidecar.url}/v1/workers?index=1&wait=30s'`,
        `    metrics          curl ${sidecar.url}/metrics`,
        `  job                SELECT key, count(*), sum(v) FROM t GROUP BY key  (${DEFAULT_DATASET.partitions} partitions` +
          ` x ${DEFAULT_DATASET.rowsPerPartition} rows), 2 stages, every ${flags.jobEveryMs / 1000}s`,
        flags.durationMs === undefined
          ? '  Ctrl-C stops everything.'
          : `  Stops after ${flags.durationMs / 1000}s (or Ctrl-C).`,
        '',
      ].join('\n'),
    );

    let previous: WorkerSnapshot = resolver.snapshot();
    say(formatSnapshot(previous, undefined, nameOf));
    const unsubscribe = resolver.subscribe((s) => {
      counts.changes += 1;
      say(formatSnapshot(s, previous, nameOf));
      previous = s;
    });
    cleanups.push(unsubscribe);

    const events = schedule(consul, SERVICE, initial, startWorker, idOf);
    const chaos = (async () => {
      for (let step = 0; !stop.signal.aborted; step += 1) {
        await delay(flags.eventsEveryMs, undefined, { signal: stop.signal }).catch(() => undefined);
        if (stop.signal.aborted) break;
        const event = events[step % events.length] as DemoEvent;
        say(`event     ${event.say}`);
        try {
          await event.run();
        } catch (err) {
          say(`event     failed: ${(err as Error).message}`);
        }
      }
    })();

    const onJob = (report: JobReport): void => {
      counts.jobs += 1;
      counts.retries += report.retries;
      counts[report.status] += 1;
      const text = formatJob(report, nameOf);
      if (report.status === 'ok') say(text);
      else print(`${stamp()} ${text.replaceAll('\n', `\n${' '.repeat(10)}`)}`);
    };
    await runJobs({ resolver, intervalMs: flags.jobEveryMs, onJob, signal: stop.signal });
    await chaos;
  } catch (err) {
    if (!stop.signal.aborted) {
      process.stderr.write(`worker-resolver demo: ${(err as Error).message}\n`);
      status = 1;
    }
  } finally {
    clearTimeout(durationTimer);
    stop.abort();
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        process.stderr.write(`worker-resolver demo: while stopping: ${(err as Error).message}\n`);
      }
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  print(
    `\ndemo stopped after ${((Date.now() - started) / 1000).toFixed(1)}s: ${counts.jobs} jobs ` +
      `(${counts.ok} OK, ${counts.mismatch} mismatch, ${counts.failed} failed), ${counts.retries} task retries, ` +
      `${counts.changes} worker-set changes`,
  );
  return status === 0 && counts.mismatch === 0 ? 0 : status === 0 ? 1 : status;
}
