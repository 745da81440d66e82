/**
 * The engine: turns source outcomes into published snapshots (docs/design.md §5).
 *
 * Concurrency model: everything here runs on the event loop's single thread. Sources call
 * `onOutcome` from their own async loops; timers (damping, staleness, guard hold, no-contact
 * failover) call back in. No method awaits between reading and writing state, so each
 * callback sees and leaves a consistent state; the published snapshot is replaced by one
 * assignment, which is what makes `getUrls()` safe without locks. The one thing that takes
 * more than a turn is a large full build (a source's first answer of thousands of workers,
 * large answers, docs/performance.md): it runs in slices of a few ms, and outcomes that arrive meanwhile wait behind
 * it, in order, as if that answer had come later.
 *
 * Rules, in the order they apply to an answer:
 *  - Only the *active* source drives the snapshot: Consul normally, DNS while failed over
 *    (or when it is the only dynamic source). Other answers are remembered for later.
 *  - Last-known-good: a failure never changes the worker set.
 *  - The active source's answer goes to the publisher (`publisher.ts`): mass-failure guard,
 *    damping and staleness, and the snapshot itself.
 */
import type { Clock, TimerHandle } from './clock.js';
import { emitter } from './events.js';
import type { Emit, Logger, ResolverObserver } from './events.js';
import type { GuardConfig } from './guard.js';
import { Publisher } from './publisher.js';
import type { Offer } from './publisher.js';
import type { WorkerSnapshot } from './snapshot.js';
import { finishInTurns } from './event-loop-turns.js';
import type { BuiltWorkerSet, WorkerCache } from './worker-cache.js';
import { buildWorkerSet, startBuild } from './worker-set.js';
import type {
  ConsulLeaderState,
  Source,
  SourceAnswer,
  SourceKind,
  SourceOutcome,
  SourceSink,
  WorkerCandidate,
} from './source.js';

/** A full build of at least this many candidates runs in event-loop turns (costs: docs/performance.md). */
const SLICED_BUILD_FROM = 2_000;
/** The work a sliced build does in one turn, in ms. */
const BUILD_SLICE_MS = 5;
/** While Consul has no leader, the warning is repeated this often (not on every check). */
const NO_LEADER_LOG_EVERY_MS = 60_000;

/** Fully resolved engine settings. */
export interface EngineConfig {
  readonly service: string;
  /** The Consul source, if configured. */
  readonly consul: Source | undefined;
  /** The DNS SRV source, if configured: fallback when Consul is configured, else primary. */
  readonly dns: Source | undefined;
  /** Static workers: the only source, or the last resort before any other source answered. */
  readonly staticWorkers: readonly WorkerCandidate[] | undefined;
  readonly failoverAfterFailures: number;
  readonly failoverAfterMs: number | undefined;
  readonly maxStalenessMs: number;
  readonly guard: GuardConfig | undefined;
  readonly minPublishIntervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly observers: readonly ResolverObserver[];
}

interface Answer extends Offer {
  /** Reused by the next build of the same source (unchanged workers keep their objects). */
  readonly cache: WorkerCache;
}

/** Drives the sources and decides which answer counts; its publisher owns the snapshot. */
export class Engine {
  private readonly config: EngineConfig;
  /** Tells the observers; one that throws is logged and skipped. */
  private readonly emit: Emit;
  /** Owns the snapshot: the active source's answers go there (guard, damping, staleness). */
  private readonly publisher: Publisher;
  /** The source whose answers drive the snapshot now. */
  private active: SourceKind;
  /** True while failed over from Consul to DNS. */
  private fallbackActive = false;
  /** Consecutive Consul failures since its last success. */
  private consulFailures = 0;
  /** The last error code of the current failure streak per source (to log transitions only). */
  private readonly failureStreak = new Map<SourceKind, string>();
  /** Last successful answer per source, as built workers (an `unchanged` answer reuses it). */
  private readonly answers = new Map<SourceKind, Answer>();
  /** Wall-clock time of the last successful answer per source. */
  private readonly lastContact = new Map<SourceKind, number>();
  /** Pending from a Consul failure streak's first failure until an answer (fails over when it fires). */
  private noContactTimer: TimerHandle | undefined;
  /** Stop of the DNS source after a failback; awaited by close(). */
  private stopping: Promise<void> = Promise.resolve();
  /** Set by close(): outcomes are ignored afterwards. */
  private closed = false;
  /** Outcomes that arrived while a build ran over several turns, in order; undefined when none runs. */
  private held: SourceOutcome[] | undefined;
  /** The latest leader state the Consul source learned; undefined before its first check (or without Consul). */
  private leader: ConsulLeaderState | undefined;
  /** Monotonic time of the last "no leader" log line (−∞: none yet in this episode). */
  private noLeaderLoggedAt = Number.NEGATIVE_INFINITY;
  /** What the sources report to (one object for both, so a source never sees the engine). */
  private readonly sink: SourceSink = {
    onOutcome: (outcome: SourceOutcome): void => this.onOutcome(outcome),
    onConsulLeader: (state: ConsulLeaderState): void => this.onConsulLeader(state),
  };

  constructor(config: EngineConfig) {
    this.config = config;
    this.emit = emitter(config.observers, config.logger);
    this.publisher = new Publisher({
      service: config.service,
      maxStalenessMs: config.maxStalenessMs,
      guard: config.guard,
      minPublishIntervalMs: config.minPublishIntervalMs,
      clock: config.clock,
      logger: config.logger,
      emit: this.emit,
      lastContact: (source) => this.lastContact.get(source),
      onHoldOver: () => this.apply(this.active),
    });
    this.active = config.consul !== undefined ? 'consul' : config.dns !== undefined ? 'dns' : 'static';
  }

  /** The current snapshot; replaced, never mutated. */
  get current(): WorkerSnapshot {
    return this.publisher.current;
  }

  /** The Consul cluster's leader state as last learned (consul/leader.ts); undefined before the first check or without Consul. */
  get consulLeader(): ConsulLeaderState | undefined {
    return this.leader;
  }

  /** Starts the sources (or publishes the static set when it is the only source). */
  start(): void {
    const { consul, dns, staticWorkers } = this.config;
    if (consul !== undefined) {
      consul.start(this.sink);
    } else if (dns !== undefined) {
      dns.start(this.sink);
    } else if (staticWorkers !== undefined) {
      const set = buildWorkerSet(staticWorkers);
      this.publisher.publishStatic(set.workers, set.urls);
    }
  }

  /** Registers a listener called after each publish; returns its unsubscribe function. */
  subscribe(listener: (snapshot: WorkerSnapshot) => void): () => void {
    return this.publisher.subscribe(listener);
  }

  /** Stops every source and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.noContactTimer?.cancel();
    this.publisher.close();
    await Promise.all([this.config.consul?.stop(), this.config.dns?.stop(), this.stopping]);
  }

  /**
   * Keeps the leader state apart from the snapshot (it is about the cluster, not the worker
   * set: no publish, no new version), tells the observers, and logs: a warning when the
   * cluster has no leader, repeated once a minute while that lasts, and a line when one is
   * back.
   */
  private onConsulLeader(state: ConsulLeaderState): void {
    if (this.closed) return;
    const previous = this.leader;
    this.leader = state;
    const { logger, service, clock } = this.config;
    const seconds = Math.round(state.lastContactMs / 1000);
    if (state.leader === 'none') {
      if (previous?.leader !== 'none' || clock.monotonic() - this.noLeaderLoggedAt >= NO_LEADER_LOG_EVERY_MS) {
        this.noLeaderLoggedAt = clock.monotonic();
        logger.warn(
          `worker-resolver: Consul has no leader / last contact ${seconds}s (service "${service}"): ` +
            'the last workers it agreed on are served; health changes cannot reach them until a leader is elected',
          { service, leader: state.leader, lastContactSeconds: seconds },
        );
      }
    } else if (state.leader === 'known' && previous?.leader === 'none') {
      this.noLeaderLoggedAt = Number.NEGATIVE_INFINITY;
      const gone = previous.lastContactMs + (state.checkedAt - previous.checkedAt);
      logger.info(
        `worker-resolver: Consul has a leader again (service "${service}", none seen for ≈${Math.round(gone / 1000)}s)`,
        { service, leader: state.leader },
      );
    }
    this.emit('onConsulLeader', { service, state, previous });
  }

  private onOutcome(outcome: SourceOutcome): void {
    if (this.closed) return;
    if (this.held !== undefined) {
      this.held.push(outcome);
      return;
    }
    if (!outcome.ok || outcome.unchanged) {
      this.take(outcome, undefined);
      return;
    }
    const previous = this.answers.get(outcome.source)?.cache;
    const build = startBuild(outcome.workers, previous, outcome.edit, SLICED_BUILD_FROM, BUILD_SLICE_MS);
    if (build.set !== undefined) this.take(outcome, build.set);
    else void this.takeInTurns(outcome, build.steps);
  }

  /** Finishes a build in turns, then takes its answer and the outcomes held meanwhile, in order. */
  private async takeInTurns(answer: SourceAnswer, steps: Generator<void, BuiltWorkerSet>): Promise<void> {
    const held: SourceOutcome[] = [];
    this.held = held;
    let set: BuiltWorkerSet | undefined;
    try {
      set = await finishInTurns(steps, () => this.closed);
    } catch (err) {
      this.config.logger.error('worker-resolver: building the worker set failed; answer ignored', {
        source: answer.source,
        error: String(err),
      });
    }
    this.held = undefined;
    if (this.closed) return;
    if (set !== undefined) this.take(answer, set);
    for (const [i, outcome] of held.entries()) {
      this.onOutcome(outcome);
      // Read again: that outcome may have started a build of its own; the rest waits behind it.
      const behind = this.held as SourceOutcome[] | undefined;
      if (behind !== undefined) {
        behind.push(...held.slice(i + 1));
        return;
      }
    }
  }

  /** Applies one outcome; `set` is the built answer of an outcome that is a changed answer. */
  private take(outcome: SourceOutcome, set: BuiltWorkerSet | undefined): void {
    const { service, logger } = this.config;
    const source = outcome.source;
    let rejected = 0;
    if (outcome.ok) {
      if (set !== undefined) {
        rejected = outcome.rejected + set.rejected;
        this.answers.set(source, {
          workers: set.workers,
          urls: set.urls,
          index: outcome.index,
          cache: set.cache,
          ...(set.changes === undefined ? {} : { changes: set.changes }),
        });
      } else {
        const previous = this.answers.get(source);
        if (previous !== undefined) this.answers.set(source, { ...previous, index: outcome.index });
      }
      this.lastContact.set(source, this.config.clock.now());
      const streak = this.failureStreak.get(source);
      if (streak !== undefined) {
        this.failureStreak.delete(source);
        logger.info(`worker-resolver: ${source} answers again for service "${service}"`, { source, service });
      }
    }
    this.emit('onRefresh', { service, outcome, rejected, active: this.active === source });

    if (!outcome.ok) {
      this.onFailure(outcome.source, outcome.error.code, outcome.error.message);
    } else if (source === 'consul') {
      this.consulFailures = 0;
      this.noContactTimer?.cancel();
      this.noContactTimer = undefined;
      if (this.fallbackActive) this.failback();
    }
    if (outcome.ok && source === this.active) this.apply(source);
    this.publisher.refreshStale();
  }

  private onFailure(source: SourceKind, code: string, message: string): void {
    const { logger, service } = this.config;
    if (this.failureStreak.get(source) !== code) {
      this.failureStreak.set(source, code);
      const log = code === 'ERR_CONSUL_ACL' ? logger.error.bind(logger) : logger.warn.bind(logger);
      log(`worker-resolver: ${source} request failed for service "${service}": ${message}`, { source, service, code });
    }
    if (source === 'consul') {
      this.consulFailures += 1;
      if (this.consulFailures === 1) this.armNoContactTimer();
      if (this.consulFailures >= this.config.failoverAfterFailures) this.failover('consul-failures');
    }
    this.maybeLastResort();
  }

  private failover(reason: string): void {
    const dns = this.config.dns;
    if (this.fallbackActive || dns === undefined || this.config.consul === undefined) return;
    this.fallbackActive = true;
    this.active = 'dns';
    this.config.logger.warn(`worker-resolver: failing over from consul to dns for service "${this.config.service}"`, {
      reason,
      service: this.config.service,
    });
    this.emit('onFailover', { service: this.config.service, from: 'consul', to: 'dns', reason });
    dns.start(this.sink);
  }

  private failback(): void {
    this.fallbackActive = false;
    this.active = 'consul';
    this.config.logger.info(
      `worker-resolver: consul is back; failing back from dns for service "${this.config.service}"`,
      {
        service: this.config.service,
      },
    );
    this.emit('onFailover', { service: this.config.service, from: 'dns', to: 'consul', reason: 'consul-recovered' });
    const dns = this.config.dns;
    if (dns !== undefined) {
      const stopped = dns.stop();
      this.stopping = Promise.all([this.stopping, stopped]).then(() => undefined);
    }
    // DNS answers do not count as contact for a Consul snapshot.
    this.answers.delete('dns');
  }

  /** Before anything was published, static workers stand in once every dynamic source has failed. */
  private maybeLastResort(): void {
    const { staticWorkers, consul, dns } = this.config;
    if (staticWorkers === undefined || this.publisher.started) return;
    const consulDown = consul === undefined || this.consulFailures >= this.config.failoverAfterFailures;
    const dnsDown = dns === undefined || (this.failureStreak.has('dns') && !this.answers.has('dns'));
    if (!consulDown || !dnsDown) return;
    const set = buildWorkerSet(staticWorkers);
    this.emit('onFailover', { service: this.config.service, from: this.active, to: 'static', reason: 'last-resort' });
    this.publisher.publishStatic(set.workers, set.urls);
  }

  /** Offers the active source's latest answer to the publisher (guard, then damping). */
  private apply(source: SourceKind): void {
    const answer = this.answers.get(source);
    if (answer !== undefined) this.publisher.offer(source, answer);
  }

  /**
   * `failoverAfterMs` counts from the first failed request of a streak, not from the last
   * answer: a healthy, quiet blocking query answers only once per wait, so "no answer for N
   * ms" would fail over (and back) every period whenever N < the blocking timeout. A hung
   * agent becomes a failure when its request's own deadline passes (the client timeout).
   */
  private armNoContactTimer(): void {
    const ms = this.config.failoverAfterMs;
    if (ms === undefined || this.closed) return;
    this.noContactTimer?.cancel();
    this.noContactTimer = this.config.clock.setTimeout(() => {
      this.noContactTimer = undefined;
      this.failover('consul-no-contact');
    }, ms);
  }
}
