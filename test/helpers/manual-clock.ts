/**
 * A manual clock for tests: time moves only when the test calls `advance`, and timers fire
 * in due order as it passes them. Lets backoff, damping and staleness be tested without sleeping.
 */
import type { Clock, TimerHandle } from '../../src/clock.js';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class ManualClock implements Clock {
  private time: number;
  private readonly wallOffset: number;
  private timers: Timer[] = [];
  private seq = 0;
  /** Delays passed to setTimeout, in call order (to assert on backoff schedules). */
  readonly delays: number[] = [];
  /**
   * Timers fire this many milliseconds before `monotonic()` reaches their deadline, as Node's
   * timers sometimes do relative to `performance.now()`. 0 by default.
   */
  timerSkewMs = 0;

  constructor(start = 1_000_000, wall = 1_700_000_000_000) {
    this.time = start;
    this.wallOffset = wall - start;
  }

  now(): number {
    return this.time + this.wallOffset;
  }

  monotonic(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: Timer = {
      at: this.time + Math.max(0, ms - this.timerSkewMs),
      seq: this.seq++,
      fn,
      cancelled: false,
    };
    this.delays.push(ms);
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of timers not yet fired nor cancelled. */
  get pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing due timers in order (timers they create fire too, if due). */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.timers
        .filter((t) => !t.cancelled && t.at <= end)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.time = Math.max(this.time, due.at);
      due.cancelled = true;
      due.fn();
    }
    this.timers = this.timers.filter((t) => !t.cancelled);
    this.time = end;
  }

  /** Advances in small steps, yielding to the event loop between them so promise chains can run. */
  async advanceAsync(ms: number, step = 1): Promise<void> {
    for (let done = 0; done < ms; done += step) {
      this.advance(Math.min(step, ms - done));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
