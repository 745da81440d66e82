/**
 * The endpoints of the Consul dev server, as functions from a request context to a reply
 * value. Sockets, ACLs, faults and the holding of blocking queries live in the server;
 * this file decides what Consul would answer. The read endpoints' common query options,
 * blocking and query-meta headers are `consul-dev-reads.ts`.
 */
import type { HealthServiceEntry } from './consul-api-types.js';
import { ConsulApiError } from './consul-dev-decode.js';
import type { DevAgent } from './consul-dev-agent.js';
import type { AclAuthorizer, DevAcl } from './consul-dev-acl.js';
import { FilterExpressionError, compileFilter } from './consul-filter.js';
import type { FilterPredicate } from './consul-filter.js';
import { ConsulReads, datacenters, parseBool } from './consul-dev-reads.js';

/** A complete answer, written by the server in one go (or truncated, or not at all). */
export interface Reply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** What a route sees of a request. */
export interface RouteContext {
  readonly method: string;
  /** Decoded path, e.g. `/v1/health/service/web`. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Reads and JSON-decodes the body; a decode failure is a 400 ConsulApiError. */
  readBody(): Promise<unknown>;
  /** Holds the request until `index()` > `minIndex`, `waitMs` elapses, or the client leaves. */
  waitForIndex(index: () => number, minIndex: number, waitMs: number): Promise<void>;
  /** The request token's rights; undefined when ACLs are off. */
  readonly authz: AclAuthorizer | undefined;
  /** The request's token (for `/v1/acl/token/self`). */
  readonly token: string | undefined;
}

/** Options of {@link ConsulDevApi}. */
export interface ConsulDevApiOptions {
  readonly maxWaitMs: number;
  /** The ACL system when ACLs are enabled (default deny). */
  readonly acl: DevAcl | undefined;
  /** Source of randomness in [0, 1) for the wait jitter. */
  readonly random: () => number;
  /** Index churn: every health query bumps its service's index first (consul#4810 hot loop). */
  readonly churn: () => boolean;
}

const text = (status: number, body: string, headers: Record<string, string> = {}): Reply => ({
  status,
  headers: { 'Content-Type': 'text/plain; charset=utf-8', ...headers },
  body,
});
const empty: Reply = { status: 200, headers: {}, body: '' };
const json = (body: unknown, headers: Record<string, string> = {}): Reply => ({
  status: 200,
  headers: { 'Content-Type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

type Route = (ctx: RouteContext, rest: string) => Promise<Reply> | Reply;

/** The endpoints over a {@link DevAgent}. */
export class ConsulDevApi {
  /** Query options, blocking and query-meta headers of the read endpoints. */
  private readonly reads: ConsulReads;
  /** Routes by method and path prefix; a prefix ending in '/' takes the rest of the path as its argument. */
  private readonly routes: ReadonlyArray<readonly [method: string, prefix: string, route: Route]>;

  constructor(
    private readonly agent: DevAgent,
    private readonly options: ConsulDevApiOptions,
  ) {
    this.reads = new ConsulReads(agent, options);
    const a = agent;
    const nodeName = a.options.nodeName;
    this.routes = [
      ['GET', '/v1/health/service/', (ctx, name) => this.healthService(ctx, name)],
      ['GET', '/v1/health/checks/', (ctx, name) => this.healthChecks(ctx, name)],
      ['GET', '/v1/catalog/services', (ctx) => this.catalogServices(ctx)],
      ['GET', '/v1/catalog/service/', (ctx, name) => this.catalogService(ctx, name)],
      ['GET', '/v1/catalog/nodes', (ctx) => this.catalogNodes(ctx)],
      ['GET', '/v1/catalog/datacenters', () => json(datacenters(a))],
      ['GET', '/v1/status/leader', () => json(a.leaderLostAt === undefined ? `${a.options.nodeAddress}:8300` : '')],
      ['GET', '/v1/status/peers', () => json([`${a.options.nodeAddress}:8300`])],
      ['GET', '/v1/agent/self', () => json(this.agentSelf())],
      [
        'GET',
        '/v1/agent/checks',
        () => json(Object.fromEntries(a.state.checksOf(nodeName).map((c) => [c.CheckID, c]))),
      ],
      ['GET', '/v1/agent/services', () => json(Object.fromEntries(a.state.servicesOf(nodeName).map((s) => [s.ID, s])))],
      ['PUT', '/v1/agent/service/register', async (ctx) => (a.registerService(await ctx.readBody()), empty)],
      ['PUT', '/v1/agent/service/deregister/', (_ctx, id) => (a.deregisterService(id), empty)],
      [
        'PUT',
        '/v1/agent/service/maintenance/',
        (ctx, id) => (a.setServiceMaintenance(id, enableParam(ctx), ctx.query.get('reason') ?? ''), empty),
      ],
      [
        'PUT',
        '/v1/agent/maintenance',
        (ctx) => (a.setNodeMaintenance(nodeName, enableParam(ctx), ctx.query.get('reason') ?? ''), empty),
      ],
      ['PUT', '/v1/agent/check/pass/', (ctx, id) => this.ttlUpdate(ctx, id, 'passing')],
      ['PUT', '/v1/agent/check/warn/', (ctx, id) => this.ttlUpdate(ctx, id, 'warning')],
      ['PUT', '/v1/agent/check/fail/', (ctx, id) => this.ttlUpdate(ctx, id, 'critical')],
      ['PUT', '/v1/agent/check/update/', async (ctx, id) => this.checkUpdate(await ctx.readBody(), id)],
      ['PUT', '/v1/catalog/register', async (ctx) => (a.catalogRegister(await ctx.readBody()), json(true))],
      ['PUT', '/v1/catalog/deregister', async (ctx) => (a.catalogDeregister(await ctx.readBody()), json(true))],
      ...this.aclRoutes(),
    ];
  }

  /** The ACL endpoints (only with ACLs on; the server lets only the management token reach them). */
  private aclRoutes(): Array<readonly [string, string, Route]> {
    const acl = this.options.acl;
    if (acl === undefined) return [];
    return [
      ['PUT', '/v1/acl/policy', async (ctx) => json(acl.policyJson(acl.createPolicy(await ctx.readBody())))],
      ['GET', '/v1/acl/policy/', (_ctx, id) => json(acl.policyJson(id))],
      ['GET', '/v1/acl/token/self', (ctx) => json(acl.self(ctx.token))],
      ['PUT', '/v1/acl/token', async (ctx) => json(acl.upsertToken(await ctx.readBody()))],
      ['PUT', '/v1/acl/token/', async (ctx, id) => json(acl.upsertToken(await ctx.readBody(), id))],
      ['GET', '/v1/acl/token/', (_ctx, id) => json(acl.readToken(id))],
      ['DELETE', '/v1/acl/token/', (_ctx, id) => (acl.deleteToken(id), json(true))],
    ];
  }

  /** Answers one request (never rejects: errors become Consul-shaped replies). */
  async handle(ctx: RouteContext): Promise<Reply> {
    const matching = this.routes.filter(([, prefix]) =>
      prefix.endsWith('/') ? ctx.path.startsWith(prefix) && ctx.path.length > prefix.length : ctx.path === prefix,
    );
    if (matching.length === 0) return text(404, '404 page not found\n');
    const method = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    const found = matching.find(([m]) => m === method);
    if (found === undefined)
      return text(405, `method ${ctx.method} not allowed`, { Allow: [...new Set(matching.map(([m]) => m))].join(',') });
    const [, prefix, route] = found;
    try {
      return await route(ctx, ctx.path.slice(prefix.length));
    } catch (err) {
      if (err instanceof ConsulApiError) return text(err.status, err.message);
      return text(500, err instanceof Error ? err.message : String(err));
    }
  }

  /** `GET /v1/health/service/:service`. */
  private async healthService(ctx: RouteContext, name: string): Promise<Reply> {
    const q = ctx.query;
    const opts = this.reads.options(ctx);
    const passing = q.has('passing') ? (q.get('passing') === '' ? true : parseBool(q.get('passing') ?? '')) : false;
    if (passing === undefined) throw new ConsulApiError(400, 'Invalid value for ?passing');
    const filter = filterParam(q.get('filter'));
    const tags = q.getAll('tag').map((t) => t.toLowerCase());
    const nodeMeta = nodeMetaParam(q);
    const state = this.agent.state;
    if (this.options.churn()) state.bumpIndex(name);
    const index = await this.reads.block(ctx, opts, () => state.serviceIndex(name));
    let entries = state
      .healthEntries(name)
      .filter(
        (e) =>
          e.Node.Datacenter === opts.dc &&
          tags.every((t) => e.Service.Tags.some((s) => s.toLowerCase() === t)) &&
          nodeMeta.every(([k, v]) => e.Node.Meta[k] === v) &&
          (!passing || e.Checks.every((c) => c.Status === 'passing')) &&
          (filter === undefined || filter(e)),
      );
    const visible = entries.filter((e) => ctx.authz?.canRead(e.Node.Node, e.Service.Service) ?? true);
    const filtered = visible.length < entries.length;
    entries = this.near(visible, q.get('near'));
    // Consul ≥ 1.10 (`agent/rpcclient/health`): a blocking or cached health read without `near`
    // is served by the agent's streaming backend.
    const streaming = (opts.minIndex > 0 || opts.cached) && !q.has('near');
    return json(entries, this.reads.meta(ctx, opts, index, filtered, streaming));
  }

  /** `GET /v1/health/checks/:service`. */
  private async healthChecks(ctx: RouteContext, name: string): Promise<Reply> {
    const opts = this.reads.options(ctx);
    const state = this.agent.state;
    const index = await this.reads.block(ctx, opts, () => state.serviceIndex(name));
    const all = state.healthEntries(name).filter((e) => e.Node.Datacenter === opts.dc);
    const visible = all.filter((e) => ctx.authz?.canRead(e.Node.Node, e.Service.Service) ?? true);
    const checks = visible.flatMap((e) => e.Checks.filter((c) => c.ServiceID === e.Service.ID));
    return json(checks, this.reads.meta(ctx, opts, index, visible.length < all.length));
  }

  /** `GET /v1/catalog/services`: service name -> union of tags. */
  private async catalogServices(ctx: RouteContext): Promise<Reply> {
    const opts = this.reads.options(ctx);
    const nodeMeta = nodeMetaParam(ctx.query);
    const state = this.agent.state;
    const index = await this.reads.block(ctx, opts, () => state.servicesTableIndex());
    const out: Record<string, string[]> = {};
    let filtered = false;
    for (const name of state.serviceNames()) {
      if (ctx.authz !== undefined && !ctx.authz.serviceRead(name)) {
        filtered = true;
        continue;
      }
      const entries = state
        .healthEntries(name)
        .filter((e) => e.Node.Datacenter === opts.dc && nodeMeta.every(([k, v]) => e.Node.Meta[k] === v));
      if (entries.length > 0) out[name] = [...new Set(entries.flatMap((e) => e.Service.Tags))].sort();
    }
    return json(out, this.reads.meta(ctx, opts, index, filtered));
  }

  /** `GET /v1/catalog/service/:service` (Consul's flat `CatalogService` shape). */
  private async catalogService(ctx: RouteContext, name: string): Promise<Reply> {
    const opts = this.reads.options(ctx);
    if ((ctx.query.get('filter') ?? '') !== '') {
      throw new ConsulApiError(
        400,
        'Failed to create boolean expression evaluator: the dev server supports ?filter on /v1/health/service only',
      );
    }
    const tags = ctx.query.getAll('tag').map((t) => t.toLowerCase());
    const nodeMeta = nodeMetaParam(ctx.query);
    const state = this.agent.state;
    const index = await this.reads.block(ctx, opts, () => state.serviceIndex(name));
    const entries = state
      .healthEntries(name)
      .filter(
        (e) =>
          e.Node.Datacenter === opts.dc &&
          tags.every((t) => e.Service.Tags.some((s) => s.toLowerCase() === t)) &&
          nodeMeta.every(([k, v]) => e.Node.Meta[k] === v),
      );
    const visible = entries.filter((e) => ctx.authz?.canRead(e.Node.Node, e.Service.Service) ?? true);
    const body = this.near(visible, ctx.query.get('near')).map(({ Node: n, Service: s }) => ({
      ID: n.ID,
      Node: n.Node,
      Address: n.Address,
      Datacenter: n.Datacenter,
      TaggedAddresses: n.TaggedAddresses,
      NodeMeta: n.Meta,
      ServiceID: s.ID,
      ServiceName: s.Service,
      ServiceTags: s.Tags,
      ServiceAddress: s.Address,
      ServiceTaggedAddresses: s.TaggedAddresses ?? {},
      ServiceWeights: s.Weights,
      ServiceMeta: s.Meta,
      ServicePort: s.Port,
      ServiceEnableTagOverride: s.EnableTagOverride,
      CreateIndex: s.CreateIndex,
      ModifyIndex: s.ModifyIndex,
    }));
    return json(body, this.reads.meta(ctx, opts, index, visible.length < entries.length));
  }

  /** `GET /v1/catalog/nodes`. */
  private async catalogNodes(ctx: RouteContext): Promise<Reply> {
    const opts = this.reads.options(ctx);
    const state = this.agent.state;
    const index = await this.reads.block(ctx, opts, () => state.nodesTableIndex());
    const nodes = state.allNodes().filter((n) => n.Datacenter === opts.dc);
    const visible = nodes.filter((n) => ctx.authz?.nodeRead(n.Node) ?? true);
    return json(visible, this.reads.meta(ctx, opts, index, visible.length < nodes.length));
  }

  private ttlUpdate(ctx: RouteContext, checkId: string, status: string): Reply {
    this.agent.updateCheck(checkId, status, ctx.query.get('note') ?? '', {
      node: this.agent.options.nodeName,
      ttlOnly: true,
    });
    return empty;
  }

  private checkUpdate(body: unknown, checkId: string): Reply {
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const status = b['Status'] ?? b['status'];
    const output = b['Output'] ?? b['output'] ?? '';
    if (typeof status !== 'string' || typeof output !== 'string')
      throw new ConsulApiError(400, `Invalid check status: "${String(status)}"`);
    this.agent.updateCheck(checkId, status, output, { node: this.agent.options.nodeName, ttlOnly: true });
    return empty;
  }

  private agentSelf(): unknown {
    const o = this.agent.options;
    return {
      Config: {
        Datacenter: o.datacenter,
        NodeName: o.nodeName,
        NodeID: this.agent.state.node(o.nodeName)?.ID ?? '',
        Server: true,
        Revision: 'dev',
        Version: '1.20.0-worker-resolver-dev',
      },
      Member: {
        Name: o.nodeName,
        Addr: o.nodeAddress,
        Port: 8301,
        Tags: { dc: o.datacenter, role: 'consul', build: '1.20.0' },
        Status: 1,
      },
      Meta: { 'consul-network-segment': '' },
    };
  }

  /** `?near=`: the named node (or the agent's for `_agent`) first, the rest in node order. */
  private near(entries: HealthServiceEntry[], near: string | null): HealthServiceEntry[] {
    if (near === null || near === '') return entries;
    const target = near === '_agent' ? this.agent.options.nodeName : near;
    return [...entries.filter((e) => e.Node.Node === target), ...entries.filter((e) => e.Node.Node !== target)];
  }
}

function enableParam(ctx: RouteContext): boolean {
  const raw = ctx.query.get('enable');
  if (raw === null || raw === '') throw new ConsulApiError(400, 'Missing value for enable');
  const value = parseBool(raw);
  if (value === undefined) throw new ConsulApiError(400, `Invalid value for enable: "${raw}"`);
  return value;
}

function filterParam(expr: string | null): FilterPredicate | undefined {
  if (expr === null || expr.trim() === '') return undefined;
  try {
    return compileFilter(expr);
  } catch (err) {
    const msg = err instanceof FilterExpressionError ? err.message : String(err);
    // Consul 1.16 answers a filter it cannot compile with a 500 (from its RPC layer), as here.
    throw new ConsulApiError(500, `Failed to create boolean expression evaluator: ${msg}`);
  }
}

/** `?node-meta=key:value` (repeatable, all must match). */
function nodeMetaParam(q: URLSearchParams): Array<[string, string]> {
  return q.getAll('node-meta').map((kv) => {
    const at = kv.indexOf(':');
    return at < 0 ? [kv, ''] : [kv.slice(0, at), kv.slice(at + 1)];
  });
}
