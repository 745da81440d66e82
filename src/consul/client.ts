/**
 * The HTTP side of the Consul source, built on the `consul` npm package.
 *
 * The package's `health.service()` helper cannot express everything this project needs
 * (`cached`, `ns`, repeated `node-meta`, a bounded body, our own JSON handling), so we use
 * the package's request primitive (`consul._get`, the papi client it is built on) with the
 * same path and our own query. Two things papi does not do are added through the HTTP
 * agent we hand it (the documented `agent` option): a response body size limit, and
 * failing fast when a response is cut mid-body (papi would otherwise wait for its timeout).
 *
 * That private use (`_get`, its `ctx` 'cancel' event, `http.Agent#addRequest`) lives in this
 * one module only; the package is pinned to an exact version in package.json, and
 * `test/quick/consul-package.test.ts` fails loudly if an upgrade changes any of it.
 *
 * Secrets: the token travels only in the `X-Consul-Token` header. It is never put in a
 * query string, an error message or a log line. (papi emits 'log' events carrying request
 * headers; we never listen to them.)
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import Consul from 'consul';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import { formatDuration } from '../duration.js';

/** TLS settings for an `https://` Consul address (the `CONSUL_CACERT`... family). */
export interface ConsulTlsOptions {
  /** CA bundle (PEM) to verify Consul's certificate. */
  readonly ca?: string | Buffer;
  /** Client certificate (PEM), for mTLS. */
  readonly cert?: string | Buffer;
  /** Client key (PEM), for mTLS. */
  readonly key?: string | Buffer;
  /** Server name to verify (SNI), when it differs from the address's host. */
  readonly serverName?: string;
  /** Verify the server's certificate (default true). `false` mirrors `CONSUL_HTTP_SSL_VERIFY=false`. */
  readonly verify?: boolean;
}

/** Connection settings of a {@link ConsulHealthClient}. */
export interface ConsulClientConfig {
  /** Consul HTTP address, e.g. `http://127.0.0.1:8500` (no path). */
  readonly address: URL;
  readonly token: string | undefined;
  readonly tls: ConsulTlsOptions | undefined;
  /** Largest accepted response body, in bytes. */
  readonly maxResponseBytes: number;
}

/** Query parameters of a health request (all optional ones are omitted when undefined). */
export interface HealthQuery {
  readonly service: string;
  readonly passingOnly: boolean;
  /**
   * Keep only instances carrying every one of these tags: one `tag=` parameter each, which
   * Consul matches case-insensitively (the same rule for one tag and for several).
   */
  readonly tags: readonly string[];
  readonly filter: string | undefined;
  readonly datacenter: string | undefined;
  readonly near: string | undefined;
  readonly nodeMeta: readonly string[];
  readonly namespace: string | undefined;
  readonly partition: string | undefined;
  readonly consistency: 'default' | 'stale' | 'consistent' | 'cached';
}

/** Per-request settings. */
export interface HealthRequest {
  /** Blocking index; 0 = answer at once. */
  readonly index: number;
  readonly waitMs: number;
  /** Absolute client timeout for this request. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
}

/** A 2xx answer. */
export interface HealthResponse {
  /** `X-Consul-Index`, or undefined when missing or not a number (the caller decides). */
  readonly index: number | undefined;
  readonly body: Buffer;
  /**
   * `X-Consul-KnownLeader` of the answering server; undefined when absent, and on an answer of
   * the streaming backend (`X-Consul-Query-Backend: streaming`, Consul ≥ 1.10 agents' blocking
   * reads), whose leader headers are defaults (`false`, `0`) that say nothing about the cluster.
   */
  readonly knownLeader: boolean | undefined;
  /**
   * `X-Consul-LastContact`: milliseconds since the answering server last heard from the
   * leader (0 on the leader itself); undefined when absent, not a number, or streaming.
   */
  readonly lastContactMs: number | undefined;
  /**
   * The token could not see some of the results: `X-Consul-Results-Filtered-By-ACLs: true`, or —
   * since Consul masks that header for requests without a token — an empty list answered to a
   * request without a token under `X-Consul-Default-Acl-Policy: deny` (the anonymous token was
   * filtered to nothing; with an anonymous policy that grants the read, the answer is not empty).
   */
  readonly filteredByAcls: boolean;
}

/** The headers of an answer that the readers pass on, whether or not they read its body. */
export interface AnswerHead {
  readonly index: number | undefined;
  readonly knownLeader: boolean | undefined;
  readonly lastContactMs: number | undefined;
  readonly filteredByAcls: boolean;
}

/** The {@link AnswerHead} of a response. */
export function answerHead(r: AnswerHead): AnswerHead {
  return {
    index: r.index,
    knownLeader: r.knownLeader,
    lastContactMs: r.lastContactMs,
    filteredByAcls: r.filteredByAcls,
  };
}

/**
 * True when an answer's body is not to be read: it has no index (the source reports it as
 * malformed), it is ACL-filtered (an ACL error), or a blocking request's index did not move.
 */
export function leaveUnread(head: AnswerHead, requestIndex: number): boolean {
  return (
    head.index === undefined || head.filteredByAcls || (requestIndex > 0 && Math.max(1, head.index) === requestIndex)
  );
}

/** The narrow slice of the papi client (`consul._get`) we use; not in the package's typings. */
interface PapiRequest {
  name: string;
  path: string;
  params: Record<string, string>;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
  ctx: EventEmitter;
  timeout: number;
  buffer: true;
}
interface PapiResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body?: Buffer;
}
interface PapiClient {
  _get(req: PapiRequest): Promise<PapiResponse>;
  destroy(): void;
}
interface PapiError extends Error {
  isPapi?: boolean;
  isAbort?: boolean;
  isTimeout?: boolean;
  isResponse?: boolean;
  response?: PapiResponse;
  code?: string;
  cause?: unknown;
}

/** Marker error the agent hook raises; mapped to a coded error below. */
class BodyLimitError extends Error {}
class TruncatedBodyError extends Error {}

/**
 * Adds a body limit and truncation detection to every request of an agent. `addRequest`
 * is the hook http.Agent subclasses (proxy agents) use to see each ClientRequest.
 */
function guardAgent<A extends http.Agent>(agent: A, maxBytes: number): A {
  const addRequest = (agent as unknown as { addRequest: (req: http.ClientRequest, o: unknown) => void }).addRequest;
  (agent as unknown as { addRequest: (req: http.ClientRequest, o: unknown) => void }).addRequest = function (req, o) {
    req.once('response', (res: http.IncomingMessage) => {
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > maxBytes) {
          res.destroy();
          req.destroy();
          req.emit('error', new BodyLimitError());
        }
      });
      // papi only listens for 'end'; a response cut mid-body would otherwise hang until the
      // client timeout (minutes, for a blocking query).
      res.once('close', () => {
        if (!res.complete) req.emit('error', new TruncatedBodyError());
      });
    });
    addRequest.call(this, req, o);
  };
  return agent;
}

function header(res: PapiResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** True for a body that is an empty JSON list (`[]`, whitespace allowed), without parsing a large one. */
function isEmptyList(body: Buffer): boolean {
  return body.length <= 64 && /^\s*\[\s*\]\s*$/.test(body.toString('utf8'));
}

/** Parses `Retry-After` (delta-seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
]);

/** Consul's answer when the agent knows no server to forward to (`structs.ErrNoServers`). */
const NO_SERVERS = /^: No known Consul servers/;

/** The start of Consul's answer to a filter expression it cannot compile. */
const BAD_FILTER = /^: Failed to create boolean expression evaluator/;

/** One line of text from an error body, without control characters, bounded. */
function bodySnippet(res: PapiResponse | undefined): string {
  const body = res?.body;
  if (body === undefined || body.length === 0) return '';
  const text = body.subarray(0, 200).toString('utf8').replace(/\s+/g, ' ').trim();
  return text === '' ? '' : `: ${text}`;
}

/** Maps whatever papi or the socket threw to a coded error. `where` never contains secrets. */
function classify(err: PapiError, where: string): WorkerResolverError {
  if (err instanceof BodyLimitError) {
    return new WorkerResolverError(ErrorCode.CONSUL_BODY_TOO_LARGE, `${where}: answer exceeds the body size limit`);
  }
  if (err instanceof TruncatedBodyError) {
    return new WorkerResolverError(ErrorCode.CONSUL_MALFORMED, `${where}: answer was cut off before its end`);
  }
  if (err.isResponse === true && err.response !== undefined) {
    const res = err.response;
    const status = res.statusCode;
    if (status === 403) {
      // The body is Consul's ("Permission denied", "ACL not found"); it never echoes the token.
      return new WorkerResolverError(
        ErrorCode.CONSUL_ACL,
        `${where}: 403 from Consul: the ACL token lacks service:read/node:read for this service, or is unknown${bodySnippet(res)}`,
        { status },
      );
    }
    if (status === 429) {
      const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
      return new WorkerResolverError(ErrorCode.CONSUL_RATE_LIMITED, `${where}: 429 from Consul (rate limited)`, {
        status,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
    }
    // Consul 1.16 answers a bad `filter` on /v1/health/service with a 500 (the error comes back
    // from its RPC layer), not a 400: the query is wrong either way, and retrying it fast won't help.
    if (status === 400 || (status === 500 && BAD_FILTER.test(bodySnippet(res)))) {
      return new WorkerResolverError(
        ErrorCode.CONSUL_BAD_REQUEST,
        `${where}: ${status} from Consul${bodySnippet(res)}`,
        { status },
      );
    }
    return new WorkerResolverError(ErrorCode.CONSUL_HTTP, `${where}: ${status} from Consul${bodySnippet(res)}`, {
      status,
      // An agent that has not joined (yet, or again after a restart) asked no server (structs.ErrNoServers).
      ...(status === 500 && NO_SERVERS.test(bodySnippet(res)) ? { reachedNoServer: true } : {}),
    });
  }
  if (err.isTimeout === true) {
    return new WorkerResolverError(ErrorCode.CONSUL_TIMEOUT, `${where}: no answer within the client timeout`);
  }
  const cause = (err.cause as PapiError | undefined) ?? err;
  const code = cause.code ?? err.code;
  if ((code !== undefined && TLS_CODES.has(code)) || /certificate|SSL|TLS/i.test(cause.message)) {
    return new WorkerResolverError(ErrorCode.CONSUL_TLS, `${where}: TLS failure (${code ?? cause.message})`, {
      cause,
    });
  }
  return new WorkerResolverError(
    ErrorCode.CONSUL_UNREACHABLE,
    `${where}: Consul unreachable (${code ?? cause.message})`,
    { cause, ...(code === 'ECONNREFUSED' ? { reachedNoServer: true } : {}) },
  );
}

/** A thin, abortable client for the one endpoint the resolver polls (and a few `doctor` needs). */
export class ConsulHealthClient {
  private readonly consul: PapiClient;
  private readonly token: string | undefined;
  /** The address without credentials, for error messages. */
  private readonly where: string;

  constructor(config: ConsulClientConfig) {
    const secure = config.address.protocol === 'https:';
    const tls = config.tls;
    const agent = secure
      ? guardAgent(
          new https.Agent({
            keepAlive: true,
            ...(tls?.ca === undefined ? {} : { ca: tls.ca }),
            ...(tls?.cert === undefined ? {} : { cert: tls.cert }),
            ...(tls?.key === undefined ? {} : { key: tls.key }),
            ...(tls?.serverName === undefined ? {} : { servername: tls.serverName }),
            rejectUnauthorized: tls?.verify ?? true,
          }),
          config.maxResponseBytes,
        )
      : guardAgent(new http.Agent({ keepAlive: true }), config.maxResponseBytes);
    const base = `${config.address.protocol}//${config.address.host}/v1`;
    this.consul = new (Consul as unknown as new (o: object) => PapiClient)({ baseUrl: base, agent });
    this.token = config.token;
    this.where = `${config.address.protocol}//${config.address.host}`;
  }

  private async get(
    name: string,
    path: string,
    params: Record<string, string>,
    query: Record<string, string | string[]>,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<PapiResponse> {
    const ctx = new EventEmitter();
    const onAbort = (): void => {
      ctx.emit('cancel');
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) throw new Error('aborted');
      return await this.consul._get({
        name,
        path,
        params,
        query,
        headers: this.token === undefined ? {} : { 'x-consul-token': this.token },
        ctx,
        timeout: timeoutMs,
        buffer: true,
      });
    } catch (err) {
      throw classify(
        err as PapiError,
        `GET ${this.where}/v1${path.replace(/\{(\w+)\}/g, (_, k: string) => params[k] ?? '')}`,
      );
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** `GET /v1/health/service/:service`. Rejects with a coded {@link WorkerResolverError}. */
  async healthService(q: HealthQuery, r: HealthRequest): Promise<HealthResponse> {
    const query: Record<string, string | string[]> = {};
    if (q.passingOnly) query['passing'] = '1';
    if (q.tags.length > 0) query['tag'] = [...q.tags];
    if (q.filter !== undefined) query['filter'] = q.filter;
    if (q.datacenter !== undefined) query['dc'] = q.datacenter;
    if (q.near !== undefined) query['near'] = q.near;
    if (q.nodeMeta.length > 0) query['node-meta'] = [...q.nodeMeta];
    if (q.namespace !== undefined) query['ns'] = q.namespace;
    if (q.partition !== undefined) query['partition'] = q.partition;
    if (q.consistency === 'stale') query['stale'] = '';
    else if (q.consistency === 'consistent') query['consistent'] = '';
    else if (q.consistency === 'cached') query['cached'] = '';
    if (r.index > 0) {
      query['index'] = String(r.index);
      query['wait'] = formatDuration(r.waitMs);
    }
    const res = await this.get(
      'health.service',
      '/health/service/{service}',
      { service: q.service },
      query,
      r.timeoutMs,
      r.signal,
    );
    const rawIndex = header(res, 'x-consul-index');
    const index = rawIndex !== undefined && /^\d+$/.test(rawIndex) ? Number(rawIndex) : undefined;
    // The streaming backend's leader headers are not the cluster's: unknown (see leader.ts).
    const streaming = header(res, 'x-consul-query-backend') === 'streaming';
    const leader = streaming ? undefined : header(res, 'x-consul-knownleader');
    const rawContact = streaming ? undefined : header(res, 'x-consul-lastcontact');
    return {
      index,
      body: res.body ?? Buffer.alloc(0),
      knownLeader: leader === undefined ? undefined : leader === 'true',
      lastContactMs: rawContact !== undefined && /^\d+$/.test(rawContact) ? Number(rawContact) : undefined,
      filteredByAcls:
        header(res, 'x-consul-results-filtered-by-acls') === 'true' ||
        (this.token === undefined &&
          header(res, 'x-consul-default-acl-policy') === 'deny' &&
          isEmptyList(res.body ?? Buffer.alloc(0))),
    };
  }

  /**
   * `GET /v1/status/leader` → the leader's address, or '' when the server the agent reached
   * knows none. Rejects with a coded error (a 5xx: the agent reached no server).
   */
  async leader(timeoutMs: number, signal: AbortSignal): Promise<string> {
    const res = await this.get('status.leader', '/status/leader', {}, {}, timeoutMs, signal);
    try {
      const parsed: unknown = JSON.parse((res.body ?? Buffer.from('""')).toString('utf8'));
      return typeof parsed === 'string' ? parsed : '';
    } catch (cause) {
      throw new WorkerResolverError(ErrorCode.CONSUL_MALFORMED, 'Consul /v1/status/leader answer is not JSON', {
        cause,
      });
    }
  }

  /** Closes pooled keep-alive sockets. The client must not be used afterwards. */
  destroy(): void {
    this.consul.destroy();
  }
}
