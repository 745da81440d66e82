/**
 * OpenTelemetry traces of a resolver: an observer that turns what the engine reports (refreshes,
 * publishes, failovers, staleness, the guard) and what the planner does into spans. It uses
 * `@opentelemetry/api` only and an injected `TracerProvider`: the library never registers a
 * global provider or context manager. The contract is docs/design.md §7.
 *
 * ## Spans
 *  - `worker_resolver.refresh`: one per source request the engine processed. The engine
 *    reports a request after it completed, synchronously before it diffs and publishes; the
 *    span is opened then and ended in a microtask, i.e. after that synchronous processing.
 *    A non-blocking request's span starts when the request started (`now - durationMs`).
 *    A blocking long poll's span does NOT cover the wait (minutes of nothing, which would
 *    drown every latency view): it covers the processing only, and the wait is the
 *    `worker_resolver.request.duration_ms` attribute.
 *  - `GET` (kind CLIENT, OTel HTTP semantic conventions: `http.request.method`,
 *    `server.address`, `server.port`, `url.full` without its query, `http.response.status_code`):
 *    the Consul request itself, with its real start and end. A non-blocking request's client
 *    span is a child of its refresh span; a long poll's is a root span of its own (it covers
 *    the wait, which the refresh span does not) and the refresh span links to it.
 *  - `DNS SRV` / `DNS A` / `DNS AAAA` (kind CLIENT): each DNS exchange of a lookup (one
 *    server, one transport), a child of its refresh span, placed at its offset in the lookup;
 *    `dns.question.name`, `server.address`, `server.port`, `network.transport`, the rcode.
 *  - `worker_resolver.publish`: a publish that happened outside a refresh span (damped
 *    publishes fire from a timer; the static set is published at start).
 *  - `worker_resolver.failover`, `worker_resolver.stale_change`, `worker_resolver.guard_change`.
 *  - `worker_resolver.plan_stage` and `worker_resolver.route_stage`, via the planner.
 *
 * ## Failures
 * Status ERROR with the error's message (messages never contain secrets, see
 * errors.ts), `error.type` = the bounded error type, and the stable code.
 */
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import type { Attributes, Context, Span, Tracer, TracerProvider } from '@opentelemetry/api';
import { InvalidOptionError, WorkerResolverError } from './errors.js';
import type { ResolverObserver } from './events.js';
import type { RouteOptions, StagePlan } from './planner.js';
import * as attr from './semconv.js';
import { packageVersion } from './version.js';
import type { Worker, WorkerDiff, WorkerSnapshot } from './snapshot.js';
import type { DnsQueryInfo, RequestInfo, SourceOutcome } from './source.js';

/** Options of {@link createResolverTracing}. */
export interface ResolverTracingOptions {
  /** Where tracers come from (e.g. the SDK's `NodeTracerProvider`, or `trace.getTracerProvider()`). */
  readonly tracerProvider: TracerProvider;
  /** The worker service: the `worker_resolver.service` attribute of every span. */
  readonly service: string;
  /** Most `worker.added` + `worker.removed` events on one span; the rest are counted. Default 50. */
  readonly maxWorkerEvents?: number;
}

/** A stage to plan, as `planStage` takes it. */
export interface StageRequest {
  readonly stageId: string | number;
  readonly desiredTasks: number;
}

/** The tracing of one resolver; pass it in the resolver's `observers`. */
export interface ResolverTracing extends ResolverObserver {
  /** The `worker_resolver.service` attribute value. */
  readonly service: string;
  /** Runs `plan` inside a `worker_resolver.plan_stage` span (active, so it nests under the caller's span). */
  tracePlan(snapshot: WorkerSnapshot, stage: StageRequest, plan: () => StagePlan): StagePlan;
  /** Runs `route` inside a `worker_resolver.route_stage` span. */
  traceRoute(snapshot: WorkerSnapshot, options: RouteOptions, route: () => readonly URL[]): readonly URL[];
}

/** The refresh span still open while the engine processes its outcome. */
interface OpenRefresh {
  readonly span: Span;
}

/** Marks a span as failed: status ERROR, `error.type`, code and HTTP status where known. */
function recordError(span: Span, err: unknown): void {
  if (err instanceof WorkerResolverError) {
    span.setAttribute(attr.ATTR_ERROR_TYPE, err.errorType);
    span.setAttribute(attr.ATTR_ERROR_CODE, err.code);
    if (err.status !== undefined) span.setAttribute(attr.ATTR_HTTP_RESPONSE_STATUS_CODE, err.status);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  } else if (err instanceof InvalidOptionError) {
    // ERR_INVALID_OPTION maps to `other` in the ErrorType enum; the code says which.
    span.setAttribute(attr.ATTR_ERROR_TYPE, 'other');
    span.setAttribute(attr.ATTR_ERROR_CODE, err.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  } else {
    // A foreign error's message is not ours to vouch for (it could carry anything): keep its name only.
    const name = err instanceof Error ? err.name : typeof err;
    span.setAttribute(attr.ATTR_ERROR_TYPE, attr.ERROR_TYPE_VALUE_OTHER);
    span.setStatus({ code: SpanStatusCode.ERROR, message: name });
  }
}

/** A number attribute only if it is one (bad input is reported by the planner, not by a broken attribute). */
function numeric(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function snapshotAttributes(snapshot: WorkerSnapshot): Attributes {
  return {
    [attr.ATTR_SNAPSHOT_VERSION]: snapshot.version,
    [attr.ATTR_WORKERS_COUNT]: snapshot.workers.length,
    [attr.ATTR_SOURCE]: snapshot.source,
  };
}

/**
 * Creates the tracing observer of one resolver.
 * @throws {InvalidOptionError} on a bad option.
 */
export function createResolverTracing(options: ResolverTracingOptions): ResolverTracing {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', 'must be an object');
  const provider: unknown = options.tracerProvider;
  if (
    typeof provider !== 'object' ||
    provider === null ||
    typeof (provider as TracerProvider).getTracer !== 'function'
  ) {
    throw new InvalidOptionError('tracerProvider', 'must be an OpenTelemetry TracerProvider');
  }
  if (typeof options.service !== 'string' || options.service === '') {
    throw new InvalidOptionError('service', 'must be a non-empty string');
  }
  const maxEvents = options.maxWorkerEvents ?? 50;
  if (!Number.isInteger(maxEvents) || maxEvents < 0) {
    throw new InvalidOptionError('maxWorkerEvents', 'must be an integer >= 0');
  }
  const service = options.service;
  const tracer: Tracer = options.tracerProvider.getTracer(attr.SCOPE_NAME, packageVersion());
  const base = { [attr.ATTR_SERVICE]: service };
  /** The refresh span being processed; only set between an onRefresh and its microtask. */
  let open: OpenRefresh | undefined;

  const endOpen = (): void => {
    open?.span.end();
    open = undefined;
  };

  /** Child spans of an event go under the open refresh span, if the event happened while processing it. */
  const parentContext = () => (open === undefined ? context.active() : trace.setSpan(context.active(), open.span));

  const instantSpan = (name: string, attributes: Attributes): Span =>
    tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes: { ...base, ...attributes } }, parentContext());

  /** A CLIENT span that already happened: started and ended at its real times, ERROR with `error` when given. */
  const pastClientSpan = (
    name: string,
    start: number,
    durationMs: number,
    attributes: Attributes,
    error: WorkerResolverError | undefined,
    parent: Context,
  ): Span => {
    const span = tracer.startSpan(
      name,
      { kind: SpanKind.CLIENT, startTime: start, attributes: { ...base, ...attributes } },
      parent,
    );
    if (error !== undefined) recordError(span, error);
    span.end(start + durationMs);
    return span;
  };

  /** The CLIENT span of one source HTTP request. */
  const clientSpan = (outcome: SourceOutcome, start: number, parent: Context): Span => {
    const request = outcome.request as RequestInfo;
    const status = outcome.ok ? 200 : outcome.error.status;
    const attributes: Attributes = {
      [attr.ATTR_HTTP_REQUEST_METHOD]: request.method,
      [attr.ATTR_SERVER_ADDRESS]: request.serverAddress,
      [attr.ATTR_SERVER_PORT]: request.serverPort,
      [attr.ATTR_URL_FULL]: request.url,
      [attr.ATTR_BLOCKING]: outcome.blocking,
      ...(status === undefined ? {} : { [attr.ATTR_HTTP_RESPONSE_STATUS_CODE]: status }),
    };
    const error = outcome.ok ? undefined : outcome.error;
    return pastClientSpan(request.method, start, outcome.durationMs, attributes, error, parent);
  };

  /**
   * The CLIENT span of one DNS exchange (one server, one transport), placed in the lookup's
   * window; no answer or an error rcode is status ERROR (the client's own error). NXDOMAIN is
   * an answer.
   */
  const dnsSpan = (query: DnsQueryInfo, lookupStart: number, parent: Context): void => {
    const attributes: Attributes = {
      [attr.ATTR_DNS_QUESTION_NAME]: query.name,
      [attr.ATTR_DNS_QUESTION_TYPE]: query.type,
      [attr.ATTR_SERVER_ADDRESS]: query.serverAddress,
      [attr.ATTR_SERVER_PORT]: query.serverPort,
      [attr.ATTR_NETWORK_TRANSPORT]: query.transport,
      ...(query.rcode === undefined ? {} : { [attr.ATTR_DNS_RCODE]: query.rcode }),
    };
    const start = lookupStart + query.startOffsetMs;
    pastClientSpan(`DNS ${query.type}`, start, query.durationMs, attributes, query.error, parent);
  };

  const addWorkerEvents = (span: Span, diff: WorkerDiff): void => {
    let budget = maxEvents;
    let dropped = 0;
    const emit = (name: string, workers: readonly Worker[]): void => {
      for (const w of workers) {
        if (budget === 0) {
          dropped += 1;
          continue;
        }
        budget -= 1;
        span.addEvent(name, {
          [attr.ATTR_WORKER_URL]: w.url.href,
          [attr.ATTR_WORKER_ID]: w.id,
          [attr.ATTR_WORKER_NODE]: w.node,
        });
      }
    };
    emit('worker.added', diff.added);
    emit('worker.removed', diff.removed);
    if (dropped > 0) span.setAttribute(attr.ATTR_WORKER_EVENTS_DROPPED, dropped);
  };

  return {
    service,

    onRefresh({ outcome, rejected, active }) {
      endOpen();
      const attributes: Attributes = {
        ...base,
        [attr.ATTR_SOURCE]: outcome.source,
        [attr.ATTR_OUTCOME]: attr.refreshOutcome(outcome),
        [attr.ATTR_BLOCKING]: outcome.blocking,
        [attr.ATTR_ACTIVE]: active,
        [attr.ATTR_REQUEST_DURATION_MS]: outcome.durationMs,
        // Filled in by onPublish when this answer is published; 0 says "processed, nothing changed".
        [attr.ATTR_WORKERS_ADDED]: 0,
        [attr.ATTR_WORKERS_REMOVED]: 0,
      };
      if (outcome.ok) {
        if (outcome.index !== undefined) attributes[attr.ATTR_CONSUL_INDEX] = outcome.index;
        if (!outcome.unchanged) attributes[attr.ATTR_WORKERS_COUNT] = outcome.workers.length;
        attributes[attr.ATTR_WORKERS_REJECTED] = rejected;
      }
      const now = Date.now();
      const requestStart = now - outcome.durationMs;
      const startTime = outcome.blocking ? undefined : requestStart;
      // A long poll's client span covers the wait: its own root, linked from the refresh span.
      const pollSpan =
        outcome.request !== undefined && outcome.blocking
          ? clientSpan(outcome, requestStart, context.active())
          : undefined;
      const span = tracer.startSpan('worker_resolver.refresh', {
        kind: SpanKind.INTERNAL,
        attributes,
        ...(startTime === undefined ? {} : { startTime }),
        ...(pollSpan === undefined ? {} : { links: [{ context: pollSpan.spanContext() }] }),
      });
      if (!outcome.ok) recordError(span, outcome.error);
      if (outcome.request !== undefined && !outcome.blocking) {
        clientSpan(outcome, requestStart, trace.setSpan(context.active(), span));
      }
      for (const query of outcome.dnsQueries ?? []) {
        dnsSpan(query, requestStart, trace.setSpan(context.active(), span));
      }
      const entry: OpenRefresh = { span };
      open = entry;
      // The engine diffs and publishes synchronously after this callback returns.
      queueMicrotask(() => {
        if (open === entry) endOpen();
      });
    },

    onPublish({ snapshot, diff }) {
      const attributes: Attributes = {
        [attr.ATTR_SNAPSHOT_VERSION]: snapshot.version,
        [attr.ATTR_WORKERS_COUNT]: snapshot.workers.length,
        [attr.ATTR_WORKERS_ADDED]: diff.added.length,
        [attr.ATTR_WORKERS_REMOVED]: diff.removed.length,
        [attr.ATTR_WORKERS_UPDATED]: diff.updated.length,
      };
      if (open !== undefined) {
        open.span.setAttributes(attributes);
        addWorkerEvents(open.span, diff);
        return;
      }
      const span = instantSpan('worker_resolver.publish', { ...attributes, [attr.ATTR_SOURCE]: snapshot.source });
      if (snapshot.consulIndex !== undefined) span.setAttribute(attr.ATTR_CONSUL_INDEX, snapshot.consulIndex);
      addWorkerEvents(span, diff);
      span.end();
    },

    onFailover({ from, to, reason }) {
      instantSpan('worker_resolver.failover', {
        [attr.ATTR_FAILOVER_FROM]: from,
        [attr.ATTR_FAILOVER_TO]: to,
        [attr.ATTR_FAILOVER_REASON]: reason,
      }).end();
    },

    onStaleChange({ stale, snapshot }) {
      instantSpan('worker_resolver.stale_change', { [attr.ATTR_STALE]: stale, ...snapshotAttributes(snapshot) }).end();
    },

    onGuardChange({ active, reported, kept }) {
      instantSpan('worker_resolver.guard_change', {
        [attr.ATTR_GUARD_ACTIVE]: active,
        [attr.ATTR_GUARD_REPORTED]: reported,
        [attr.ATTR_GUARD_KEPT]: kept,
      }).end();
    },

    tracePlan(snapshot, stage, plan) {
      const attributes: Attributes = {
        ...base,
        ...snapshotAttributes(snapshot),
        [attr.ATTR_STAGE_ID]: String(stage.stageId),
      };
      const desired = numeric(stage.desiredTasks);
      if (desired !== undefined) attributes[attr.ATTR_STAGE_DESIRED_TASKS] = desired;
      return tracer.startActiveSpan('worker_resolver.plan_stage', { kind: SpanKind.INTERNAL, attributes }, (span) => {
        try {
          const result = plan();
          span.setAttributes({
            [attr.ATTR_STAGE_TASK_CAP]: result.cap,
            [attr.ATTR_STAGE_PLANNED_TASKS]: result.plannedTasks,
            [attr.ATTR_STAGE_CAPPED]: result.capped,
          });
          return result;
        } catch (err) {
          recordError(span, err);
          throw err;
        } finally {
          span.end();
        }
      });
    },

    traceRoute(snapshot, routeOptions, route) {
      const attributes: Attributes = {
        ...base,
        ...snapshotAttributes(snapshot),
        [attr.ATTR_STAGE_ID]: String(routeOptions.stageId),
        [attr.ATTR_QUERY_ID]: String(routeOptions.queryId),
        [attr.ATTR_ROUTE_STRATEGY]: routeOptions.strategy ?? 'round-robin',
      };
      const count = numeric(routeOptions.taskCount);
      if (count !== undefined) attributes[attr.ATTR_ROUTE_TASK_COUNT] = count;
      return tracer.startActiveSpan('worker_resolver.route_stage', { kind: SpanKind.INTERNAL, attributes }, (span) => {
        try {
          const urls = route();
          span.setAttribute(attr.ATTR_ROUTE_DISTINCT_WORKERS, new Set(urls.map((u) => u.href)).size);
          return urls;
        } catch (err) {
          recordError(span, err);
          throw err;
        } finally {
          span.end();
        }
      });
    },
  };
}
