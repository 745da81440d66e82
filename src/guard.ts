/**
 * The mass-failure guard (docs/design.md §5, Envoy's panic threshold): when a source suddenly reports
 * far fewer workers than the last good set, the set is held back for a while instead of
 * being published, so one bad answer (a partitioned agent, a check flapping cluster-wide)
 * does not send every query to a handful of survivors. The guard only keeps time and gives
 * verdicts; the publisher (`publisher.ts`) owns the snapshot, the logging and the events.
 */
import type { Clock, TimerHandle } from './clock.js';

/** Mass-failure guard settings. */
export interface GuardConfig {
  /** Hold the last good set when a source reports fewer than `threshold` × its size (0..1). */
  readonly threshold: number;
  /** The guard only applies when the last good set has at least this many workers. */
  readonly minWorkers: number;
  /** After this long below the threshold, the smaller set is accepted. */
  readonly holdMs: number;
}

/**
 * What to do with an answer: `accept` it (not a mass failure, or no guard), hold it back
 * because a hold just `start`ed or is still running (`hold`), or accept it because the hold
 * ran out (`expire`). After `accept` or `expire` the caller ends the hold with
 * {@link MassFailureGuard.end}.
 */
export type GuardVerdict = 'accept' | 'start' | 'hold' | 'expire';

/** The guard's clock and state for one engine. */
export class MassFailureGuard {
  private readonly config: GuardConfig | undefined;
  private readonly clock: Clock;
  /** Called when a hold's time is up, so the held answer is looked at again. */
  private readonly onHoldOver: () => void;
  /** Monotonic time since when answers have been below the threshold; undefined = no hold. */
  private since: number | undefined;
  /**
   * Fires `onHoldOver`; pending only during a hold whose time is not up. A hold whose timer
   * fired is over, whatever the monotonic clock says (Node may fire a timer a little before
   * `performance.now()` reaches its deadline; judging by the clock alone, nothing would re-arm
   * and the old set would be held until the next answer).
   */
  private timer: TimerHandle | undefined;

  constructor(config: GuardConfig | undefined, clock: Clock, onHoldOver: () => void) {
    this.config = config;
    this.clock = clock;
    this.onHoldOver = onHoldOver;
  }

  /** True during a hold (the published snapshot is `guarded`). */
  get active(): boolean {
    return this.since !== undefined;
  }

  /**
   * The verdict on an answer of `reported` workers while `kept` are published (`published`:
   * a snapshot exists at all). A `start` begins the hold and arms its timer.
   */
  judge(reported: number, kept: number, published: boolean): GuardVerdict {
    const guard = this.config;
    if (guard === undefined || !published || kept < guard.minWorkers || reported >= guard.threshold * kept) {
      return 'accept';
    }
    if (this.since === undefined) {
      this.since = this.clock.monotonic();
      this.timer = this.clock.setTimeout(() => {
        this.timer = undefined;
        this.onHoldOver();
      }, guard.holdMs);
      return 'start';
    }
    if (this.timer !== undefined && this.clock.monotonic() - this.since < guard.holdMs) return 'hold';
    return 'expire';
  }

  /** Ends the hold, if one runs; true if it did. */
  end(): boolean {
    if (this.since === undefined) return false;
    this.since = undefined;
    this.timer?.cancel();
    this.timer = undefined;
    return true;
  }

  /** Cancels the timer for good (the engine closes). */
  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}
