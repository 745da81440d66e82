/**
 * Consul's read semantics in the dev server, shared by its read endpoints: the common query
 * options (`dc`, `index`, `wait`, `stale` / `consistent` / `cached`), the holding of a
 * blocking query, and the query-meta headers (`X-Consul-Index`, `-KnownLeader`,
 * `-Effective-Consistency`, the ACL-filtered flag, the agent cache's `X-Cache` and `Age`).
 *
 * Blocking queries follow Consul's `blockingQuery`: with `?index=N` (N > 0) the request
 * is held while the endpoint's index is <= N, up to `wait` (default 5m, capped) plus a
 * random jitter of up to wait/16; then the current result is sent, changed or not.
 */
import { parseGoDuration } from '../duration.js';
import type { DevAcl } from './consul-dev-acl.js';
import type { DevAgent } from './consul-dev-agent.js';
import { ConsulApiError } from './consul-dev-decode.js';

/** What a read sees of its request (a route's context has it all). */
export interface ReadContext {
  /** Decoded path, e.g. `/v1/health/service/web`. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Holds the request until `index()` > `minIndex`, `waitMs` elapses, or the client leaves. */
  waitForIndex(index: () => number, minIndex: number, waitMs: number): Promise<void>;
  /** The request's token. */
  readonly token: string | undefined;
}

/** What the reads need of the server's options. */
export interface ReadOptions {
  readonly maxWaitMs: number;
  /** The ACL system when ACLs are enabled (default deny). */
  readonly acl: DevAcl | undefined;
  /** Source of randomness in [0, 1) for the wait jitter. */
  readonly random: () => number;
}

/** Consul's default blocking wait (5 minutes). */
const DEFAULT_WAIT_MS = 300_000;

/**
 * How long a blocking query may be held: `waitMs` (<= 0 means the default, 5m), capped at
 * `maxWaitMs`, plus a jitter in [0, wait/16), as Consul's `RandomStagger(wait / 16)`.
 */
export function blockingDeadlineMs(waitMs: number, maxWaitMs: number, random: () => number): number {
  let wait = waitMs > 0 ? waitMs : DEFAULT_WAIT_MS;
  wait = Math.min(wait, maxWaitMs);
  return wait + Math.floor(random() * (wait / 16));
}

/** Go's `strconv.ParseBool`; undefined for anything else. */
export function parseBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}

/** Consul's query options, parsed and validated. */
export interface QueryOptions {
  readonly dc: string;
  readonly minIndex: number;
  readonly waitMs: number;
  readonly consistency: 'leader' | 'stale' | 'consistent';
  readonly cached: boolean;
}

/** The agent's datacenter first, then every other one it knows, sorted. */
export function datacenters(agent: DevAgent): string[] {
  const own = agent.options.datacenter;
  return [own, ...[...agent.state.datacenters()].filter((dc) => dc !== own).sort()];
}

/** The read side of the endpoints over a {@link DevAgent}. */
export class ConsulReads {
  /** Agent-cache bookkeeping for `?cached`: per request key, the index served and when it was fetched. */
  private readonly cache = new Map<string, { index: number; fetchedAt: number }>();

  constructor(
    private readonly agent: DevAgent,
    private readonly readOptions: ReadOptions,
  ) {}

  /** Parses the common query options; throws a ConsulApiError for invalid ones (Consul's texts). */
  options(ctx: ReadContext): QueryOptions {
    const q = ctx.query;
    const stale = q.has('stale');
    const consistent = q.has('consistent');
    const cached = q.has('cached');
    if (stale && consistent)
      throw new ConsulApiError(400, 'Cannot specify ?stale with ?consistent, conflicting semantics.');
    if (cached && consistent)
      throw new ConsulApiError(400, 'Cannot use ?cached with ?consistent, conflicting semantics.');
    let waitMs = 0;
    const wait = q.get('wait') ?? '';
    if (wait !== '') {
      const parsed = parseGoDuration(wait);
      if (parsed === undefined) throw new ConsulApiError(400, 'Invalid wait time');
      waitMs = parsed;
    }
    let minIndex = 0;
    const index = q.get('index') ?? '';
    if (index !== '') {
      if (!/^\d+$/.test(index) || !Number.isSafeInteger(Number(index))) throw new ConsulApiError(400, 'Invalid index');
      minIndex = Number(index);
    }
    const dc = q.get('dc') || this.agent.options.datacenter;
    if (!datacenters(this.agent).includes(dc)) throw new ConsulApiError(500, 'No path to datacenter');
    if (this.agent.leaderLostAt !== undefined && !stale && !cached) throw new ConsulApiError(500, 'No cluster leader');
    return {
      dc,
      minIndex,
      waitMs,
      consistency: consistent ? 'consistent' : stale || cached ? 'stale' : 'leader',
      cached,
    };
  }

  /** Holds a blocking query as Consul does; returns the index to answer with (>= 1). */
  async block(ctx: ReadContext, opts: QueryOptions, index: () => number): Promise<number> {
    if (opts.minIndex > 0 && index() <= opts.minIndex) {
      await ctx.waitForIndex(
        index,
        opts.minIndex,
        blockingDeadlineMs(opts.waitMs, this.readOptions.maxWaitMs, this.readOptions.random),
      );
    }
    return Math.max(1, index());
  }

  /**
   * Query-meta headers (and agent-cache headers with `?cached`); `filtered`: ACLs removed
   * results; `streaming`: the answer comes from the agent's streaming backend, whose leader
   * headers are Consul's defaults (`KnownLeader: false`, `LastContact: 0`) whatever the
   * cluster's state — as a Consul 1.16 agent sends them (`X-Consul-Query-Backend`).
   */
  meta(
    ctx: ReadContext,
    opts: QueryOptions,
    index: number,
    filtered = false,
    streaming = false,
  ): Record<string, string> {
    const lostAt = this.agent.leaderLostAt;
    const headers: Record<string, string> = {
      'X-Consul-Index': String(index),
      'X-Consul-KnownLeader': streaming ? 'false' : String(lostAt === undefined),
      'X-Consul-LastContact': streaming || lostAt === undefined ? '0' : String(Date.now() - lostAt),
      'X-Consul-Query-Backend': streaming ? 'streaming' : 'blocking-query',
      'X-Consul-Effective-Consistency': opts.consistency,
      'X-Consul-Default-Acl-Policy': this.readOptions.acl !== undefined ? 'deny' : 'allow',
    };
    // Consul masks the flag for a request without a token (`maskResultsFilteredByACLs`): an
    // anonymous read that ACLs emptied looks exactly like "no instances".
    if (filtered && ctx.token !== undefined && ctx.token !== '') headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
    if (opts.cached) {
      const q = new URLSearchParams(ctx.query);
      for (const k of ['index', 'wait', 'token', 'cached', 'stale']) q.delete(k);
      q.sort();
      const key = `${ctx.path}?${q.toString()}`;
      const now = Date.now();
      const hit = this.cache.get(key);
      if (hit !== undefined && hit.index === index) {
        headers['X-Cache'] = 'HIT';
        headers['Age'] = String(Math.floor((now - hit.fetchedAt) / 1000));
      } else {
        headers['X-Cache'] = 'MISS';
        this.cache.set(key, { index, fetchedAt: now });
      }
    }
    return headers;
  }
}
