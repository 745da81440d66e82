/**
 * The Consul source: a blocking-query loop on `GET /v1/health/service/:service` through the
 * host's Consul agent. Each request ends in one outcome for the engine (a worker set, an
 * unchanged answer, or a coded error); the loop never throws. It also runs the leader watch
 * (`consul/leader.ts`). The contract is docs/design.md §4.1.
 *
 * ## Rules
 * Consul's documented blocking-query rules
 * (https://developer.hashicorp.com/consul/api-docs/features/blocking), and ours beside them:
 *  1. The next `index` is the last `X-Consul-Index`.
 *  2. If the index goes backwards (a restart, a snapshot restore), reset it to 0: the next
 *     request answers at once and the loop starts over from the current state.
 *  3. If the index is < 1, use 1, so a buggy 0 never turns blocking into a busy loop.
 *  4. An unchanged index means nothing changed: the answer is reported as `unchanged` and
 *     not even parsed. So is an answer whose body is byte-identical to the last one used (an
 *     index that moves while the content does not, consul#4810): its index is taken, its
 *     body is not parsed. Any other body is read incrementally ({@link IncrementalHealthParser}):
 *     only the entries whose bytes changed since the last answer are parsed, in event-loop
 *     turns of at most 5 ms (a first answer of 10,000 entries is many turns), or all of it in a
 *     worker thread (`readInThread`, see `consul/reader.ts`).
 *  5. The client timeout exceeds `wait + wait/16` (Consul adds up to wait/16 of jitter) plus
 *     a margin, so a healthy long poll is never cut by our own timer.
 *  6. A token bucket paces the loop, so an index that moves on every request (consul#4810)
 *     degrades to bounded polling, not a hot loop.
 *  7. An answer Consul marks `X-Consul-Results-Filtered-By-ACLs` is incomplete (the token
 *     cannot see some instances): an ACL error, never a worker set.
 *  8. After any failed request the next request sends index 0: the first request after an
 *     outage answers at once with the current state. Keeping the old index would make a
 *     Consul that restarted with a lower index hold the request for a whole `wait` before the
 *     rule-2 reset could happen — minutes of stale workers after every restart.
 *  9. But the index of the last answer used survives errors: an answer older than it, read
 *     from a follower (`stale`) or the agent cache (`cached`), is confirmed by a leader read
 *     (default consistency, index 0) before it is used. A lagging follower's older state is
 *     thereby never published; a Consul whose index really went backwards (a restart with a
 *     fresh data dir, a snapshot restore) says so from the leader too and is taken at once.
 * 10. With `maxStaleMs` set, a stale read whose server may be behind is re-read from the
 *     leader (consul-template's `max_stale`); if there is no leader, that read fails and the
 *     failure path keeps the last good set. "May be behind": the answer's own
 *     `X-Consul-KnownLeader: false` or `X-Consul-LastContact` > `maxStaleMs` — but a streaming
 *     answer (every blocking read of a Consul ≥ 1.10 agent) carries no such truth, so for it
 *     the leader watch decides: no leader seen for longer than `maxStaleMs`. A healthy
 *     cluster's streaming answers are thus never re-read.
 * 11. The cluster's leader state is learned apart from the answers, by a {@link ConsulLeaderWatch}
 *     (`consul/leader.ts`) through the same agent, every `leaderCheckMs`, and reported to the
 *     sink as a value of its own (`onConsulLeader`).
 *
 * ## Errors
 * Errors back off exponentially with full jitter; a 429 waits at least its `Retry-After`;
 * a 403 (ACL) waits at least `aclRetryMs`, because retrying a missing permission fast only
 * adds load. A request that reached no server — a refused connection (the local agent is
 * restarting) or an agent that knows no server yet (`No known Consul servers`: it has not
 * joined) — waits a random time below {@link REFUSED_RETRY_MS} and does not grow the backoff:
 * it costs the cluster nothing, and the first request after the agent answers again reads
 * it (rule 8) within a second instead of up to the backoff cap. The token bucket still paces
 * those retries (2/s sustained by default). 429 and other 5xx keep the full backoff: they
 * are answers from a server that is busy or has no leader. The loop never throws: each request
 * ends in exactly one outcome for the sink.
 */
import { Backoff } from '../backoff.js';
import type { Clock } from '../clock.js';
import { sleep } from '../clock.js';
import { ConsulHealthClient } from './client.js';
import { ConsulLeaderWatch } from './leader.js';
import type { ConsulClientConfig, HealthQuery } from './client.js';
import type { ConsulWorkerPolicy } from './health.js';
import { ConsulReaderThread } from './reader-thread.js';
import { AutoConsulReader } from './reader-auto.js';
import { InThreadConsulReader } from './reader.js';
import type { ConsulReader } from './reader.js';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { CandidateEdit, ConsulLeaderState, RequestInfo, Source, SourceSink, WorkerCandidate } from '../source.js';
import { TokenBucket } from '../token-bucket.js';

/**
 * With `readInThread: 'auto'`, an answer at least this large moves the loop's reading to a
 * worker thread (≈ 1,000 instances of a typical registration).
 */
export const THREAD_THRESHOLD_BYTES = 1024 * 1024;

/**
 * The longest wait after a request that reached no server (a refused connection, an agent
 * not joined). With the token bucket's default pace (2/s) the loop then asks about twice a
 * second while the agent is down, and reads it within ≈ 0.5 s of its return.
 */
export const REFUSED_RETRY_MS = 500;

/** Fully resolved settings of the Consul source (see `options.ts` for defaults and validation). */
export interface ConsulSourceConfig {
  readonly client: ConsulClientConfig;
  readonly query: HealthQuery;
  readonly policy: ConsulWorkerPolicy;
  /** Blocking wait sent to Consul, in milliseconds (≤ 10 min). */
  readonly waitMs: number;
  /** Added to `wait + wait/16` to form the client timeout, in milliseconds. */
  readonly timeoutMarginMs: number;
  /** Client timeout of a non-blocking request (the first one, and after an index reset). */
  readonly requestTimeoutMs: number;
  readonly rateLimit: { readonly ratePerSecond: number; readonly burst: number };
  readonly backoff: { readonly baseMs: number; readonly capMs: number };
  /** Minimum delay after a 403, in milliseconds. */
  readonly aclRetryMs: number;
  /** Re-read from the leader when a stale read's server may be this far behind (rule 10); undefined = off. */
  readonly maxStaleMs: number | undefined;
  /** Time between two leader checks (rule 11), in milliseconds. */
  readonly leaderCheckMs: number;
  readonly clock: Clock;
  readonly random?: () => number;
  /**
   * Make the requests and read their bodies in a `worker_threads` worker (`consul/reader.ts`):
   * the main thread then only receives what changed, and the ~20 MiB of buffers a 10 MiB answer
   * allocates — and the garbage collections they trigger — stay in the worker's isolate.
   * `'auto'` (default): from the first answer of at least {@link THREAD_THRESHOLD_BYTES} on.
   */
  readonly readInThread?: boolean | 'auto';
}

/** The client timeout for a blocking request with this wait: wait + wait/16 + margin. */
export function blockingTimeoutMs(waitMs: number, marginMs: number): number {
  return Math.ceil(waitMs + waitMs / 16 + marginMs);
}

/** Applies rules 2 and 3 above: the index to send next, given the previous and the answered index. */
export function nextIndex(previous: number, answered: number): number {
  const sane = answered < 1 ? 1 : answered;
  return sane < previous ? 0 : sane;
}

/** One request's answer, before it becomes a {@link SourceAnswer}. */
interface Attempt {
  readonly workers: WorkerCandidate[];
  /** The reader thread's edit of its previous answer (see `CandidateEdit`). */
  readonly edit?: CandidateEdit;
  readonly rejected: number;
  readonly index: number;
  readonly unchanged: boolean;
  /** With `unchanged`: the index moved but the body is byte-identical to the last one used. */
  readonly sameBody?: boolean;
  readonly knownLeader?: boolean;
  readonly lastContactMs?: number;
  readonly reread?: 'older-index' | 'max-stale';
}

/** What a client span says about the health request (the address carries no credentials: options reject them). */
function requestInfo(config: ConsulSourceConfig): RequestInfo {
  const { address } = config.client;
  const secure = address.protocol === 'https:';
  const port = address.port === '' ? (secure ? 443 : 80) : Number(address.port);
  return {
    method: 'GET',
    url: `${address.protocol}//${address.host}/v1/health/service/${encodeURIComponent(config.query.service)}`,
    serverAddress: address.hostname.replace(/^\[|\]$/g, ''),
    serverPort: port,
  };
}

/** Long-polls Consul health for one service. */
export class ConsulSource implements Source {
  readonly kind = 'consul' as const;
  private readonly config: ConsulSourceConfig;
  /** Present only while running; replaced on each start (a stopped reader cannot be reused). */
  private reader: ConsulReader | undefined;
  /** Aborts the running loop's request and sleeps; undefined while stopped. */
  private abort: AbortController | undefined;
  /** Settles when the running loop has fully exited; undefined while stopped. */
  private loop: Promise<void> | undefined;
  /** Learns the leader state (rule 11); present only while running. */
  private leader: { readonly watch: ConsulLeaderWatch; readonly client: ConsulHealthClient } | undefined;

  constructor(config: ConsulSourceConfig) {
    this.config = config;
  }

  start(sink: SourceSink): void {
    if (this.abort !== undefined) return;
    const abort = new AbortController();
    this.abort = abort;
    const { client, policy } = this.config;
    const mode = this.config.readInThread ?? 'auto';
    this.reader =
      mode === 'auto'
        ? new AutoConsulReader(client, policy, THREAD_THRESHOLD_BYTES)
        : mode
          ? new ConsulReaderThread(client, policy)
          : new InThreadConsulReader(new ConsulHealthClient(client), policy);
    const watch = new ConsulLeaderWatch({
      intervalMs: this.config.leaderCheckMs,
      timeoutMs: this.config.requestTimeoutMs,
      clock: this.config.clock,
    });
    this.leader = { watch, client: new ConsulHealthClient(client) };
    watch.start(this.leader.client, (state: ConsulLeaderState) => sink.onConsulLeader?.(state));
    this.loop = this.run(this.reader, sink, abort.signal);
  }

  async stop(): Promise<void> {
    const abort = this.abort;
    const loop = this.loop;
    const reader = this.reader;
    const leader = this.leader;
    this.abort = undefined;
    this.loop = undefined;
    this.reader = undefined;
    this.leader = undefined;
    if (abort === undefined) return;
    abort.abort();
    await Promise.all([loop, leader?.watch.stop()]);
    leader?.client.destroy();
    await reader?.close();
  }

  private async run(reader: ConsulReader, sink: SourceSink, signal: AbortSignal): Promise<void> {
    const { clock } = this.config;
    const bucket = new TokenBucket({ ...this.config.rateLimit, clock });
    const backoff = new Backoff({
      ...this.config.backoff,
      ...(this.config.random ? { random: this.config.random } : {}),
    });
    const request = requestInfo(this.config);
    /** What the next request sends: 0 (answer at once) at start, after an error and after a reset. */
    let index = 0;
    /** `X-Consul-Index` of the last answer handed to the sink; survives errors (rule 9). */
    let lastIndex = 0;
    while (!signal.aborted) {
      const pace = bucket.take();
      if (pace > 0 && !(await sleep(clock, pace, signal))) return;

      const blocking = index > 0;
      const started = clock.monotonic();
      const result = await this.fetch(reader, index, lastIndex, signal);
      if (signal.aborted) return;
      const durationMs = clock.monotonic() - started;

      if (result instanceof WorkerResolverError) {
        const retryInMs = this.retryDelay(result, backoff);
        sink.onOutcome({ ok: false, source: 'consul', error: result, durationMs, blocking, retryInMs, request });
        index = 0;
        if (!(await sleep(clock, retryInMs, signal))) return;
        continue;
      }
      backoff.reset();
      // The answering server's leader headers served rule 10 only; the leader state travels apart.
      sink.onOutcome({
        ok: true,
        source: 'consul',
        workers: result.workers,
        ...(result.edit === undefined ? {} : { edit: result.edit }),
        rejected: result.rejected,
        index: result.index,
        unchanged: result.unchanged,
        ...(result.reread === undefined ? {} : { reread: result.reread }),
        durationMs,
        blocking,
        request,
      });
      const sameBody = result.sameBody;
      if (!result.unchanged || sameBody === true) {
        index = nextIndex(index, result.index);
        lastIndex = result.index;
      }
    }
  }

  /**
   * One answer as the loop uses it: the answer to `index`, or — when rule 9 or 10 applies —
   * the leader's answer that confirms or replaces it.
   */
  private async fetch(
    reader: ConsulReader,
    index: number,
    lastIndex: number,
    signal: AbortSignal,
  ): Promise<Attempt | WorkerResolverError> {
    const { query, maxStaleMs } = this.config;
    const answer = await this.attempt(reader, index, query, signal, true);
    // A same-body answer still carries a new index: rules 9 and 10 apply to it as to any other.
    if (answer instanceof WorkerResolverError || (answer.unchanged && answer.sameBody !== true)) return answer;
    if (query.consistency !== 'stale' && query.consistency !== 'cached') return answer;
    const older = answer.index < lastIndex;
    const tooStale = maxStaleMs !== undefined && query.consistency === 'stale' && this.mayBeBehind(answer, maxStaleMs);
    if (!older && !tooStale) return answer;
    if (signal.aborted) return answer;
    // Not compared with the last body: that is now the answer being checked, not the one in use.
    const confirmed = await this.attempt(reader, 0, { ...query, consistency: 'default' }, signal, false);
    if (confirmed instanceof WorkerResolverError) {
      // The reader now holds the body that was not used: it must not make a later copy of it "unchanged".
      reader.reset();
      return confirmed;
    }
    return { ...confirmed, reread: older ? 'older-index' : 'max-stale' };
  }

  /**
   * One request and what it means, as a value: the answer's workers, "unchanged" (rule 4),
   * or the coded error that ends this attempt (rules 7 and the transport/body errors).
   */
  private async attempt(
    reader: ConsulReader,
    index: number,
    query: HealthQuery,
    signal: AbortSignal,
    compareBody: boolean,
  ): Promise<Attempt | WorkerResolverError> {
    const { waitMs } = this.config;
    const blocking = index > 0;
    const timeoutMs = blocking ? blockingTimeoutMs(waitMs, this.config.timeoutMarginMs) : this.config.requestTimeoutMs;
    const answer = await reader.health(query, { index, waitMs, timeoutMs, signal, compareBody });
    if (answer instanceof WorkerResolverError) return answer;
    if (answer.index === undefined) {
      // Without an index the loop cannot block; treat the answer as malformed rather than
      // silently degrading to a hot poll.
      return new WorkerResolverError(ErrorCode.CONSUL_MALFORMED, 'Consul answer has no valid X-Consul-Index header');
    }
    if (answer.filteredByAcls) {
      // Consul dropped instances this token may not see (typically no node:read): the list is
      // incomplete, so it must not replace the last good set. Reported like a 403.
      return new WorkerResolverError(
        ErrorCode.CONSUL_ACL,
        this.config.client.token === undefined
          ? `Consul answered an empty list for service "${query.service}" to a request without a token, under ` +
              'default-deny ACLs: set CONSUL_HTTP_TOKEN (or a token file) to a token with service:read on it and node:read on its nodes'
          : `Consul filtered the answer for service "${query.service}" by ACLs ` +
              '(X-Consul-Results-Filtered-By-ACLs): the token needs service:read on it and node:read on its nodes',
      );
    }
    const leader = {
      ...(answer.knownLeader === undefined ? {} : { knownLeader: answer.knownLeader }),
      ...(answer.lastContactMs === undefined ? {} : { lastContactMs: answer.lastContactMs }),
    };
    if (answer.body === 'unread') return { workers: [], rejected: 0, index, unchanged: true, ...leader };
    if (answer.body === 'same') {
      return { workers: [], rejected: 0, index: answer.index, unchanged: true, sameBody: true, ...leader };
    }
    return {
      workers: answer.workers,
      ...(answer.edit === undefined ? {} : { edit: answer.edit }),
      rejected: answer.rejected,
      index: answer.index,
      unchanged: false,
      ...leader,
    };
  }

  /** Rule 10: the answer's own leader headers when it has them, else (streaming) the leader watch. */
  private mayBeBehind(answer: Attempt, maxStaleMs: number): boolean {
    if (answer.knownLeader !== undefined || answer.lastContactMs !== undefined) {
      return answer.knownLeader === false || (answer.lastContactMs ?? 0) > maxStaleMs;
    }
    const state = this.leader?.watch.current;
    if (state?.leader !== 'none') return false;
    const sinceLeader = this.config.clock.now() - (state.lastLeaderAt ?? state.checkedAt - state.lastContactMs);
    return sinceLeader > maxStaleMs;
  }

  private retryDelay(error: WorkerResolverError, backoff: Backoff): number {
    if (error.reachedNoServer) return Math.floor((this.config.random ?? Math.random)() * REFUSED_RETRY_MS);
    const delay = backoff.next();
    if (error.code === ErrorCode.CONSUL_RATE_LIMITED) return Math.max(delay, error.retryAfterMs ?? 0);
    if (error.code === ErrorCode.CONSUL_ACL) return Math.max(delay, this.config.aclRetryMs);
    return delay;
  }
}
