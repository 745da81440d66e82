/**
 * What the engine tells the outside world. Metrics, tracing, logging and the sidecar
 * subscribe through a {@link ResolverObserver}; sources never see observers. Observer
 * callbacks run synchronously on the engine's turn and must be cheap; an observer that
 * throws is isolated (logged once per event, never breaks the engine).
 */
import type { WorkerDiff, WorkerSnapshot } from './snapshot.js';
import type { ConsulLeaderState, SourceKind, SourceOutcome } from './source.js';

/** One completed source request (success or failure). */
export interface RefreshEvent {
  readonly service: string;
  readonly outcome: SourceOutcome;
  /** Entries of this answer that could not become workers (bad address, bad port, bad URL). */
  readonly rejected: number;
  /** True if this source's answers currently drive the snapshot. */
  readonly active: boolean;
}

/** A new snapshot version was published. */
export interface PublishEvent {
  readonly service: string;
  readonly snapshot: WorkerSnapshot;
  readonly previous: WorkerSnapshot;
  readonly diff: WorkerDiff;
}

/** The engine switched the source that drives the snapshot. */
export interface FailoverEvent {
  readonly service: string;
  readonly from: SourceKind;
  readonly to: SourceKind;
  /** Why: `consul-failures`, `consul-no-contact`, `consul-recovered`, `last-resort`. */
  readonly reason: string;
}

/** The snapshot became stale, or fresh again. */
export interface StaleEvent {
  readonly service: string;
  readonly stale: boolean;
  readonly snapshot: WorkerSnapshot;
}

/** The mass-failure guard started or stopped holding the last good set. */
export interface GuardEvent {
  readonly service: string;
  readonly active: boolean;
  /** Workers the source reports now. */
  readonly reported: number;
  /** Workers in the set being held (the last good set). */
  readonly kept: number;
}

/** The Consul source learned the cluster's leader state (after every check, changed or not). */
export interface ConsulLeaderEvent {
  readonly service: string;
  readonly state: ConsulLeaderState;
  /** The state before this check (undefined before the first). */
  readonly previous: ConsulLeaderState | undefined;
}

/** Subscribes to engine events. Every callback is optional. */
export interface ResolverObserver {
  onRefresh?(event: RefreshEvent): void;
  onPublish?(event: PublishEvent): void;
  onFailover?(event: FailoverEvent): void;
  onStaleChange?(event: StaleEvent): void;
  onGuardChange?(event: GuardEvent): void;
  onConsulLeader?(event: ConsulLeaderEvent): void;
}

/**
 * A structured logger. Shaped so `console`, pino (`logger.child(...)` bound with a small
 * adapter) and winston fit: a message and an optional record of fields. Fields never
 * contain secrets.
 */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Tells every observer of one event; what an observer throws is logged and goes no further. */
export type Emit = <K extends keyof ResolverObserver>(
  name: K,
  event: Parameters<NonNullable<ResolverObserver[K]>>[0],
) => void;

/** The {@link Emit} of a set of observers. */
export function emitter(observers: readonly ResolverObserver[], logger: Logger): Emit {
  return (name, event) => {
    for (const observer of observers) {
      try {
        (observer[name] as ((e: typeof event) => void) | undefined)?.call(observer, event);
      } catch (err) {
        logger.error(`worker-resolver observer ${name} threw; ignoring`, { error: String(err) });
      }
    }
  };
}
