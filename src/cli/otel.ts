/**
 * OpenTelemetry SDK wiring for the CLI. The library only depends on `@opentelemetry/api` and
 * takes a tracer provider; the process that runs it (here, `serve`) owns the SDK.
 *
 * The SDK is started only when the standard variables ask for traces
 * (`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
 * `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` win), and then configured by the
 * other standard `OTEL_*` variables, which it reads from `process.env` itself. Only traces:
 * metrics are served to Prometheus by the sidecar, so the SDK's metric and log pipelines (on
 * by default in sdk-node) are turned off, and no auto-instrumentation is loaded.
 *
 * The SDK module is imported only when needed: it is large, and `--help` should stay fast.
 */
import { DiagLogLevel, diag, trace } from '@opentelemetry/api';
import type { TracerProvider } from '@opentelemetry/api';
import type { Logger } from '../events.js';

type Env = Readonly<Record<string, string | undefined>>;

/** A started SDK. */
export interface OtelHandle {
  /** The provider to pass to `createWorkerResolver` (the API's global one, which the SDK registered). */
  readonly tracerProvider: TracerProvider;
  /** Flushes pending spans and stops the exporters; bounded by `timeoutMs`. */
  shutdown(timeoutMs?: number): Promise<void>;
}

function set(env: Env, name: string): boolean {
  const v = env[name];
  return v !== undefined && v.trim() !== '';
}

/**
 * One readable line from an SDK diagnostic. Exporters report a failed export as a message plus
 * an error object, or as the error serialised to JSON (stack included): keep the message and
 * the error's own message and code, never a stack.
 */
export function diagLine(message: string, args: readonly unknown[]): string {
  const describe = (value: unknown): string | undefined => {
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code;
      return `${value.message}${typeof code === 'string' ? ` (${code})` : ''}`;
    }
    if (typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string') {
      const v = value as { message: string; code?: unknown };
      return `${v.message}${typeof v.code === 'string' || typeof v.code === 'number' ? ` (${String(v.code)})` : ''}`;
    }
    if (typeof value === 'string') {
      const trimmed = value.trim();
      if (trimmed.startsWith('{')) {
        try {
          return describe(JSON.parse(trimmed));
        } catch {
          // not JSON: fall through
        }
      }
      return trimmed.split('\n')[0];
    }
    return undefined;
  };
  const parts = [describe(message) ?? '', ...args.map(describe)].filter(
    (p): p is string => p !== undefined && p !== '',
  );
  return [...new Set(parts)].join(': ').slice(0, 500);
}

/** True when the environment asks for traces. */
export function otelRequested(env: Env): boolean {
  if (/^true$/i.test(env['OTEL_SDK_DISABLED'] ?? '')) return false;
  const exporters = (env['OTEL_TRACES_EXPORTER'] ?? '').split(',').map((s) => s.trim());
  if (exporters.length === 1 && exporters[0] === 'none') return false;
  return (
    set(env, 'OTEL_TRACES_EXPORTER') ||
    set(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') ||
    set(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
  );
}

/**
 * Starts the SDK when {@link otelRequested}; resolves undefined otherwise. `service.name`
 * defaults to `worker-resolver` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` set it.
 * The SDK's own diagnostics (an unreachable collector, a bad variable) go to `logger` at warn.
 */
export async function startOtel(env: Env, logger: Logger): Promise<OtelHandle | undefined> {
  if (!otelRequested(env)) return undefined;
  diag.setLogger(
    {
      error: (message: string, ...args: unknown[]) => logger.warn(`opentelemetry: ${diagLine(message, args)}`),
      warn: (message: string, ...args: unknown[]) => logger.warn(`opentelemetry: ${diagLine(message, args)}`),
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    DiagLogLevel.WARN,
  );
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const named = set(env, 'OTEL_SERVICE_NAME') || /(^|,)\s*service\.name=/.test(env['OTEL_RESOURCE_ATTRIBUTES'] ?? '');
  const sdk = new NodeSDK({
    ...(named ? {} : { serviceName: 'worker-resolver' }),
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  // Nothing is logged here: a usage error found after this point must stay the only stderr line.
  sdk.start();
  let stopping: Promise<void> | undefined;
  return {
    tracerProvider: trace.getTracerProvider(),
    shutdown(timeoutMs = 5_000): Promise<void> {
      stopping ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), timeoutMs);
        });
        const result = await Promise.race([sdk.shutdown().then(() => 'done' as const), timeout]).catch(
          (err: unknown) => {
            logger.warn('opentelemetry shutdown failed', { error: err });
            return 'failed' as const;
          },
        );
        clearTimeout(timer);
        if (result === 'timeout') logger.warn('opentelemetry shutdown timed out; spans may be lost', { timeoutMs });
      })();
      return stopping;
    },
  };
}
