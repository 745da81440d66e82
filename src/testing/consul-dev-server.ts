/**
 * The Consul dev server: an in-process, stateful TEST DOUBLE of the subset of Consul's HTTP
 * API this project uses, over real HTTP(S) on loopback, plus (by default) a Consul-style
 * DNS server answering from the same state. It is not a Consul: no raft, no gossip, no
 * KV, one agent. What it does implement follows Consul's documented behaviour — response
 * shapes, headers (`X-Consul-Index`, `X-Consul-KnownLeader`, ...), blocking-query rules,
 * ACL denials, error texts — so that clients can be tested against it, including against
 * Consul's awkward cases through fault injection.
 *
 * Concurrency: everything runs on the event loop. A blocking query is held by the
 * {@link ConnectionTracker} and re-checked synchronously after every state write.
 * `stop()` destroys every socket (held long polls included), so nothing of the server
 * keeps the process alive: every timer it creates is unref'd and cleared.
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { HealthyInstance, NodeDefinition, ServiceDefinition, CheckStatus } from './consul-api-types.js';
import { DevAcl } from './consul-dev-acl.js';
import { DevAgent } from './consul-dev-agent.js';
import { ConnectionTracker, extractToken, readJsonBody, resetSocket } from './consul-dev-connections.js';
import { FaultQueue } from './consul-dev-faults.js';
import type { FailFault, FaultScope } from './consul-dev-faults.js';
import { ConsulDevApi } from './consul-dev-routes.js';
import type { RouteContext } from './consul-dev-routes.js';
import { ConsulDnsServer } from './consul-dns.js';
import { InvalidOptionError } from '../errors.js';
import { validateOptions } from './consul-dev-options.js';
import type { ConsulDevServerOptions, RecordedRequest } from './consul-dev-options.js';

export type { ConsulDevServerOptions, RecordedRequest } from './consul-dev-options.js';

/** Recorded requests kept; older ones are dropped in halves beyond this. */
const MAX_RECORDED = 100_000;
/** Reads any token may make (their answers are filtered per instance by its rights). */
const FILTERED_READS =
  /^\/v1\/(health\/service\/|health\/checks\/|catalog\/service\/|catalog\/services$|catalog\/nodes$|acl\/token\/self$)/;

/** The Consul dev server. Start it with {@link ConsulDevServer.start}; always `stop()` it. */
export class ConsulDevServer {
  /** Listen address. */
  readonly host: string;
  /** HTTP(S) port. */
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:41234` (`https://` with TLS). */
  readonly httpAddr: string;
  /** UDP+TCP port of the DNS interface, if started. */
  readonly dnsPort: number | undefined;
  /** `host:port` of the DNS interface, if started. */
  readonly dnsAddr: string | undefined;

  /** The DNS interface (for its fault injection: `failNext`, `dropNext`), if started. */
  get dnsServer(): ConsulDnsServer | undefined {
    return this.dns;
  }

  /** Armed faults, consumed by arriving requests. */
  private readonly faults = new FaultQueue();
  /** Requests in arrival order, at most MAX_RECORDED. */
  private readonly recorded: RecordedRequest[] = [];
  /** When true, every health query bumps its service's index first. */
  private churn = false;
  /** Set once `stop()` was called; the same promise is returned to every caller. */
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly server: http.Server,
    private readonly agent: DevAgent,
    private readonly api: ConsulDevApi,
    private readonly acl: DevAcl | undefined,
    private readonly tracker: ConnectionTracker,
    private readonly dns: ConsulDnsServer | undefined,
    scheme: 'http' | 'https',
  ) {
    const address = server.address() as net.AddressInfo;
    this.host = address.address;
    this.port = address.port;
    const hostForUrl = this.host.includes(':') ? `[${this.host}]` : this.host;
    this.httpAddr = `${scheme}://${hostForUrl}:${this.port}`;
    this.dnsPort = dns?.port;
    this.dnsAddr = dns === undefined ? undefined : `${hostForUrl}:${dns.port}`;
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
    agent.state.onChange(() => tracker.wake());
  }

  /**
   * Starts the HTTP(S) server (and the DNS server unless `dns: false`).
   * Throws {@link InvalidOptionError} (a TypeError) for an invalid option.
   */
  static async start(options: ConsulDevServerOptions = {}): Promise<ConsulDevServer> {
    validateOptions(options);
    const host = options.host ?? '127.0.0.1';
    const datacenter = options.datacenter ?? 'dc1';
    const agent = new DevAgent({
      datacenter,
      nodeName: options.nodeName ?? 'dev-node',
      nodeAddress: options.nodeAddress ?? '127.0.0.1',
      checkIntervalFloorMs: options.checkIntervalFloorMs ?? 100,
    });
    let churn = (): boolean => false;
    const acl =
      options.aclToken === undefined ? undefined : new DevAcl(options.aclToken, options.aclFilteredTokens ?? []);
    const api = new ConsulDevApi(agent, {
      maxWaitMs: options.maxWaitMs ?? 600_000,
      acl,
      random: options.random ?? Math.random,
      churn: () => churn(),
    });
    const tls = options.tls;
    const server =
      tls === undefined
        ? http.createServer()
        : https.createServer({
            key: tls.key,
            cert: tls.cert,
            ...(tls.ca === undefined ? {} : { ca: tls.ca }),
            requestCert: tls.requestCert === true,
            rejectUnauthorized: tls.requestCert === true,
          });
    const tracker = new ConnectionTracker();
    tracker.attach(server, tls !== undefined);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.port ?? 0, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      let dns: ConsulDnsServer | undefined;
      if (options.dns !== false) {
        const d = options.dns ?? {};
        dns = await ConsulDnsServer.start({
          host,
          datacenter,
          ...(d.port === undefined ? {} : { port: d.port }),
          ...(d.udpAnswerLimit === undefined ? {} : { udpAnswerLimit: d.udpAnswerLimit }),
          ...(d.enableTruncate === undefined ? {} : { enableTruncate: d.enableTruncate }),
          // Consul's DNS serves passing and warning instances by default (`only_passing = false`).
          lookup: (service, tag) =>
            agent.healthyInstances(service, { ...(tag === undefined ? {} : { tag }), includeWarning: true }),
        });
      }
      const dev = new ConsulDevServer(server, agent, api, acl, tracker, dns, tls === undefined ? 'http' : 'https');
      churn = () => dev.churn;
      return dev;
    } catch (err) {
      agent.runner.stopAll();
      tracker.closeAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
  }

  // ---- state manipulation without HTTP ---------------------------------------------------

  /** Registers (or updates) a node, with a passing `serfHealth` check. Throws on invalid input. */
  registerNode(node: NodeDefinition): void {
    this.agent.registerNode(node);
  }

  /**
   * Registers a service instance exactly as `PUT /v1/agent/service/register` would, on the
   * agent's node or on `opts.node` (which must exist). Throws a ConsulApiError on invalid input.
   */
  registerService(def: ServiceDefinition, opts: { node?: string } = {}): void {
    this.agent.registerService(def, opts.node);
  }

  /** Removes a service instance and its checks. Throws if it does not exist. */
  deregisterService(serviceId: string, opts: { node?: string } = {}): void {
    this.agent.deregisterService(serviceId, opts.node);
  }

  /**
   * Sets a check's status (any check type; a TTL check's timer restarts). The check is
   * looked up on the agent's node first, then on every node. Throws if unknown.
   */
  setCheckStatus(checkId: string, status: CheckStatus, output = ''): void {
    this.agent.updateCheck(checkId, status, output);
  }

  /** Toggles service maintenance (`_service_maintenance:<id>`) on the agent's node. */
  setServiceMaintenance(serviceId: string, enable: boolean, reason = ''): void {
    const node =
      this.agent.state.service(this.agent.options.nodeName, serviceId) === undefined
        ? this.nodeOfService(serviceId)
        : undefined;
    this.agent.setServiceMaintenance(serviceId, enable, reason, node ?? this.agent.options.nodeName);
  }

  /** Toggles node maintenance (`_node_maintenance`) on any node. */
  setNodeMaintenance(node: string, enable: boolean, reason = ''): void {
    this.agent.setNodeMaintenance(node, enable, reason);
  }

  /** The current raft index. */
  get index(): number {
    return this.agent.state.index;
  }

  /** A write that changes no content (consul#4810): the index moves, bodies stay identical. */
  bumpIndex(service?: string): void {
    this.agent.state.bumpIndex(service);
  }

  /**
   * Simulates a Consul restart/snapshot restore: every index drops to `to` (default 1), content
   * kept. Long polls held at that moment keep waiting until the index passes theirs or their
   * wait ends, then answer the lower index — what a Consul 1.16 agent does with its default
   * streaming backend after `PUT /v1/snapshot` (the contract test "a snapshot restore …").
   */
  resetIndex(to = 1): void {
    this.agent.state.resetIndex(to);
  }

  /**
   * Instances of `service` DNS would serve: all checks passing (or warning too with
   * `includeWarning`, default false), maintenance excluded, optional tag (case-insensitive).
   * `undefined` when the service has no instance at all. Every datacenter is included.
   */
  healthyInstances(
    service: string,
    opts: { tag?: string; includeWarning?: boolean } = {},
  ): HealthyInstance[] | undefined {
    return this.agent.healthyInstances(service, opts);
  }

  // ---- fault injection --------------------------------------------------------------------

  /**
   * Simulates a lost quorum (`false`) and a leader elected again (`true`, the default state):
   * `/v1/status/leader` answers `""`, reads that need the leader a 500 "No cluster leader",
   * stale non-streaming reads `X-Consul-KnownLeader: false` and `X-Consul-LastContact` growing
   * from the loss — what a surviving server answers (the real-agent cluster test shows it).
   * Streaming answers (blocking health reads) are unchanged: their leader headers never tell.
   */
  setLeader(present: boolean): void {
    if (present) this.agent.leaderLostAt = undefined;
    else this.agent.leaderLostAt ??= Date.now();
  }

  /** The next `count` matching requests get this answer (no ACL, no routing). */
  failNext(count: number, fault: FailFault): void {
    this.faults.add(
      count,
      { kind: 'fail', status: fault.status, body: fault.body, headers: fault.headers ?? {} },
      fault.path,
    );
  }

  /** The next `count` matching requests are accepted and never answered (until the client gives up or `stop()`). */
  hangNext(count: number, opts: FaultScope = {}): void {
    this.faults.add(count, { kind: 'hang' }, opts.path);
  }

  /** The next `count` matching requests get their connection reset without an answer (ECONNRESET). */
  dropNext(count: number, opts: FaultScope = {}): void {
    this.faults.add(count, { kind: 'drop' }, opts.path);
  }

  /** The next `count` matching requests get headers with the real Content-Length, half the body, then a closed socket. */
  truncateNext(count: number, opts: FaultScope = {}): void {
    this.faults.add(count, { kind: 'truncate' }, opts.path);
  }

  /** When enabled, every health query sees a new index with identical content (the hot-loop case). */
  setIndexChurn(enabled: boolean): void {
    this.churn = enabled;
  }

  /**
   * Like a proxy's idle timeout: a connection without a request starting or a response
   * finishing for `ms` is destroyed (this cuts held long polls). `undefined` disables it.
   */
  setIdleTimeout(ms: number | undefined): void {
    if (ms !== undefined && !(Number.isFinite(ms) && ms > 0))
      throw new InvalidOptionError('idleTimeoutMs', 'must be > 0');
    this.tracker.setIdleTimeout(ms);
  }

  /** Disarms every fault, index churn and the idle timeout. */
  clearFaults(): void {
    this.faults.clear();
    this.churn = false;
    this.setIdleTimeout(undefined);
  }

  // ---- observation ------------------------------------------------------------------------

  /** Every request received, in arrival order (the last 100 000 at most). */
  get requests(): readonly RecordedRequest[] {
    return this.recorded;
  }

  /** Number of recorded requests whose path starts with `pathPrefix` (all when omitted). */
  requestCount(pathPrefix = ''): number {
    let n = 0;
    for (const r of this.recorded) if (r.path.startsWith(pathPrefix)) n++;
    return n;
  }

  /** Blocking queries currently held. */
  openLongPolls(): number {
    return this.tracker.longPolls;
  }

  /** Stops everything: answers nothing more, destroys open sockets, stops check timers and DNS. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.agent.runner.stopAll();
      this.faults.clear();
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.tracker.closeAll();
      await closed;
      await this.dns?.stop();
    })();
    return this.stopping;
  }

  // ---- request handling ---------------------------------------------------------------------

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const socket = req.socket;
    if (this.stopping !== undefined) {
      socket.destroy();
      return;
    }
    this.tracker.touch(socket);
    res.once('finish', () => this.tracker.touch(socket));
    const url = new URL(req.url ?? '/', 'http://dev');
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      path = url.pathname;
    }
    const token = extractToken(req, url.searchParams);
    this.record(req.method ?? 'GET', path, url.searchParams, token !== undefined);

    const fault = this.faults.take(path);
    if (fault?.kind === 'hang') return; // the tracker keeps the socket; stop() or the client ends it
    if (fault?.kind === 'drop') {
      resetSocket(socket);
      return;
    }
    if (fault?.kind === 'fail') {
      const ok = fault.status >= 200 && fault.status < 300;
      const base = ok
        ? { 'Content-Type': 'application/json', ...this.metaHeaders() }
        : { 'Content-Type': 'text/plain; charset=utf-8' };
      const body = fault.body ?? (ok ? '' : (http.STATUS_CODES[fault.status] ?? 'error'));
      this.tracker.send(req, res, { status: fault.status, headers: { ...base, ...fault.headers }, body }, false);
      return;
    }
    const truncate = fault?.kind === 'truncate';
    // Consul: no token = the anonymous token (default deny: it sees nothing); an unknown or
    // deleted token = 403 "ACL not found"; reads of services are filtered per instance by the
    // routes; every other endpoint needs the management token here.
    const authz = this.acl?.resolve(token);
    const open = path.startsWith('/v1/status/') || this.acl === undefined;
    const denied = open
      ? undefined
      : authz === undefined
        ? 'ACL not found'
        : !authz.management && !(req.method === 'GET' && FILTERED_READS.test(path))
          ? 'Permission denied'
          : undefined;
    if (denied !== undefined) {
      this.tracker.send(
        req,
        res,
        { status: 403, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: denied },
        truncate,
      );
      return;
    }
    const ctx: RouteContext = {
      method: req.method ?? 'GET',
      path,
      query: url.searchParams,
      readBody: () => readJsonBody(req),
      waitForIndex: (index, minIndex, waitMs) => this.tracker.waitForIndex(res, index, minIndex, waitMs),
      authz: open ? undefined : authz,
      token,
    };
    void this.api.handle(ctx).then((reply) => this.tracker.send(req, res, reply, truncate));
  }

  /** Query-meta headers for a canned 2xx answer, so that only its body is wrong. */
  private metaHeaders(): Record<string, string> {
    return {
      'X-Consul-Index': String(this.agent.state.index),
      'X-Consul-KnownLeader': 'true',
      'X-Consul-LastContact': '0',
    };
  }

  private record(method: string, path: string, params: URLSearchParams, hadToken: boolean): void {
    const query: Record<string, string | string[]> = {};
    for (const [key, value] of params) {
      if (key === 'token') continue;
      const prev = query[key];
      query[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    if (this.recorded.length >= MAX_RECORDED) this.recorded.splice(0, MAX_RECORDED / 2);
    this.recorded.push(Object.freeze({ method, path, query: Object.freeze(query), startedAt: Date.now(), hadToken }));
  }

  private nodeOfService(serviceId: string): string | undefined {
    return this.agent.state.allNodes().find((n) => this.agent.state.service(n.Node, serviceId) !== undefined)?.Node;
  }
}
