/**
 * The sidecar's HTTP API, usable in-process: `worker-resolver serve` runs it next to a
 * coordinator, the demo embeds it, tests start it on an ephemeral port. It serves one
 * resolver's snapshot as `/v1/workers` (plain and long-poll, for coordinators in any language),
 * and `/readyz`, `/healthz`, `/metrics`. The contract is docs/design.md §8.
 *
 * ## Rules
 * - `GET /v1/workers` answers the current snapshot as JSON, with `X-Worker-Resolver-Index`.
 * - `GET /v1/workers?index=N&wait=30s` is a blocking query with Consul's rules: it answers as
 *   soon as the snapshot version is greater than N, or when the wait (plus a jitter of up to
 *   wait/16, as Consul adds, so that clients started together do not come back together)
 *   ends, with the unchanged body and index. An index greater than the current version can
 *   only come from an earlier sidecar process (versions restart at 1), so it is answered at
 *   once: the client sees the index go backwards and resets, as Consul's rules tell it to.
 * - Before the first snapshot exists, `/v1/workers` does not look like an answer: it is a
 *   `503` with `code: "ERR_NOT_READY"`, `Retry-After` and index 0, so a client can tell "not
 *   known yet" from "no workers"; a long poll with `index=0` waits for the first snapshot (and
 *   gets the same 503 if its wait ends first).
 * - `GET /readyz` is 200 once a first snapshot exists, stale or not: a last good set is a
 *   useful answer, and tying readiness to Consul's freshness would take every coordinator's
 *   sidecar out of its load balancer at once during one Consul outage. Freshness is in its
 *   body (`stale`, `lastContactAt`), in `/v1/workers` and in `worker_resolver_snapshot_stale`.
 * - `GET /metrics`, `GET /healthz`.
 *
 * ## Concurrency
 * One `resolver.subscribe` listener wakes every held poll on each publish; each
 * poll is answered with `res.end(body)`, which only queues bytes, so a slow reader never
 * delays the others. The JSON body is serialised and UTF-8 encoded once per snapshot object,
 * with its headers, and the same bytes are handed to every response (no per-poll stringify or
 * encode: with 1,000 polls that was 1,000 copies of the body through the encoder). The body
 * goes out as that one Buffer: Node writes header block and body with one `writev`, the body
 * without a copy (a string body costs a copy per socket; figures in docs/performance.md).
 * A poll whose client goes away is dropped on the response's `close` event, at once.
 */
import http from 'node:http';
import type net from 'node:net';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { Tracer, TracerProvider } from '@opentelemetry/api';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import * as attr from './semconv.js';
import { contextFromTraceparent } from './traceparent.js';
import { packageVersion } from './version.js';
import type { Logger } from './events.js';
import type { DiscoveringWorkerResolver } from './resolver.js';
import {
  BadRequest,
  JSON_CONTENT_TYPE,
  NOT_READY_BODY,
  NOT_READY_RETRY_AFTER_S,
  leaderJson,
  leaderText,
  parseWorkersQuery,
  workersAnswer,
} from './sidecar-workers.js';
import type { WorkersAnswer } from './sidecar-workers.js';
import type { WorkerSnapshot } from './snapshot.js';

/** Options of {@link startSidecar}. */
export interface SidecarOptions {
  /** The resolver whose snapshot is served. The sidecar never closes it. */
  readonly resolver: DiscoveringWorkerResolver;
  /** Listen address. Default `127.0.0.1`. */
  readonly host?: string;
  /** Listen port. Default 9464; 0 = an ephemeral port (see {@link Sidecar.port}). */
  readonly port?: number;
  /**
   * The resolver's metrics registry (the one passed as `createWorkerResolver({ registry })`).
   * `/metrics` serves it merged with the sidecar's own registry (default process metrics and
   * the sidecar's HTTP metrics).
   */
  readonly registry?: Registry;
  /** Cap of `?wait`, in milliseconds. Default 600000 (Consul's 10 minutes). */
  readonly maxWaitMs?: number;
  /** Structured logger for start, stop and failures (never per request). Default: silent. */
  readonly logger?: Logger;
  /**
   * Record a SERVER span per request (OTel HTTP semantic conventions), child of the caller's
   * W3C `traceparent` when it sends one, so a coordinator's trace links to the sidecar.
   */
  readonly tracerProvider?: TracerProvider;
}

/** A running sidecar. */
export interface Sidecar {
  /** The address it listens on. */
  readonly host: string;
  /** The port it listens on (the real one when 0 was asked). */
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:9464`. */
  readonly url: string;
  /** Long polls currently held. */
  openLongPolls(): number;
  /** Answers every held long poll with the current body, stops listening and closes the server. Idempotent. */
  close(): Promise<void>;
}

/** Time a client gets to read its last answer during close() before its socket is cut. */
const CLOSE_GRACE_MS = 5_000;
const UNLINTED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];
const ROUTES = new Set(['/v1/workers', '/metrics', '/healthz', '/readyz']);

/** A held `GET /v1/workers?index=N` request. */
interface LongPoll {
  readonly res: http.ServerResponse;
  /** Fires when the wait ends; cleared when the poll is answered or its client leaves. */
  timer: NodeJS.Timeout | undefined;
}

class SidecarServer implements Sidecar {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** Held polls; a poll is in here exactly until it is answered or its client leaves. */
  private readonly polls = new Set<LongPoll>();
  /** The sidecar's own registry (process metrics, HTTP metrics); never the global one. */
  private readonly own = new Registry();
  private readonly requests: Counter<'route' | 'code'>;
  /** Serialised, encoded body of `cache.snapshot`; the engine swaps snapshots by reference. */
  private cache: WorkersAnswer | undefined;
  private readonly unsubscribe: () => void;
  /** Set by close(); while set, every answer carries `Connection: close`. */
  private closing: Promise<void> | undefined;
  /** Present only when a tracer provider was given. */
  private readonly tracer: Tracer | undefined;

  constructor(
    private readonly server: http.Server,
    private readonly options: SidecarOptions,
    private readonly maxWaitMs: number,
  ) {
    const address = server.address() as net.AddressInfo;
    this.tracer = options.tracerProvider?.getTracer(attr.SCOPE_NAME, packageVersion());
    this.host = address.address;
    this.port = address.port;
    this.url = `http://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
    collectDefaultMetrics({ register: this.own });
    // prom-client names these three gauges `_total`, which Prometheus reserves for counters
    // (promtool flags them). They are the sums of `nodejs_active_{handles,requests,resources}`
    // by type, which stay, so nothing is lost.
    for (const name of UNLINTED_DEFAULT_METRICS) this.own.removeSingleMetric(name);
    this.requests = new Counter({
      name: 'worker_resolver_sidecar_requests_total',
      help: 'HTTP requests answered by the sidecar, by route (a fixed set) and status code.',
      labelNames: ['route', 'code'],
      registers: [this.own],
    });
    const polls = this.polls;
    new Gauge({
      name: 'worker_resolver_sidecar_long_polls',
      help: 'Blocking /v1/workers requests currently held by the sidecar.',
      registers: [this.own],
      collect() {
        this.set(polls.size);
      },
    });
    this.unsubscribe = options.resolver.subscribe((snapshot) => {
      for (const poll of [...this.polls]) this.answerPoll(poll, snapshot);
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
  }

  openLongPolls(): number {
    return this.polls.size;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.unsubscribe();
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      const current = this.options.resolver.snapshot();
      for (const poll of [...this.polls]) this.answerPoll(poll, current);
      this.server.closeIdleConnections();
      // A client that does not read its answer must not hold the shutdown forever.
      const grace = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS);
      grace.unref();
      await closed;
      clearTimeout(grace);
      this.options.logger?.info('sidecar closed', { url: this.url });
    })();
    return this.closing;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const path = q === -1 ? raw : raw.slice(0, q);
    const route = ROUTES.has(path) ? path : 'other';
    res.once('finish', () => this.requests.inc({ route, code: String(res.statusCode) }));
    if (this.tracer !== undefined)
      this.traceRequest(this.tracer, req, res, path, route, q !== -1 && /(^|[?&])index=/.test(raw));
    if (this.closing !== undefined) res.setHeader('Connection', 'close');
    if (route === 'other') return this.sendError(res, 404, 'ERR_NOT_FOUND', 'not found');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.sendError(res, 405, 'ERR_METHOD_NOT_ALLOWED', `method ${req.method ?? ''} not allowed`);
    }
    try {
      if (route === '/v1/workers') return this.workers(res, q === -1 ? '' : raw.slice(q + 1));
      if (route === '/healthz') return this.sendJson(res, 200, '{"status":"ok"}\n');
      if (route === '/readyz') return this.readyz(res);
      this.metrics(res);
    } catch (err) {
      if (err instanceof BadRequest) return this.sendError(res, 400, 'ERR_BAD_REQUEST', err.message);
      this.options.logger?.error('sidecar request failed', { route, error: String(err) });
      if (!res.headersSent) this.sendError(res, 500, 'ERR_INTERNAL', 'internal error');
    }
  }

  /**
   * A SERVER span from the request's arrival to its answer (for a long poll, that includes the
   * hold: the span is what the client waited for). The route is one of the fixed set, never
   * the raw path, so span names stay bounded.
   */
  private traceRequest(
    tracer: Tracer,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
    route: string,
    longPoll: boolean,
  ): void {
    const method = req.method ?? 'GET';
    const known = route !== 'other';
    const span = tracer.startSpan(
      known ? `${method} ${route}` : method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [attr.ATTR_HTTP_REQUEST_METHOD]: method,
          [attr.ATTR_URL_PATH]: path.slice(0, 200),
          [attr.ATTR_URL_SCHEME]: 'http',
          [attr.ATTR_SERVER_ADDRESS]: this.host,
          [attr.ATTR_SERVER_PORT]: this.port,
          ...(known ? { [attr.ATTR_HTTP_ROUTE]: route } : {}),
          ...(route === '/v1/workers' ? { [attr.ATTR_LONG_POLL]: longPoll } : {}),
        },
      },
      contextFromTraceparent(req.headers['traceparent']),
    );
    const end = (): void => {
      span.setAttribute(attr.ATTR_HTTP_RESPONSE_STATUS_CODE, res.statusCode);
      // Server spans: only 5xx is an error (a 4xx is the client's).
      if (res.statusCode >= 500) {
        span.setAttribute(attr.ATTR_ERROR_TYPE, String(res.statusCode));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    };
    res.once('finish', end);
    res.once('close', () => {
      if (!res.writableFinished) {
        span.setAttribute(attr.ATTR_ERROR_TYPE, 'client_closed');
        span.end();
      }
    });
  }

  private workers(res: http.ServerResponse, search: string): void {
    const { index, waitMs } = parseWorkersQuery(search, this.maxWaitMs);
    const current = this.options.resolver.snapshot();
    if (index === undefined || index !== current.version || this.closing !== undefined) {
      return this.sendWorkers(res, current);
    }
    const poll: LongPoll = { res, timer: undefined };
    const jitterMs = Math.floor(Math.random() * (waitMs / 16));
    poll.timer = setTimeout(() => this.answerPoll(poll, this.options.resolver.snapshot()), waitMs + jitterMs);
    poll.timer.unref();
    this.polls.add(poll);
    res.once('close', () => this.dropPoll(poll));
  }

  private answerPoll(poll: LongPoll, snapshot: WorkerSnapshot): void {
    if (!this.polls.has(poll)) return;
    this.dropPoll(poll);
    if (this.closing !== undefined) poll.res.setHeader('Connection', 'close');
    this.sendWorkers(poll.res, snapshot);
  }

  private dropPoll(poll: LongPoll): void {
    clearTimeout(poll.timer);
    this.polls.delete(poll);
  }

  private sendWorkers(res: http.ServerResponse, snapshot: WorkerSnapshot): void {
    if (snapshot.version === 0) {
      res.setHeader('X-Worker-Resolver-Index', '0');
      res.setHeader('Retry-After', String(NOT_READY_RETRY_AFTER_S));
      return this.sendJson(res, 503, NOT_READY_BODY);
    }
    const leader = this.options.resolver.consulLeader();
    if (this.cache?.snapshot !== snapshot || this.cache.leader !== leaderText(leader)) {
      this.cache = workersAnswer(snapshot, leader);
    }
    if (res.destroyed) return;
    res.writeHead(200, this.cache.headers as string[]);
    res.end(this.cache.body);
  }

  private readyz(res: http.ServerResponse): void {
    const s = this.options.resolver.snapshot();
    if (s.version === 0) {
      return this.sendJson(res, 503, '{"status":"not ready","reason":"no worker snapshot yet"}\n');
    }
    // Still 200 without a leader: the last good set is a useful answer (docs/design.md §8).
    const leader = this.options.resolver.consulLeader();
    const body = {
      status: 'ready',
      index: s.version,
      source: s.source,
      workers: s.workers.length,
      stale: s.stale,
      lastContactAt: s.lastContactAt === 0 ? null : new Date(s.lastContactAt).toISOString(),
      ...(leader === undefined ? {} : { consulLeader: leaderJson(leader) }),
    };
    this.sendJson(res, 200, `${JSON.stringify(body)}\n`);
  }

  private metrics(res: http.ServerResponse): void {
    const own = this.own;
    // Merged per scrape, so metrics registered on the resolver's registry later still show.
    const merged = this.options.registry === undefined ? own : Registry.merge([this.options.registry, own]);
    merged.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': merged.contentType, 'Cache-Control': 'no-store' });
        res.end(text);
      },
      (err: unknown) => {
        this.options.logger?.error('sidecar metrics collection failed', { error: String(err) });
        this.sendError(res, 500, 'ERR_INTERNAL', 'metrics collection failed');
      },
    );
  }

  private sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
    this.sendJson(res, status, `${JSON.stringify({ error: message, code })}\n`);
  }

  private sendJson(res: http.ServerResponse, status: number, body: string | Buffer): void {
    if (res.destroyed) return;
    res.writeHead(status, {
      'Content-Type': JSON_CONTENT_TYPE,
      'Content-Length': typeof body === 'string' ? Buffer.byteLength(body) : body.length,
      'Cache-Control': 'no-store',
    });
    res.end(body);
  }
}

/**
 * Starts the sidecar HTTP server. Rejects (nothing left listening) when the address cannot be
 * bound, or with a `TypeError` on a bad option.
 */
export async function startSidecar(options: SidecarOptions): Promise<Sidecar> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 9464;
  const maxWaitMs = options.maxWaitMs ?? 600_000;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError('startSidecar: port must be 0-65535');
  if (!(maxWaitMs > 0) || !Number.isFinite(maxWaitMs)) throw new TypeError('startSidecar: maxWaitMs must be > 0');
  if (typeof options.resolver?.subscribe !== 'function') throw new TypeError('startSidecar: resolver is required');
  const server = http.createServer({
    // Node's timeouts bound *receiving* a request (a GET is complete once its headers are
    // in), never holding its answer; requestTimeout still sits above the longest wait plus
    // jitter, so no reading of it can cut a held poll. headersTimeout stays short: a client
    // that dribbles its headers (slowloris) is cut after a minute.
    requestTimeout: maxWaitMs + maxWaitMs / 16 + 30_000,
    headersTimeout: 60_000,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const sidecar = new SidecarServer(server, options, maxWaitMs);
  options.logger?.info('sidecar listening', { url: sidecar.url });
  return sidecar;
}
