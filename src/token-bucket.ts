/**
 * A token bucket that paces a loop. Blocking queries normally return once per change or
 * once per `wait`, but a service whose index moves on every catalog write (consul#4810)
 * makes every query return at once: the bucket turns that hot loop into bounded polling
 * (`burst` requests at once, then `ratePerSecond`).
 */
import type { Clock } from './clock.js';

/** Options of {@link TokenBucket}. */
export interface TokenBucketOptions {
  /** Sustained rate, in tokens per second. */
  readonly ratePerSecond: number;
  /** Bucket capacity: how many requests may go back to back before pacing starts. */
  readonly burst: number;
  readonly clock: Clock;
}

/** Refills continuously; `take()` returns how long to wait before the caller may proceed. */
export class TokenBucket {
  /** Tokens available at `updatedAt`; never above `burst`, may be fractional. */
  private tokens: number;
  /** Monotonic time of the last refill computation. */
  private updatedAt: number;
  private readonly ratePerMs: number;
  private readonly burst: number;
  private readonly clock: Clock;

  constructor(options: TokenBucketOptions) {
    this.ratePerMs = options.ratePerSecond / 1000;
    this.burst = options.burst;
    this.clock = options.clock;
    this.tokens = options.burst;
    this.updatedAt = options.clock.monotonic();
  }

  /**
   * Takes one token. Returns 0 if one was available, else the delay in milliseconds after
   * which the token will exist (the token is reserved: the caller must wait that long).
   */
  take(): number {
    const now = this.clock.monotonic();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.updatedAt) * this.ratePerMs);
    this.updatedAt = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil(-this.tokens / this.ratePerMs);
  }
}
