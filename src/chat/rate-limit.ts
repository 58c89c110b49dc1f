/**
 * Per-key token bucket. Each key gets a bucket of `perMinute` tokens (the allowed burst) that refills
 * continuously at `perMinute / 60` tokens per second; a request takes one token. `perMinute = 0`
 * turns limiting off. In memory, per process (one `mneme serve` = one limiter).
 */
import { RateLimitError } from '../core/errors.ts';

/** Buckets untouched for this long are full again and can be forgotten, in ms. */
export const RATE_LIMIT_IDLE_EVICT_MS = 10 * 60_000;
/** How many `take` calls between sweeps of idle buckets. */
const SWEEP_EVERY_CALLS = 1000;

export interface RateLimiterOptions {
  /** Requests per minute per key (also the burst size); 0 = unlimited. */
  perMinute: number;
  /** Clock in ms (tests). Default Date.now. */
  now?: () => number;
}

export type TakeResult = { ok: true; remaining: number } | { ok: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class TokenBucketLimiter {
  readonly perMinute: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, Bucket>();
  private calls = 0;

  constructor(opts: RateLimiterOptions) {
    if (!Number.isFinite(opts.perMinute) || opts.perMinute < 0) throw new RangeError(`perMinute must be >= 0, got ${opts.perMinute}`);
    this.perMinute = opts.perMinute;
    this.now = opts.now ?? Date.now;
  }

  /** Takes one token from `key`'s bucket. */
  take(key: string): TakeResult {
    return this.visit(key, true);
  }

  /** Whether `key` has a token left, without taking it. */
  peek(key: string): TakeResult {
    return this.visit(key, false);
  }

  private visit(key: string, consume: boolean): TakeResult {
    if (this.perMinute === 0) return { ok: true, remaining: Number.POSITIVE_INFINITY };
    const now = this.now();
    if (++this.calls % SWEEP_EVERY_CALLS === 0) this.sweep(now);
    const ratePerMs = this.perMinute / 60_000;
    const known = this.buckets.get(key);
    if (!known && !consume) return { ok: true, remaining: this.perMinute };
    const b = known ?? { tokens: this.perMinute, updatedMs: now };
    b.tokens = Math.min(this.perMinute, b.tokens + Math.max(0, now - b.updatedMs) * ratePerMs);
    b.updatedMs = now;
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      if (consume) b.tokens -= 1;
      return { ok: true, remaining: Math.floor(b.tokens) };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / ratePerMs / 1000)) };
  }

  /**
   * Like `take` but throws.
   * @throws RateLimitError with the seconds until a token is available.
   */
  consume(key: string): void {
    const r = this.take(key);
    if (!r.ok) throw new RateLimitError(r.retryAfterSeconds);
  }

  /** Number of tracked keys (tests, metrics). */
  size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) if (now - b.updatedMs > RATE_LIMIT_IDLE_EVICT_MS) this.buckets.delete(k);
  }
}
