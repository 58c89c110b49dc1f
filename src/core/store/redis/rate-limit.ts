/**
 * Per-key token buckets in Redis, so a limit holds across `serve` replicas: the same contract as
 * TokenBucketLimiter (src/chat/rate-limit.ts: `perMinute` tokens of burst, refilled continuously at
 * `perMinute / 60` per second, one per request, 0 = unlimited), implemented by one Lua script
 * (TOKEN_BUCKET_SCRIPT: refill + take atomically, on the Redis server's clock, key expiring once the
 * bucket would be full again). Key: `<prefix>:ratelimit:<key>`.
 *
 * When Redis fails, the request is limited by an in-process fallback bucket instead (per replica,
 * so the limit is at most N× looser while Redis is down) and `onError` is told; limiting never
 * becomes an outage.
 */
import type { Redis } from 'ioredis';
import { RateLimitError } from '../../errors.ts';
import { checkPrefix, closeRedis, redisCall, requireReady } from './connection.ts';
import { TOKEN_BUCKET_SCRIPT, defineScript, script } from './scripts.ts';

/** Same shape as TokenBucketLimiter's. */
export type TakeResult = { ok: true; remaining: number } | { ok: false; retryAfterSeconds: number };

/** What the fallback must offer (TokenBucketLimiter). */
export interface LocalLimiter {
  take(key: string): TakeResult;
  peek(key: string): TakeResult;
}

export interface RedisTokenBucketLimiterOptions {
  client: Redis;
  /** Requests per minute per key (also the burst size); 0 = unlimited. */
  perMinute: number;
  /** Key prefix (MNEME_REDIS_PREFIX); default `mneme`. */
  prefix?: string | undefined;
  /** Clock in ms (tests); default: the Redis server's clock (one clock for every replica). */
  now?: (() => number) | undefined;
  /** Used while Redis fails; default: every request allowed. */
  fallback?: LocalLimiter | undefined;
  /** Told about each Redis failure (count it, log it). */
  onError?: ((err: Error) => void) | undefined;
  /** `close()` quits the client. Default false. */
  ownsClient?: boolean | undefined;
}

export class RedisTokenBucketLimiter {
  readonly perMinute: number;
  readonly prefix: string;
  private readonly client: Redis;
  private readonly opts: RedisTokenBucketLimiterOptions;

  /** @throws RangeError for a negative or non-finite perMinute, or a bad prefix. */
  constructor(opts: RedisTokenBucketLimiterOptions) {
    if (!Number.isFinite(opts.perMinute) || opts.perMinute < 0) throw new RangeError(`perMinute must be >= 0, got ${opts.perMinute}`);
    this.perMinute = opts.perMinute;
    this.prefix = checkPrefix(opts.prefix);
    this.client = opts.client;
    this.opts = opts;
    defineScript(this.client, TOKEN_BUCKET_SCRIPT);
  }

  /** The Redis key of `key`'s bucket. */
  bucketKey(key: string): string {
    return `${this.prefix}:ratelimit:${key}`;
  }

  /** Takes one token from `key`'s bucket. Never throws (Redis failures go to the fallback). */
  take(key: string): Promise<TakeResult> {
    return this.visit(key, true);
  }

  /** Whether `key` has a token left, without taking it. */
  peek(key: string): Promise<TakeResult> {
    return this.visit(key, false);
  }

  /**
   * Like `take` but throws.
   * @throws RateLimitError with the seconds until a token is available.
   */
  async consume(key: string): Promise<void> {
    const r = await this.take(key);
    if (!r.ok) throw new RateLimitError(r.retryAfterSeconds);
  }

  private async visit(key: string, consume: boolean): Promise<TakeResult> {
    if (this.perMinute === 0) return { ok: true, remaining: Number.POSITIVE_INFINITY };
    const now = this.opts.now ? String(this.opts.now()) : '';
    let reply: [number, string];
    try {
      // While disconnected, decide locally at once rather than wait for a reconnect on every request.
      requireReady(this.client, 'rate limit');
      const call = script<[number, string]>(this.client, TOKEN_BUCKET_SCRIPT.name);
      reply = await redisCall('rate limit', call(this.bucketKey(key), this.perMinute, consume ? '1' : '0', now));
    } catch (err) {
      this.opts.onError?.(err as Error);
      const fb = this.opts.fallback;
      if (!fb) return { ok: true, remaining: this.perMinute };
      return consume ? fb.take(key) : fb.peek(key);
    }
    const tokens = Number(reply[1]);
    if (reply[0] === 1) return { ok: true, remaining: Math.floor(tokens) };
    const ratePerMs = this.perMinute / 60_000;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / ratePerMs / 1000)) };
  }

  async close(): Promise<void> {
    if (this.opts.ownsClient) await closeRedis(this.client);
  }
}
