/**
 * `worker-resolver serve`: the resolver as a process next to a coordinator, serving the
 * sidecar HTTP API (see `../sidecar.ts`).
 *
 * Start order, so that a bad configuration starts nothing: parse flags and environment
 * (usage errors) → start the OpenTelemetry SDK if asked (no socket until it exports) →
 * create the resolver (it validates every option synchronously and throws
 * `InvalidOptionError` before any socket exists; the SDK is then shut down) → listen. A
 * listen failure (address in use) closes what was started and exits 1.
 *
 * Shutdown on SIGTERM or SIGINT: held long polls are answered with the current body, the
 * server closes, the resolver closes (aborting its own long poll), the SDK flushes, exit 0.
 * A second signal while that runs exits 1 at once.
 */
import { Registry } from 'prom-client';
import type { Logger } from '../events.js';
import { createWorkerResolver } from '../resolver.js';
import type { DiscoveringWorkerResolver } from '../resolver.js';
import { startSidecar } from '../sidecar.js';
import type { Sidecar } from '../sidecar.js';
import { diffWorkers } from '../worker-diff.js';
import { parseCli } from './config.js';
import { helpText } from './flags.js';
import { createCliLogger } from './logger.js';
import { startOtel } from './otel.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Most worker URLs named per "workers changed" log line (the counts are always complete). */
const MAX_LOGGED_URLS = 20;

/** A start-up failure that is not a usage error (exit 1). */
class StartError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Resolves with the first SIGTERM/SIGINT. Installed before anything async starts, so a
 * signal during start-up is not lost; a second signal exits 1 without waiting.
 */
function firstSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (received) {
        logger.error('second signal: exiting now', { signal });
        process.exit(1);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** Runs `serve` until a signal; returns the exit code. Throws usage and option errors (exit 2). */
export async function runServe(argv: readonly string[], env: Env = process.env): Promise<number> {
  const config = parseCli('serve', argv, env);
  if (config.help || config.resolver === undefined) {
    process.stdout.write(helpText('serve'));
    return 0;
  }
  const logger = createCliLogger(config.log, config.secrets);
  const signal = firstSignal(logger);
  const registry = new Registry();
  // Tracing first, so the first refresh is traced too; the SDK opens no socket until it
  // exports, and is shut down again if the options turn out to be invalid.
  const otel = await startOtel(env, logger);
  let resolver: DiscoveringWorkerResolver;
  try {
    resolver = createWorkerResolver({
      ...config.resolver,
      registry,
      logger,
      ...(otel === undefined ? {} : { tracerProvider: otel.tracerProvider }),
    });
  } catch (err) {
    await otel?.shutdown();
    throw err;
  }
  // Subscribed before any await, so not even the first publish goes unlogged.
  let previous = resolver.snapshot();
  resolver.subscribe((snapshot) => {
    const diff = diffWorkers(previous.workers, snapshot.workers);
    previous = snapshot;
    // Which workers, not only how many: what on-call greps for. Bounded, so a 10,000-worker
    // first snapshot stays one readable line.
    const urls = (ws: readonly { url: URL }[]): string[] => ws.slice(0, MAX_LOGGED_URLS).map((w) => w.url.href);
    logger.info('workers changed', {
      version: snapshot.version,
      source: snapshot.source,
      workers: snapshot.workers.length,
      added: diff.added.length,
      removed: diff.removed.length,
      updated: diff.updated.length,
      ...(diff.added.length > 0 ? { addedUrls: urls(diff.added) } : {}),
      ...(diff.removed.length > 0 ? { removedUrls: urls(diff.removed) } : {}),
    });
  });
  const { host, port } = config.listen;
  let sidecar: Sidecar;
  try {
    sidecar = await startSidecar({
      resolver,
      registry,
      logger,
      host,
      port,
      ...(otel === undefined ? {} : { tracerProvider: otel.tracerProvider }),
    });
  } catch (err) {
    await resolver.close();
    await otel?.shutdown();
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new StartError(`cannot listen on ${host}:${port}: ${why}`, 'ERR_LISTEN');
  }

  const consul = config.resolver.consul;
  logger.info('worker-resolver serving', {
    service: resolver.service,
    url: sidecar.url,
    // Validated by createWorkerResolver: an address with credentials was rejected there.
    consul: consul === undefined ? false : String(consul.address ?? env['CONSUL_HTTP_ADDR'] ?? 'http://127.0.0.1:8500'),
    dns: config.resolver.dns?.name ?? false,
    tracing: otel !== undefined,
  });

  logger.info('shutting down', { signal: await signal, openLongPolls: sidecar.openLongPolls() });
  await sidecar.close();
  await resolver.close();
  await otel?.shutdown();
  logger.info('stopped');
  return 0;
}
