/**
 * The contract between a discovery source (Consul, DNS SRV, static) and the engine.
 *
 * Data flows one way: a source runs its own loop and hands each outcome to a
 * {@link SourceSink} as a value. A source never throws into the void, never knows about
 * metrics, tracing or the sidecar, and never publishes a snapshot itself: the engine
 * decides what an outcome means (publish, keep last-known-good, fail over).
 */
import type { WorkerResolverError } from './errors.js';

/** Where a snapshot's workers came from. */
export type SourceKind = 'consul' | 'dns' | 'static';

/** Health of one worker as the source reported it. DNS and static workers are `passing`. */
export type WorkerStatus = 'passing' | 'warning';

/**
 * One worker as a source found it, before the engine freezes it into a snapshot.
 * `url` is the canonical string form of the worker's base URL (`scheme://host:port`,
 * IPv6 in brackets); the engine turns it into a `URL` once per publish.
 */
export interface WorkerCandidate {
  /** Canonical base URL, e.g. `http://10.0.0.7:8080` or `http://[fd00::7]:8080`. */
  readonly url: string;
  /** Stable instance id: Consul's `Service.ID`, or `target:port` for DNS. */
  readonly id: string;
  /** Consul node name, or the SRV target for DNS. */
  readonly node: string;
  /** Host part of the URL without brackets (an IP address or a hostname). */
  readonly address: string;
  /** TCP port. */
  readonly port: number;
  /** Service tags (Consul); empty for DNS. */
  readonly tags: readonly string[];
  /** Service meta (Consul); empty for DNS. */
  readonly meta: Readonly<Record<string, string>>;
  /** Aggregated health. */
  readonly status: WorkerStatus;
  /**
   * Relative weight (Consul `Service.Weights.Passing`/`.Warning`, the SRV weight, 1 for static).
   * Informational: routing strategies may use it; the snapshot is ordered by URL regardless.
   */
  readonly weight: number;
}

/** The HTTP request behind an outcome, for client spans (no query string: it may be long; never a token). */
export interface RequestInfo {
  readonly method: 'GET';
  /** Scheme, host, port and path, e.g. `http://127.0.0.1:8500/v1/health/service/worker`. */
  readonly url: string;
  readonly serverAddress: string;
  readonly serverPort: number;
}

/** The record types a DNS source asks for: SRV, then A/AAAA for targets the answer did not resolve. */
export type DnsQuestionType = 'SRV' | 'A' | 'AAAA';

/**
 * One DNS exchange behind a DNS outcome (one server, one transport), for client spans: what
 * was asked of whom, when (relative to the start of the lookup) and what came back.
 */
export interface DnsQueryInfo {
  readonly name: string;
  readonly type: DnsQuestionType;
  readonly serverAddress: string;
  readonly serverPort: number;
  readonly transport: 'udp' | 'tcp';
  /** Milliseconds from the start of the lookup (the outcome's `durationMs` window) to this request. */
  readonly startOffsetMs: number;
  readonly durationMs: number;
  /** The answer's rcode; undefined when there was no answer. */
  readonly rcode?: string;
  /** Why the exchange failed: no answer (timeout, unreachable server, malformed answer) or an error rcode. */
  readonly error?: WorkerResolverError;
}

/** A successful answer from a source. */
export interface SourceAnswer {
  readonly ok: true;
  readonly source: SourceKind;
  /** The workers the source reports now (order irrelevant; the engine sorts and dedupes). */
  readonly workers: readonly WorkerCandidate[];
  /** How `workers` differs from the source's previous answer, when the source knows it without a scan. */
  readonly edit?: CandidateEdit;
  /** Entries the source dropped because they were not usable (bad address, bad port, ...). */
  readonly rejected: number;
  /** Consul's `X-Consul-Index` for this answer (Consul only). */
  readonly index?: number;
  /**
   * Consul only: this answer is a leader re-read — of a stale/cached answer older than the
   * last one used (`older-index`), or of one from a server out of touch with the leader
   * for longer than `maxStaleMs` (`max-stale`).
   */
  readonly reread?: 'older-index' | 'max-stale';
  /**
   * True if the source knows nothing changed since its previous answer (Consul: the index
   * did not move). The engine then only records contact; it does not diff.
   */
  readonly unchanged: boolean;
  /** Wall-clock duration of the request, in milliseconds. */
  readonly durationMs: number;
  /** True if the request was a blocking (long-poll) query whose duration includes waiting. */
  readonly blocking: boolean;
  /** The HTTP request (Consul only). */
  readonly request?: RequestInfo;
  /** The DNS exchanges of the lookup, in the order they ended (DNS only). */
  readonly dnsQueries?: readonly DnsQueryInfo[];
}

/**
 * An answer as an edit of the previous one: `workers` holds the very objects of `from`
 * except `removed`, plus `added` (new objects), in any order. A source that can say so
 * without looking at every entry (the Consul reader thread) lets the engine's build cost
 * what changed instead of what is there; the engine uses it only if `from` is the list it
 * built last, and checks it against its own records.
 */
export interface CandidateEdit {
  readonly from: readonly WorkerCandidate[];
  readonly removed: readonly WorkerCandidate[];
  readonly added: readonly WorkerCandidate[];
}

/** A failed attempt. */
export interface SourceFailure {
  readonly ok: false;
  readonly source: SourceKind;
  readonly error: WorkerResolverError;
  /** Wall-clock duration of the failed request, in milliseconds. */
  readonly durationMs: number;
  /** True if the request was a blocking (long-poll) query. */
  readonly blocking: boolean;
  /** How long the source will wait before its next attempt, in milliseconds. */
  readonly retryInMs: number;
  /** The HTTP request (Consul only). */
  readonly request?: RequestInfo;
  /** The DNS exchanges of the lookup, in the order they ended (DNS only). */
  readonly dnsQueries?: readonly DnsQueryInfo[];
}

/** What a source hands to the engine after each request. */
export type SourceOutcome = SourceAnswer | SourceFailure;

/**
 * What the resolver knows of its Consul cluster's leader: learned by the Consul source apart
 * from its answers, at a bounded rate (how, how often and why: `consul/leader.ts`). Frozen.
 */
export interface ConsulLeaderState {
  /**
   * `known`: a server reached through the agent followed a leader at `checkedAt`; `none`: the
   * agent answered but knows no leader (quorum lost, an election, or no server reachable);
   * `unknown`: the agent itself did not answer the check.
   */
  readonly leader: 'known' | 'none' | 'unknown';
  /** When this was learned (epoch milliseconds). */
  readonly checkedAt: number;
  /** When a check last saw a leader (epoch milliseconds); absent if none did yet. */
  readonly lastLeaderAt?: number;
  /** Milliseconds since a check last saw a leader at `checkedAt` (0 while `known`; since the start if none did). */
  readonly lastContactMs: number;
}

/** The engine side of a source. */
export interface SourceSink {
  /** Called once per completed request, in order. Must not throw. */
  onOutcome(outcome: SourceOutcome): void;
  /** Consul only: the leader state, after each check (changed or not). Must not throw. */
  onConsulLeader?(state: ConsulLeaderState): void;
}

/**
 * A discovery source. `start` begins its loop; `stop` ends it, aborting any in-flight
 * request and cancelling every timer. A stopped source may be started again (the engine
 * starts the DNS source on failover and stops it on failback).
 */
export interface Source {
  readonly kind: SourceKind;
  /** Begins the loop. Calling `start` on a running source is a no-op. */
  start(sink: SourceSink): void;
  /** Ends the loop; resolves once no request, socket or timer of this source remains. Idempotent. */
  stop(): Promise<void>;
}
