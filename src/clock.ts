/**
 * Time as the engine sees it. Production code uses {@link systemClock}; tests inject a
 * manual clock so backoff, damping and staleness are tested without sleeping.
 */

/** An opaque timer handle returned by {@link Clock.setTimeout}. */
export interface TimerHandle {
  /** Cancels the timer; calling it twice is harmless. */
  cancel(): void;
}

/** The time source and timer factory used by every loop in this package. */
export interface Clock {
  /** Milliseconds since the epoch (wall clock: used for `updatedAt` and timestamps). */
  now(): number;
  /** A monotonic millisecond counter (used for durations and deadlines). */
  monotonic(): number;
  /**
   * Runs `fn` once after `ms` milliseconds. Timers never keep the process alive
   * (they are `unref()`'d): only sockets the caller opened do.
   */
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

/** The real clock: `Date.now`, `performance.now`, unref'd `setTimeout`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

/**
 * Waits `ms` on `clock`, resolving early (never rejecting) when `signal` aborts.
 * Returns true if the full delay elapsed, false if it was cut short.
 */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve(false);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      resolve(false);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
