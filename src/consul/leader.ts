/**
 * The Consul cluster's leader state, as the resolver learns it (docs/design.md §4.1).
 *
 * Why not the answer headers. On Consul ≥ 1.10 agents a blocking health read (`?index=N`) is
 * served by the streaming backend (`X-Consul-Query-Backend: streaming`): the agent answers
 * from its own materialised view, and the answer's `X-Consul-KnownLeader: false` and
 * `X-Consul-LastContact: 0` are defaults, whatever the cluster's state — they would raise
 * "no leader" on every healthy cluster and hide a real quorum loss behind the same values.
 * The client reads those two headers as unknown on a streaming answer (`client.ts`); the
 * leader state comes from here instead.
 *
 * Where it is learned: `GET /v1/status/leader` through the same agent the resolver reads (its
 * token, its TLS). A client agent forwards it as the `Status.Leader` RPC to one of its servers
 * (retrying another server when one is down), which answers its own Raft view: the leader's
 * address, or `""` while it knows none (quorum lost, or an election under way).
 *
 * How often: once per `intervalMs` (default 15 s), never per answer, one request at a time.
 * Cost: a client-agent RPC answered from a server's memory (no state store read, no ACL
 * resolution, a ~20-byte body) — 1,000 sidecars at 15 s are ≈ 67 such RPCs/s spread over
 * the servers, against the one long poll each sidecar already holds.
 *
 * What it means:
 *  - `known`: at `checkedAt` a server reached through the agent followed a leader.
 *  - `none`: the agent answered, but no leader: the server it reached knows none (`""`), or
 *    a server's error came back (a 5xx). Writes cannot commit; the workers served are the
 *    last ones the cluster agreed on, and health changes since then are not seen.
 *  - `unknown`: not learned yet, or the check reached no server (refused: the agent is down;
 *    `No known Consul servers`: it has not joined), or timed out: the resolver's own health
 *    reads fail too, and that is reported as such, not as "no leader".
 *  - `lastContactMs`: how long ago a check last saw a leader (0 while `known`); while none has
 *    been seen since the watch started, how long ago it started.
 * A quorum loss therefore shows within one interval plus Raft's own detection (measured on a
 * real 3-server cluster: docs/reference.md, "The Consul leader"), and a returning leader
 * within one interval.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { ConsulLeaderState } from '../source.js';
import { ErrorCode, WorkerResolverError } from '../errors.js';
import type { ConsulHealthClient } from './client.js';

/** Default time between two checks. */
export const LEADER_CHECK_MS = 15_000;

/** Settings of a {@link ConsulLeaderWatch}. */
export interface LeaderWatchConfig {
  /** Time between the end of one check and the start of the next, in milliseconds. */
  readonly intervalMs: number;
  /** Client timeout of one check, in milliseconds. */
  readonly timeoutMs: number;
  readonly clock: Clock;
}

/** What a check learned: a leader's address (maybe `''`), or the error of the request. */
export type LeaderCheck = string | WorkerResolverError;

/** The state a check leads to, given the previous one (pure: the rules above). */
export function nextLeaderState(
  check: LeaderCheck,
  previous: ConsulLeaderState | undefined,
  startedAt: number,
  now: number,
): ConsulLeaderState {
  const lastSeen = previous?.lastLeaderAt;
  const since = (at: number | undefined): number => Math.max(0, now - (at ?? startedAt));
  if (typeof check === 'string' && check !== '') {
    return Object.freeze({ leader: 'known', checkedAt: now, lastLeaderAt: now, lastContactMs: 0 });
  }
  // A 5xx is a server's answer relayed by the agent (no leader to forward to): as good as `""`.
  // An agent that reached no server at all (refused, not joined) says nothing of the cluster.
  const none =
    typeof check === 'string' || (check.status !== undefined && check.status >= 500 && !check.reachedNoServer);
  return Object.freeze({
    leader: none ? 'none' : 'unknown',
    checkedAt: now,
    ...(lastSeen === undefined ? {} : { lastLeaderAt: lastSeen }),
    lastContactMs: since(lastSeen),
  });
}

/**
 * Asks the agent for the leader every `intervalMs` while started, and reports each state it
 * learns (every check, changed or not: `lastContactMs` grows while no leader is known).
 */
export class ConsulLeaderWatch {
  private readonly config: LeaderWatchConfig;
  /** The latest state; undefined until the first check ends. */
  private state: ConsulLeaderState | undefined;
  /** Aborts the check in flight and the wait; undefined while stopped. */
  private abort: AbortController | undefined;
  /** The pending wait before the next check; undefined while a check runs or while stopped. */
  private timer: TimerHandle | undefined;
  /** Settles when the check in flight (if any) has ended. */
  private running: Promise<void> = Promise.resolve();

  constructor(config: LeaderWatchConfig) {
    this.config = config;
  }

  /** The latest state (undefined before the first check ended). */
  get current(): ConsulLeaderState | undefined {
    return this.state;
  }

  /** Starts checking at once, then every `intervalMs`. A started watch ignores a second start. */
  start(client: ConsulHealthClient, report: (state: ConsulLeaderState) => void): void {
    if (this.abort !== undefined) return;
    const abort = new AbortController();
    this.abort = abort;
    const startedAt = this.config.clock.now();
    const check = (): void => {
      this.timer = undefined;
      this.running = this.check(client, abort.signal, startedAt, report).then(() => {
        if (!abort.signal.aborted) this.timer = this.config.clock.setTimeout(check, this.config.intervalMs);
      });
    };
    check();
  }

  /** Stops: aborts the check in flight, cancels the next one. Idempotent. */
  async stop(): Promise<void> {
    this.abort?.abort();
    this.abort = undefined;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running;
  }

  private async check(
    client: ConsulHealthClient,
    signal: AbortSignal,
    startedAt: number,
    report: (state: ConsulLeaderState) => void,
  ): Promise<void> {
    let result: LeaderCheck;
    try {
      result = await client.leader(this.config.timeoutMs, signal);
    } catch (err) {
      result =
        err instanceof WorkerResolverError ? err : new WorkerResolverError(ErrorCode.CONSUL_UNREACHABLE, String(err));
    }
    if (signal.aborted) return;
    this.state = nextLeaderState(result, this.state, startedAt, this.config.clock.now());
    report(this.state);
  }
}
