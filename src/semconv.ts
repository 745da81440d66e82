/**
 * Attribute names used on spans, in one place (as OpenTelemetry JS does): the few standard
 * semantic-convention names are copied here rather than depending on
 * `@opentelemetry/semantic-conventions`, and the `worker_resolver.*` names are this
 * package's own. Renaming one is a breaking change for anyone querying traces.
 */
import type { SourceOutcome } from './source.js';

/** Standard: the class of error (OTel semconv `error.type`); here the bounded `ErrorType` enum. */
export const ATTR_ERROR_TYPE = 'error.type';
/** Standard fallback value of `error.type` when the error is not one of ours. */
export const ERROR_TYPE_VALUE_OTHER = '_OTHER';
/** Standard: HTTP status of the answer behind an error (OTel semconv `http.response.status_code`). */
export const ATTR_HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';
/** Standard (HTTP semconv): the request method. */
export const ATTR_HTTP_REQUEST_METHOD = 'http.request.method';
/** Standard (HTTP semconv): the matched route template of a server span, e.g. `/v1/workers`. */
export const ATTR_HTTP_ROUTE = 'http.route';
/** Standard (URL semconv): the full request URL (here without its query string). */
export const ATTR_URL_FULL = 'url.full';
/** Standard (URL semconv): the path of the request URL. */
export const ATTR_URL_PATH = 'url.path';
/** Standard (URL semconv): the scheme of the request URL. */
export const ATTR_URL_SCHEME = 'url.scheme';
/** Standard: the server's address (host name or IP) — the listening side on a server span, the peer on a client span. */
export const ATTR_SERVER_ADDRESS = 'server.address';
/** Standard: the server's port. */
export const ATTR_SERVER_PORT = 'server.port';
/** Standard (network semconv): `udp` or `tcp`, on a DNS client span. */
export const ATTR_NETWORK_TRANSPORT = 'network.transport';
/** OTel semconv (DNS, development): the name asked for, on a DNS client span. */
export const ATTR_DNS_QUESTION_NAME = 'dns.question.name';
/** DNS client span: the record type asked for (`SRV`, `A`, `AAAA`). */
export const ATTR_DNS_QUESTION_TYPE = 'worker_resolver.dns.question.type';
/** DNS client span: the answer's rcode (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, …), when there was an answer. */
export const ATTR_DNS_RCODE = 'worker_resolver.dns.rcode';
/** Sidecar: the request is a long poll (`index` given); its span covers the hold. */
export const ATTR_LONG_POLL = 'worker_resolver.long_poll';

/** The discovered worker service (not `service.name`: that names the process emitting the span). */
export const ATTR_SERVICE = 'worker_resolver.service';
/** The source of an answer or snapshot: `consul`, `dns`, `static`. */
export const ATTR_SOURCE = 'worker_resolver.source';
/** `success`, `unchanged` or `error`: same values as the metrics' `outcome` label. */
export const ATTR_OUTCOME = 'worker_resolver.outcome';
/** True if the request was a blocking (long-poll) query. */
export const ATTR_BLOCKING = 'worker_resolver.blocking';
/** Duration of the source request in ms; for a blocking request this is mostly the wait, which the span does not cover. */
export const ATTR_REQUEST_DURATION_MS = 'worker_resolver.request.duration_ms';
/** Consul's `X-Consul-Index` of the answer. */
export const ATTR_CONSUL_INDEX = 'worker_resolver.consul.index';
/** Workers in the source's answer (refresh) or in the snapshot (plan, route, publish). */
export const ATTR_WORKERS_COUNT = 'worker_resolver.workers.count';
/** Workers added by the publish this span saw. */
export const ATTR_WORKERS_ADDED = 'worker_resolver.workers.added';
/** Workers removed by the publish this span saw. */
export const ATTR_WORKERS_REMOVED = 'worker_resolver.workers.removed';
/** Workers whose tags, meta, status or weight changed in the publish this span saw. */
export const ATTR_WORKERS_UPDATED = 'worker_resolver.workers.updated';
/** Entries of the answer that could not become workers. */
export const ATTR_WORKERS_REJECTED = 'worker_resolver.workers.rejected';
/** `worker.added` / `worker.removed` events left off because of the per-span cap. */
export const ATTR_WORKER_EVENTS_DROPPED = 'worker_resolver.worker_events.dropped';
/** True if this source drives the snapshot now. */
export const ATTR_ACTIVE = 'worker_resolver.active';
/** Snapshot version (published by this span, or planned/routed against). */
export const ATTR_SNAPSHOT_VERSION = 'worker_resolver.snapshot.version';
/** Stable error code, e.g. `ERR_CONSUL_ACL`. */
export const ATTR_ERROR_CODE = 'worker_resolver.error.code';
/** Failover: the source switched away from. */
export const ATTR_FAILOVER_FROM = 'worker_resolver.failover.from';
/** Failover: the source switched to. */
export const ATTR_FAILOVER_TO = 'worker_resolver.failover.to';
/** Failover: why (`consul-failures`, `consul-no-contact`, `consul-recovered`, `last-resort`). */
export const ATTR_FAILOVER_REASON = 'worker_resolver.failover.reason';
/** Stale change: the new value of the snapshot's `stale` flag. */
export const ATTR_STALE = 'worker_resolver.stale';
/** Guard change: whether the mass-failure guard holds the last good set now. */
export const ATTR_GUARD_ACTIVE = 'worker_resolver.guard.active';
/** Guard change: workers the source reports. */
export const ATTR_GUARD_REPORTED = 'worker_resolver.guard.reported';
/** Guard change: workers in the set being held. */
export const ATTR_GUARD_KEPT = 'worker_resolver.guard.kept';
/** Worker events: the worker's URL (fine in traces; never a metric label). */
export const ATTR_WORKER_URL = 'worker_resolver.worker.url';
/** Worker events: the worker's instance id. */
export const ATTR_WORKER_ID = 'worker_resolver.worker.id';
/** Worker events: the worker's node. */
export const ATTR_WORKER_NODE = 'worker_resolver.worker.node';
/** Planner: the stage id. */
export const ATTR_STAGE_ID = 'worker_resolver.stage.id';
/** Planner: tasks the stage asked for. */
export const ATTR_STAGE_DESIRED_TASKS = 'worker_resolver.stage.desired_tasks';
/** Planner: the cap in force. */
export const ATTR_STAGE_TASK_CAP = 'worker_resolver.stage.task_cap';
/** Planner: tasks planned (`min(desired, cap)`). */
export const ATTR_STAGE_PLANNED_TASKS = 'worker_resolver.stage.planned_tasks';
/** Planner: true if the cap lowered the task count. */
export const ATTR_STAGE_CAPPED = 'worker_resolver.stage.capped';
/** Router: the query id (a trace attribute only, never a metric label). */
export const ATTR_QUERY_ID = 'worker_resolver.query.id';
/** Router: the routing strategy. */
export const ATTR_ROUTE_STRATEGY = 'worker_resolver.route.strategy';
/** Router: tasks routed. */
export const ATTR_ROUTE_TASK_COUNT = 'worker_resolver.route.task_count';
/** Router: distinct workers the tasks went to. */
export const ATTR_ROUTE_DISTINCT_WORKERS = 'worker_resolver.route.distinct_workers';

/** Values of `worker_resolver.outcome` and of the metrics' `outcome` label. */
export type RefreshOutcome = 'success' | 'unchanged' | 'error';

/** The outcome value of a source request: `unchanged` = Consul's index did not move (a long poll that timed out). */
export function refreshOutcome(outcome: SourceOutcome): RefreshOutcome {
  if (!outcome.ok) return 'error';
  return outcome.unchanged ? 'unchanged' : 'success';
}

/** Instrumentation scope name of the tracer (the npm package name). */
export const SCOPE_NAME = 'worker-resolver';
