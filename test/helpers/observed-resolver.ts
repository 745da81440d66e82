/**
 * A resolver wired the way an operator runs it — metrics registry, in-memory span exporter,
 * a recording logger — so fault tests can assert what the operator would see.
 */
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import type { Counter } from 'prom-client';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver, Logger, WorkerResolverOptions } from '../../src/index.js';

export interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly fields: Record<string, unknown> | undefined;
}

export interface Observed {
  readonly resolver: DiscoveringWorkerResolver;
  readonly registry: Registry;
  readonly exporter: InMemorySpanExporter;
  readonly logs: LogLine[];
  /** Sum of worker_resolver_source_errors_total for this error_type (any source). */
  errors(errorType: string): Promise<number>;
  /** Finished non-CLIENT spans (one per failed attempt) with status ERROR and this error.type. */
  errorSpans(errorType: string): ReadableSpan[];
  /** Everything an operator can read: exposition, spans, logs. */
  everything(): Promise<string>;
}

export function observedResolver(options: WorkerResolverOptions): Observed {
  const registry = new Registry();
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const logs: LogLine[] = [];
  const record =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logs.push({ level, message, fields });
    };
  const logger: Logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };
  const resolver = createWorkerResolver({ logger, ...options, registry, tracerProvider });
  return {
    resolver,
    registry,
    exporter,
    logs,
    async errors(errorType) {
      const metric = registry.getSingleMetric('worker_resolver_source_errors_total') as Counter | undefined;
      if (metric === undefined) return 0;
      const { values } = await metric.get();
      return values.filter((v) => v.labels['error_type'] === errorType).reduce((sum, v) => sum + v.value, 0);
    },
    errorSpans(errorType) {
      return (
        exporter
          .getFinishedSpans()
          // One per failed attempt: the refresh spans (each failed Consul request also has a CLIENT span).
          .filter(
            (s) =>
              s.kind !== SpanKind.CLIENT &&
              s.status.code === SpanStatusCode.ERROR &&
              s.attributes['error.type'] === errorType,
          )
      );
    },
    async everything() {
      const spans = exporter
        .getFinishedSpans()
        .map((s) => JSON.stringify({ n: s.name, a: s.attributes, e: s.events, s: s.status }));
      return [await registry.metrics(), ...spans, ...logs.map((l) => JSON.stringify(l))].join('\n');
    },
  };
}
