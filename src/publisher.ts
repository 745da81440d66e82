/**
 * The publishing half of the engine (docs/design.md §5): how the active source's answer becomes the
 * published snapshot. The engine decides *which* answer counts (sources, failover, builds);
 * this file owns the snapshot itself and the rules between an answer and a new version:
 *  - Mass-failure guard: a set smaller than `threshold` × the last good set is held back for
 *    `holdMs` (flagged `guarded`), then accepted if the source still insists.
 *  - Damping: at most one publish per `minPublishIntervalMs`; later states replace pending
 *    ones, and the pending state is always published when the interval ends.
 *  - An answer equal to the published set is no new version: the snapshot is replaced with
 *    fresh metadata (contact time, index) and the same arrays.
 *  - Staleness: the snapshot is `stale` once its source has not answered for `maxStalenessMs`.
 */
import type { Clock, TimerHandle } from './clock.js';
import type { Emit, Logger } from './events.js';
import { MassFailureGuard } from './guard.js';
import type { GuardConfig } from './guard.js';
import { EMPTY_SNAPSHOT, makeSnapshot } from './snapshot.js';
import type { Worker, WorkerDiff, WorkerSnapshot } from './snapshot.js';
import type { SourceKind } from './source.js';
import type { BuiltWorkerSet } from './worker-cache.js';
import { diffWorkers, isEmptyDiff } from './worker-diff.js';

/** What the publisher needs from the engine. */
export interface PublisherConfig {
  readonly service: string;
  readonly maxStalenessMs: number;
  readonly guard: GuardConfig | undefined;
  readonly minPublishIntervalMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly emit: Emit;
  /** Wall-clock time of the last successful answer of `source`, if any. */
  readonly lastContact: (source: SourceKind) => number | undefined;
  /** A guard's hold ran out: the engine offers the active source's answer again. */
  readonly onHoldOver: () => void;
}

/** A source's answer, as built workers. */
export interface Offer {
  readonly workers: readonly Worker[];
  /** `workers[i].url`, frozen (the snapshot's `urls`). */
  readonly urls: readonly URL[];
  readonly index: number | undefined;
  /** From an incremental build: the diff from its base list to `workers` (offer() skips diffWorkers). */
  readonly changes?: BuiltWorkerSet['changes'];
}

interface Pending {
  readonly source: SourceKind;
  readonly workers: readonly Worker[];
  /** `workers[i].url`, frozen, when the build made it already. */
  readonly urls?: readonly URL[];
  readonly index: number | undefined;
  /** The diff against `base`, when offer() already computed it; flush() reuses it if `base` is still current. */
  readonly diff?: WorkerDiff;
  readonly base?: WorkerSnapshot;
}

/** Owns the current snapshot and publishes answers into it. */
export class Publisher {
  /** The current snapshot; replaced, never mutated. */
  current: WorkerSnapshot = EMPTY_SNAPSHOT;
  private readonly config: PublisherConfig;
  /** Called after each publish, in subscription order; emptied by close(). */
  private readonly listeners = new Set<(snapshot: WorkerSnapshot) => void>();
  /** Latest state waiting for the damping interval to end; undefined when nothing waits. */
  private pending: Pending | undefined;
  /** Pending only while a state waits for the damping interval to end. */
  private dampTimer: TimerHandle | undefined;
  /** Monotonic time of the last publish (−∞ before the first). */
  private lastPublishAt = Number.NEGATIVE_INFINITY;
  /** The mass-failure guard: holds a sudden small set back; `active` = the snapshot is `guarded`. */
  private readonly guard: MassFailureGuard;
  /** Fires when a fresh snapshot would turn stale; undefined while stale, before the first publish and after close(). */
  private staleTimer: TimerHandle | undefined;
  /** Set by close(): nothing is published and no timer is armed afterwards. */
  private closed = false;

  constructor(config: PublisherConfig) {
    this.config = config;
    this.guard = new MassFailureGuard(config.guard, config.clock, config.onHoldOver);
  }

  /** True once anything was published or waits to be. */
  get started(): boolean {
    return this.current.version > 0 || this.pending !== undefined;
  }

  /** Registers a listener called after each publish; returns its unsubscribe function. */
  subscribe(listener: (snapshot: WorkerSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Cancels every timer and drops what waits. Idempotent. */
  close(): void {
    this.closed = true;
    for (const timer of [this.dampTimer, this.staleTimer]) timer?.cancel();
    this.guard.cancel();
    this.pending = undefined;
    this.listeners.clear();
  }

  /** Publishes a set without guard (static workers: the only source, or the last resort). */
  publishStatic(workers: readonly Worker[], urls: readonly URL[]): void {
    this.schedule({ source: 'static', workers, urls, index: undefined });
  }

  /** Offers the active source's latest answer (guard, then damping). */
  offer(source: SourceKind, answer: Offer): void {
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
    this.schedule({
      source,
      workers: answer.workers,
      urls: answer.urls,
      index: answer.index,
      // Without a pending state the diff above is against the published snapshot: keep it for flush().
      ...(pending === undefined ? { diff, base: published } : {}),
    });
  }

  /** Recomputes the stale flag and re-arms the timer that will flip it. */
  refreshStale(): void {
    const c = this.current;
    if (c.version === 0 || c.source === 'static' || this.closed) return;
    const { clock, service } = this.config;
    const lastContact = this.config.lastContact(c.source) ?? c.lastContactAt;
    const age = clock.now() - lastContact;
    const stale = age > this.config.maxStalenessMs;
    if (stale !== c.stale) {
      this.replaceCurrent({ stale, lastContactAt: lastContact });
      this.config.logger.warn(
        stale
          ? `worker-resolver: snapshot of service "${service}" is stale (no answer from ${c.source} for ${Math.round(age / 1000)}s)`
          : `worker-resolver: snapshot of service "${service}" is fresh again`,
        { service, source: c.source },
      );
      this.config.emit('onStaleChange', { service, stale, snapshot: this.current });
    }
    this.staleTimer?.cancel();
    this.staleTimer = stale
      ? undefined
      : clock.setTimeout(() => this.refreshStale(), this.config.maxStalenessMs - age + 1);
  }

  /** True while the guard keeps the last good set; starts, and ends, the hold as needed. */
  private guardHolds(reported: number): boolean {
    const { service, logger, emit } = this.config;
    const kept = this.current.workers.length;
    const verdict = this.guard.judge(reported, kept, this.current.version > 0);
    if (verdict === 'hold') return true;
    if (verdict === 'start') {
      logger.warn(
        `worker-resolver: mass-failure guard holds ${kept} workers of service "${service}": source reports only ${reported}`,
        { kept, reported, service },
      );
      this.replaceCurrent({ guarded: true });
      emit('onGuardChange', { service, active: true, reported, kept });
      return true;
    }
    if (verdict === 'expire') {
      logger.warn(`worker-resolver: mass-failure guard expired; accepting ${reported} workers`, { reported, service });
    }
    this.clearGuard(reported);
    return false;
  }

  private clearGuard(reported: number): void {
    if (!this.guard.end()) return;
    const kept = this.current.workers.length;
    this.replaceCurrent({ guarded: false });
    this.config.emit('onGuardChange', { service: this.config.service, active: false, reported, kept });
  }

  private schedule(next: Pending): void {
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
    const { clock, service, emit, logger } = this.config;
    const contact = this.config.lastContact(next.source) ?? clock.now();
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
    });
    this.lastPublishAt = clock.monotonic();
    emit('onPublish', { service, snapshot: this.current, previous, diff });
    for (const listener of [...this.listeners]) {
      try {
        listener(this.current);
      } catch (err) {
        logger.error('worker-resolver subscriber threw; ignoring', { error: String(err) });
      }
    }
    if (previous.stale) emit('onStaleChange', { service, stale: false, snapshot: this.current });
    this.refreshStale();
  }

  /** Records contact without a publish: same version, same arrays, fresh metadata. */
  private touch(index: number | undefined): void {
    const source = this.current.source;
    this.replaceCurrent({
      lastContactAt: this.config.lastContact(source) ?? this.current.lastContactAt,
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
    });
  }
}
