/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"): the n-th consecutive failure waits a uniformly random time in
 * `[0, min(capMs, baseMs * 2^n)]`. Full jitter spreads a fleet of resolvers that lost
 * Consul at the same moment, so they do not return in lockstep.
 */

/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** Delay ceiling of the first retry, in milliseconds. */
  readonly baseMs: number;
  /** Largest delay ever returned, in milliseconds. */
  readonly capMs: number;
  /** Source of randomness in [0, 1); injectable for tests. Defaults to `Math.random`. */
  readonly random?: () => number;
}

/** A tiny stateful backoff: `next()` after each failure, `reset()` after a success. */
export class Backoff {
  /** Consecutive failures since the last reset; drives the exponent. */
  private attempt = 0;
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions) {
    this.baseMs = options.baseMs;
    this.capMs = options.capMs;
    this.random = options.random ?? Math.random;
  }

  /** The ceiling of the next delay (without jitter), in milliseconds. */
  peekCeilingMs(): number {
    // 2 ** 30 already exceeds any sane cap; bounding the exponent avoids Infinity.
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
  }

  /** Records a failure and returns how long to wait before the next attempt, in milliseconds. */
  next(): number {
    const ceiling = this.peekCeilingMs();
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }

  /** Number of consecutive failures recorded since the last reset. */
  get failures(): number {
    return this.attempt;
  }

  /** Records a success. */
  reset(): void {
    this.attempt = 0;
  }
}
