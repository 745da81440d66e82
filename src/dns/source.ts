/**
 * The DNS SRV source (docs/design.md §4.2): looks up an SRV name, resolves the targets, and hands
 * each outcome to the engine. Used as the fallback when Consul is unreachable, or as the
 * primary source when no Consul is configured (a Kubernetes headless service, Consul's
 * DNS interface on port 8600, ...).
 *
 * Semantics:
 * - RFC 2782: only the records with the lowest priority value (the preferred set) become
 *   workers; a target of "." means the service is decidedly not available (0 workers).
 * - Target addresses come from the Additional section when the server sent them, else from
 *   separate A and AAAA queries to the same servers. A target with no address (NXDOMAIN or
 *   NODATA for both) is counted in `rejected`; an *error* while resolving a target fails
 *   the whole lookup, so a transient SERVFAIL cannot shrink the worker set. One exception:
 *   a target the server REFUSES to resolve (both A and AAAA) is a host name outside its
 *   domain — Consul answers an instance registered with a host name as its address with that
 *   name as the SRV target, and refuses the name itself without `recursors` — so the worker
 *   URL carries the host name, for the coordinator's own resolver to look up.
 * - NXDOMAIN and NODATA are real answers with 0 workers; SERVFAIL, timeouts, REFUSED and
 *   malformed answers are failures (the engine keeps the last good set).
 * - After a success the next lookup is due after the smallest TTL seen (SRV and the
 *   address records used; the SOA's negative TTL for NXDOMAIN/NODATA) clamped to
 *   [minRefreshMs, maxRefreshMs]; after a failure, after a full-jitter backoff.
 */
import { getServers } from 'node:dns';
import { Backoff } from '../backoff.js';
import type { Clock, TimerHandle } from '../clock.js';
import { parseDnsServer, query } from './client.js';
import type { DnsExchange, DnsTransport } from './client.js';
import type { DnsResponse, DnsServer, SrvRecord } from './message.js';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { DnsQueryInfo, Source, SourceOutcome, SourceSink, WorkerCandidate } from '../source.js';
import { HOSTNAME, follow, isAddress, minTtl, negativeTtl, resolveTarget, toWorkers } from './srv-answer.js';

/** Fully resolved configuration of {@link DnsSrvSource}; the options module validates it and fills defaults. */
export interface DnsSrvSourceConfig {
  /** The SRV name, e.g. `_datafusion-worker._tcp.service.consul`. */
  readonly name: string;
  /** Servers to ask, in order; empty = the system resolvers (`node:dns` `getServers()`), read at start. */
  readonly servers: readonly DnsServer[];
  readonly transport: DnsTransport;
  /** URL scheme of the workers, e.g. `http`. */
  readonly scheme: string;
  /** Time allowed for each query attempt, in milliseconds. */
  readonly timeoutMs: number;
  /** Lower bound of the refresh interval (Consul's DNS TTL is 0 by default), in milliseconds. */
  readonly minRefreshMs: number;
  /** Upper bound of the refresh interval, in milliseconds. */
  readonly maxRefreshMs: number;
  /** Backoff after failures (full jitter). */
  readonly backoff: { readonly baseMs: number; readonly capMs: number };
  readonly clock: Clock;
  /** Randomness for the backoff jitter; defaults to `Math.random`. */
  readonly random?: () => number;
}

/** A successful lookup before it becomes an outcome. */
interface Found {
  readonly ok: true;
  readonly workers: readonly WorkerCandidate[];
  readonly rejected: number;
  /** Smallest TTL that applies, in seconds; undefined when the answer carried none. */
  readonly ttlSeconds: number | undefined;
}

/** A lookup's result, with the DNS exchanges it took (for client spans). */
type Lookup = (Found | { readonly ok: false; readonly error: WorkerResolverError }) & {
  readonly queries: readonly DnsQueryInfo[];
};

/** How many targets are resolved at once when the Additional section lacks their addresses. */
const TARGET_CONCURRENCY = 8;

/**
 * One SRV lookup, for `doctor` and tests. Never rejects for DNS problems (they become a
 * failure outcome whose `retryInMs` is the first backoff step); rejects with the abort
 * reason if `signal` aborts.
 */
export async function resolveSrvWorkers(config: DnsSrvSourceConfig, signal?: AbortSignal): Promise<SourceOutcome> {
  const started = config.clock.monotonic();
  const result = await lookup(config, serversOf(config), started, signal);
  const backoff = new Backoff({ ...config.backoff, ...(config.random === undefined ? {} : { random: config.random }) });
  return settle(config, result, config.clock.monotonic() - started, backoff).outcome;
}

/** Polls an SRV name on a TTL-driven schedule; see the file comment for the semantics. */
export class DnsSrvSource implements Source {
  readonly kind = 'dns' as const;
  private readonly config: DnsSrvSourceConfig;
  /** The running loop; undefined while stopped. Callbacks of a stopped run see their own run aborted. */
  private run: Run | undefined;

  constructor(config: DnsSrvSourceConfig) {
    this.config = config;
  }

  /** Starts the loop with an immediate lookup; a no-op while running. */
  start(sink: SourceSink): void {
    if (this.run !== undefined) return;
    const { backoff, random } = this.config;
    const run: Run = {
      sink,
      controller: new AbortController(),
      backoff: new Backoff({ ...backoff, ...(random === undefined ? {} : { random }) }),
      servers: serversOf(this.config),
      timer: undefined,
      inFlight: undefined,
    };
    this.run = run;
    this.refresh(run);
  }

  /** Aborts the in-flight lookup (no outcome is reported for it) and cancels the timer. Idempotent. */
  async stop(): Promise<void> {
    const run = this.run;
    if (run === undefined) return;
    this.run = undefined;
    run.controller.abort();
    run.timer?.cancel();
    // Only a throwing sink can reject a cycle; that was surfaced already, stop() still succeeds.
    await run.inFlight?.catch(() => undefined);
  }

  private refresh(run: Run): void {
    if (run.controller.signal.aborted) return;
    run.timer = undefined;
    run.inFlight = this.cycle(run);
  }

  private async cycle(run: Run): Promise<void> {
    const { clock } = this.config;
    const started = clock.monotonic();
    let result: Lookup;
    try {
      result = await lookup(this.config, run.servers, started, run.controller.signal);
    } catch {
      return; // lookup only throws when stop() aborted it: no outcome for an abandoned lookup.
    }
    if (run.controller.signal.aborted) return;
    const { outcome, nextInMs } = settle(this.config, result, clock.monotonic() - started, run.backoff);
    // Scheduled before notifying, so the loop goes on even if a sink breaks its
    // must-not-throw contract (the error then surfaces as an unhandled rejection).
    run.timer = clock.setTimeout(() => this.refresh(run), nextInMs);
    run.sink.onOutcome(outcome);
  }
}

/** State of one start()..stop() loop. */
interface Run {
  readonly sink: SourceSink;
  /** Aborted by stop(); aborts the in-flight queries and closes their sockets. */
  readonly controller: AbortController;
  /** Fresh per run: a restarted source starts from the first backoff step. */
  readonly backoff: Backoff;
  readonly servers: readonly DnsServer[];
  /** The pending refresh; undefined while a lookup is in flight. */
  timer: TimerHandle | undefined;
  /** The current lookup cycle; stop() awaits it. */
  inFlight: Promise<void> | undefined;
}

/** Turns a lookup into its outcome and the delay before the next lookup. */
function settle(
  config: DnsSrvSourceConfig,
  result: Lookup,
  durationMs: number,
  backoff: Backoff,
): { outcome: SourceOutcome; nextInMs: number } {
  const queries = result.queries.length === 0 ? {} : { dnsQueries: result.queries };
  if (!result.ok) {
    const retryInMs = backoff.next();
    const outcome = {
      ok: false,
      source: 'dns',
      error: result.error,
      durationMs,
      blocking: false,
      retryInMs,
      ...queries,
    } as const;
    return { outcome, nextInMs: retryInMs };
  }
  backoff.reset();
  const ttlMs = result.ttlSeconds === undefined ? config.minRefreshMs : result.ttlSeconds * 1000;
  const { workers, rejected } = result;
  return {
    outcome: { ok: true, source: 'dns', workers, rejected, unchanged: false, durationMs, blocking: false, ...queries },
    nextInMs: Math.min(config.maxRefreshMs, Math.max(config.minRefreshMs, ttlMs)),
  };
}

function serversOf(config: DnsSrvSourceConfig): readonly DnsServer[] {
  if (config.servers.length > 0) return config.servers;
  const servers: DnsServer[] = [];
  for (const spec of getServers()) {
    try {
      servers.push(parseDnsServer(spec, 'dns.servers'));
    } catch {
      // A system resolver we cannot address (e.g. a scoped IPv6 address) is skipped.
    }
  }
  return servers;
}

/** One SRV lookup and its targets' addresses; `started` (`clock.monotonic()`) opens the outcome's window. */
async function lookup(
  config: DnsSrvSourceConfig,
  servers: readonly DnsServer[],
  started: number,
  signal?: AbortSignal,
): Promise<Lookup> {
  // Aborted when the lookup ends, so target queries still in flight after the first
  // failure do not outlive it; follows the caller's signal.
  const local = new AbortController();
  const forward = (): void => local.abort(signal?.reason);
  signal?.addEventListener('abort', forward, { once: true });
  if (signal?.aborted === true) forward();
  // Each exchange, as a value for the client spans (the source knows nothing of tracing),
  // placed in the outcome's window, which starts at the caller's `started`.
  const queries: DnsQueryInfo[] = [];
  const onExchange = (e: DnsExchange): void => {
    queries.push({
      name: e.question.name,
      type: e.question.type,
      serverAddress: e.server.host,
      serverPort: e.server.port,
      transport: e.transport,
      startOffsetMs: Math.max(0, e.startedAt - started),
      durationMs: e.durationMs,
      ...(e.rcode === undefined ? {} : { rcode: e.rcode }),
      ...(e.error === undefined ? {} : { error: e.error }),
    });
  };
  const ask = (name: string, type: 'SRV' | 'A' | 'AAAA'): Promise<DnsResponse> =>
    query(
      { name, type },
      {
        servers,
        transport: config.transport,
        timeoutMs: config.timeoutMs,
        clock: config.clock,
        signal: local.signal,
        onExchange,
      },
    );
  const found = (f: Found): Lookup => ({ ...f, queries });
  try {
    const response = await ask(config.name, 'SRV');
    const srvs = follow(response.answers, config.name).filter((r): r is SrvRecord => r.type === 'SRV');
    if (response.rcode === 'NXDOMAIN' || srvs.length === 0 || srvs.some((r) => r.target === '.')) {
      return found({
        ok: true,
        workers: [],
        rejected: 0,
        ttlSeconds: minTtl(srvs.length > 0 ? srvs : negativeTtl(response)),
      });
    }
    const lowest = Math.min(...srvs.map((r) => r.priority));
    const preferred = srvs
      .filter((r) => r.priority === lowest)
      .sort((a, b) => b.weight - a.weight || (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
    const targets = [...new Set(preferred.filter((r) => r.port !== 0).map((r) => r.target))];
    const resolved = await mapLimit(targets, TARGET_CONCURRENCY, async (target) => {
      const given = follow(response.additionals, target).filter(isAddress);
      return given.length > 0 ? given : resolveTarget(target, ask);
    });
    const addresses = new Map(targets.map((target, i) => [target, resolved[i] ?? []]));
    const used = [...addresses.values()].flatMap((a) => (a === HOSTNAME ? [] : a));
    return found({
      ok: true,
      ...toWorkers(config.scheme, preferred, addresses),
      ttlSeconds: minTtl([...srvs, ...used]),
    });
  } catch (error) {
    if (signal?.aborted === true) throw error;
    if (error instanceof WorkerResolverError) return { ok: false, error, queries };
    // Not a DNS error but a bug or an answer shape we did not expect: still a failure
    // outcome, never an exception thrown into the loop.
    const message = error instanceof Error ? error.message : String(error);
    const cause = { cause: error };
    return {
      ok: false,
      error: new WorkerResolverError(
        ErrorCode.DNS_MALFORMED,
        `unusable DNS answer for ${config.name}: ${message}`,
        cause,
      ),
      queries,
    };
  } finally {
    signal?.removeEventListener('abort', forward);
    local.abort();
  }
}

/** Maps with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
