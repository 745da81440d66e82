/**
 * The engine: turns source outcomes into published snapshots (DESIGN §5).
 *
 * Concurrency model: everything here runs on the event loop's single thread. Sources call
 * `onOutcome` from their own async loops; timers (damping, staleness, guard hold, no-contact
 * failover) call back in. No method awaits between reading and writing state, so each
 * callback sees and leaves a consistent state; the published snapshot is replaced by one
 * assignment, which is what makes `getUrls()` safe without locks. The one thing that takes
 * more than a turn is a large full build (a source's first answer of thousands of workers,
 * issue #13): it runs in slices of a few ms, and outcomes that arrive meanwhile wait behind
 * it, in order, as if that answer had come later.
 *
 * Rules, in the order they apply to an answer:
 *  - Only the *active* source drives the snapshot: Consul normally, DNS while failed over
 *    (or when it is the only dynamic source). Other answers are remembered for later.
 *  - Last-known-good: a failure never changes the worker set.
 *  - Mass-failure guard: a set smaller than `threshold` × the last good set is held back for
 *    `holdMs` (flagged `guarded`), then accepted if the source still insists.
 *  - Damping: at most one publish per `minPublishIntervalMs`; later states replace pending
 *    ones, and the pending state is always published when the interval ends.
 */
import type { Clock, TimerHandle } from './clock.js';
import type { Logger, ResolverObserver } from './events.js';
import { MassFailureGuard } from './guard.js';
import type { GuardConfig } from './guard.js';
import { EMPTY_SNAPSHOT, makeSnapshot } from './snapshot.js';
import type { Worker, WorkerDiff, WorkerSnapshot } from './snapshot.js';
import { finishInTurns } from './turns.js';
import type { BuiltWorkerSet, WorkerCache } from './worker-cache.js';
import { diffWorkers, isEmptyDiff } from './worker-diff.js';
import { buildWorkerSet, startBuild } from './worker-set.js';
import type { Source, SourceAnswer, SourceKind, SourceOutcome, WorkerCandidate } from './source.js';

/** A full build of at least this many candidates runs in event-loop turns (≈ 2 µs each). */
const SLICED_BUILD_FROM = 2_000;
/** The work a sliced build does in one turn, in ms. */
const BUILD_SLICE_MS = 5;

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

interface Answer {
  readonly workers: readonly Worker[];
  /** `workers[i].url`, frozen (the snapshot's `urls`). */
  readonly urls: readonly URL[];
  readonly index: number | undefined;
  /** Reused by the next build of the same source (unchanged workers keep their objects). */
  readonly cache: WorkerCache;
  /** From an incremental build: the diff from its base list to `workers` (apply() skips diffWorkers). */
  readonly changes?: BuiltWorkerSet['changes'];
}

interface Pending {
  readonly source: SourceKind;
  readonly workers: readonly Worker[];
  /** `workers[i].url`, frozen, when the build made it already. */
  readonly urls?: readonly URL[];
  readonly index: number | undefined;
  /** The diff against `base`, when apply() already computed it; flush() reuses it if `base` is still current. */
  readonly diff?: WorkerDiff;
  readonly base?: WorkerSnapshot;
}

/** Drives the sources and owns the current snapshot. */
export class Engine {
  /** The current snapshot; replaced, never mutated. */
  current: WorkerSnapshot = EMPTY_SNAPSHOT;
  private readonly config: EngineConfig;
  private readonly listeners = new Set<(snapshot: WorkerSnapshot) => void>();
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
  /** Latest state waiting for the damping interval to end; undefined when nothing waits. */
  private pending: Pending | undefined;
  private dampTimer: TimerHandle | undefined;
  /** Monotonic time of the last publish (−∞ before the first). */
  private lastPublishAt = Number.NEGATIVE_INFINITY;
  /** The mass-failure guard: holds a sudden small set back; `active` = the snapshot is `guarded`. */
  private readonly guard: MassFailureGuard;
  private staleTimer: TimerHandle | undefined;
  private noContactTimer: TimerHandle | undefined;
  /** Leader headers of the latest Consul answer; carried by every Consul-sourced snapshot. */
  private consulLeader: { readonly knownLeader?: boolean; readonly lastContactMs?: number } = {};
  /** Stop of the DNS source after a failback; awaited by close(). */
  private stopping: Promise<void> = Promise.resolve();
  private closed = false;
  /** Outcomes that arrived while a build ran over several turns, in order; undefined when none runs. */
  private held: SourceOutcome[] | undefined;
  private readonly sink = { onOutcome: (outcome: SourceOutcome): void => this.onOutcome(outcome) };

  constructor(config: EngineConfig) {
    this.config = config;
    this.guard = new MassFailureGuard(config.guard, config.clock, () => this.apply(this.active));
    this.active = config.consul !== undefined ? 'consul' : config.dns !== undefined ? 'dns' : 'static';
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
      this.schedulePublish({ source: 'static', workers: set.workers, urls: set.urls, index: undefined });
    }
  }

  /** Registers a listener called after each publish; returns its unsubscribe function. */
  subscribe(listener: (snapshot: WorkerSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Stops every source and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of [this.dampTimer, this.staleTimer, this.noContactTimer]) timer?.cancel();
    this.guard.cancel();
    this.pending = undefined;
    this.listeners.clear();
    await Promise.all([this.config.consul?.stop(), this.config.dns?.stop(), this.stopping]);
  }

  private emit<K extends keyof ResolverObserver>(
    name: K,
    event: Parameters<NonNullable<ResolverObserver[K]>>[0],
  ): void {
    for (const observer of this.config.observers) {
      try {
        (observer[name] as ((e: typeof event) => void) | undefined)?.call(observer, event);
      } catch (err) {
        this.config.logger.error(`worker-resolver observer ${name} threw; ignoring`, { error: String(err) });
      }
    }
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
      if (source === 'consul') {
        this.consulLeader = {
          ...(outcome.knownLeader === undefined ? {} : { knownLeader: outcome.knownLeader }),
          ...(outcome.lastContactMs === undefined ? {} : { lastContactMs: outcome.lastContactMs }),
        };
      }
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
    this.refreshStale();
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
    if (staticWorkers === undefined || this.current.version > 0 || this.pending !== undefined) return;
    const consulDown = consul === undefined || this.consulFailures >= this.config.failoverAfterFailures;
    const dnsDown = dns === undefined || (this.failureStreak.has('dns') && !this.answers.has('dns'));
    if (!consulDown || !dnsDown) return;
    const set = buildWorkerSet(staticWorkers);
    this.emit('onFailover', { service: this.config.service, from: this.active, to: 'static', reason: 'last-resort' });
    this.schedulePublish({ source: 'static', workers: set.workers, urls: set.urls, index: undefined });
  }

  /** Applies the active source's latest answer to the snapshot (guard, then damping). */
  private apply(source: SourceKind): void {
    const answer = this.answers.get(source);
    if (answer === undefined) return;
    const published = this.current;
    const pending = this.pending;
    const intended = pending ?? { source: published.source, workers: published.workers, index: published.consulIndex };
    // An incremental build already knows its diff from the list it started from.
    const diff =
      answer.changes?.from === intended.workers ? answer.changes.diff : diffWorkers(intended.workers, answer.workers);
    if (published.version > 0 && pending === undefined && intended.source === source && isEmptyDiff(diff)) {
      this.clearGuard(answer.workers.length);
      this.touch(answer.index);
      return;
    }
    if (this.guardHolds(answer.workers.length)) return;
    this.schedulePublish({
      source,
      workers: answer.workers,
      urls: answer.urls,
      index: answer.index,
      // Without a pending state the diff above is against the published snapshot: keep it for flush().
      ...(pending === undefined ? { diff, base: published } : {}),
    });
  }

  /** True while the guard keeps the last good set; starts, and ends, the hold as needed. */
  private guardHolds(reported: number): boolean {
    const kept = this.current.workers.length;
    const verdict = this.guard.judge(reported, kept, this.current.version > 0);
    if (verdict === 'hold') return true;
    if (verdict === 'start') {
      this.config.logger.warn(
        `worker-resolver: mass-failure guard holds ${kept} workers of service "${this.config.service}": source reports only ${reported}`,
        { kept, reported, service: this.config.service },
      );
      this.replaceCurrent({ guarded: true });
      this.emit('onGuardChange', { service: this.config.service, active: true, reported, kept });
      return true;
    }
    if (verdict === 'expire') {
      this.config.logger.warn(`worker-resolver: mass-failure guard expired; accepting ${reported} workers`, {
        reported,
        service: this.config.service,
      });
    }
    this.clearGuard(reported);
    return false;
  }

  private clearGuard(reported: number): void {
    if (!this.guard.end()) return;
    const kept = this.current.workers.length;
    this.replaceCurrent({ guarded: false });
    this.emit('onGuardChange', { service: this.config.service, active: false, reported, kept });
  }

  private schedulePublish(next: Pending): void {
    this.pending = next;
    if (this.dampTimer !== undefined) return;
    const wait = this.lastPublishAt + this.config.minPublishIntervalMs - this.config.clock.monotonic();
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.dampTimer = this.config.clock.setTimeout(() => {
      this.dampTimer = undefined;
      this.flush();
    }, wait);
  }

  private flush(): void {
    const next = this.pending;
    this.pending = undefined;
    if (next === undefined || this.closed) return;
    const previous = this.current;
    const diff =
      next.base === previous && next.diff !== undefined ? next.diff : diffWorkers(previous.workers, next.workers);
    if (previous.version > 0 && previous.source === next.source && isEmptyDiff(diff)) {
      this.touch(next.index);
      return;
    }
    const clock = this.config.clock;
    const contact = this.lastContact.get(next.source) ?? clock.now();
    this.current = makeSnapshot({
      version: previous.version + 1,
      source: next.source,
      workers: next.workers,
      ...(next.urls === undefined ? {} : { urls: next.urls }),
      updatedAt: clock.now(),
      lastContactAt: next.source === 'static' ? clock.now() : contact,
      stale: false,
      guarded: this.guard.active,
      consulIndex: next.source === 'consul' ? next.index : undefined,
      ...(next.source === 'consul' ? this.leaderFields() : {}),
    });
    this.lastPublishAt = clock.monotonic();
    this.emit('onPublish', { service: this.config.service, snapshot: this.current, previous, diff });
    for (const listener of [...this.listeners]) {
      try {
        listener(this.current);
      } catch (err) {
        this.config.logger.error('worker-resolver subscriber threw; ignoring', { error: String(err) });
      }
    }
    if (previous.stale)
      this.emit('onStaleChange', { service: this.config.service, stale: false, snapshot: this.current });
    this.refreshStale();
  }

  /** Records contact without a publish: same version, same arrays, fresh metadata. */
  private touch(index: number | undefined): void {
    const source = this.current.source;
    this.replaceCurrent({
      lastContactAt: this.lastContact.get(source) ?? this.current.lastContactAt,
      ...(source === 'consul' && index !== undefined ? { consulIndex: index } : {}),
    });
  }

  private replaceCurrent(
    change: Partial<Pick<WorkerSnapshot, 'stale' | 'guarded' | 'lastContactAt' | 'consulIndex'>>,
  ): void {
    const c = this.current;
    if (c.version === 0) return;
    this.current = makeSnapshot({
      version: c.version,
      source: c.source,
      workers: c.workers,
      urls: c.urls,
      updatedAt: c.updatedAt,
      lastContactAt: change.lastContactAt ?? c.lastContactAt,
      stale: change.stale ?? c.stale,
      guarded: change.guarded ?? c.guarded,
      consulIndex: change.consulIndex ?? c.consulIndex,
      ...(c.source === 'consul' ? this.leaderFields() : {}),
    });
  }

  private leaderFields(): { consulKnownLeader?: boolean; consulLastContactMs?: number } {
    const { knownLeader, lastContactMs } = this.consulLeader;
    return {
      ...(knownLeader === undefined ? {} : { consulKnownLeader: knownLeader }),
      ...(lastContactMs === undefined ? {} : { consulLastContactMs: lastContactMs }),
    };
  }

  /** Recomputes the stale flag and re-arms the timer that will flip it. */
  private refreshStale(): void {
    const c = this.current;
    if (c.version === 0 || c.source === 'static' || this.closed) return;
    const clock = this.config.clock;
    const lastContact = this.lastContact.get(c.source) ?? c.lastContactAt;
    const age = clock.now() - lastContact;
    const stale = age > this.config.maxStalenessMs;
    if (stale !== c.stale) {
      this.replaceCurrent({ stale, lastContactAt: lastContact });
      this.config.logger.warn(
        stale
          ? `worker-resolver: snapshot of service "${this.config.service}" is stale (no answer from ${c.source} for ${Math.round(age / 1000)}s)`
          : `worker-resolver: snapshot of service "${this.config.service}" is fresh again`,
        { service: this.config.service, source: c.source },
      );
      this.emit('onStaleChange', { service: this.config.service, stale, snapshot: this.current });
    }
    this.staleTimer?.cancel();
    this.staleTimer = stale
      ? undefined
      : clock.setTimeout(() => this.refreshStale(), this.config.maxStalenessMs - age + 1);
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
