/**
 * What `mneme serve` runs on Redis when MNEME_REDIS_URL is set (wiring.ts calls `buildRedisParts`):
 * online feature reads (falling back to SQL), the per-user rate limiter shared by every replica
 * (falling back to an in-process bucket), the materializer's copy to Redis, and the corpus-change
 * subscription that pokes the index syncer (the change-feed poll stays as the fallback).
 */
import type { Config } from '../../core/config.ts';
import type { Store } from '../../core/store/index.ts';
import { RedisTokenBucketLimiter, openRedisServices, waitReady } from '../../core/store/redis/index.ts';
import type { RedisServices } from '../../core/store/redis/index.ts';
import { FALLBACK_LOG_INTERVAL_MS, ONLINE_FALLBACK_METRIC, OnlineFeatureReader, OnlineFeatureSync } from '../../features/online.ts';
import type { Logger } from '../log.ts';
import type { ChatMetrics } from '../metrics.ts';
import { TokenBucketLimiter } from '../rate-limit.ts';

/** Counter of rate-limit decisions taken by the in-process fallback because Redis failed. */
export const RATE_LIMIT_FALLBACK_METRIC = 'mneme_rate_limit_redis_fallback_total';

export interface RedisParts {
  services: RedisServices;
  reader: OnlineFeatureReader;
  sync: OnlineFeatureSync;
  limiter: RedisTokenBucketLimiter;
  /** Subscribes to corpus-change notices, calling `onChange` for each (and after a reconnect). */
  follow(onChange: () => void): void;
  /** Ends the subscription, then closes the Redis client. Idempotent. */
  close(): Promise<void>;
}

/** A warn() that speaks at most once per FALLBACK_LOG_INTERVAL_MS. */
function throttledWarn(logger: Logger, msg: string): (err: Error) => void {
  let last = Number.NEGATIVE_INFINITY;
  return (err) => {
    const now = Date.now();
    if (now - last < FALLBACK_LOG_INTERVAL_MS) return;
    last = now;
    logger.warn(msg, { error: err.message });
  };
}

/**
 * Builds the Redis parts of a server, waiting up to REDIS_CONNECT_TIMEOUT_MS for the connection (a
 * Redis that is down is a warning, not a failed start: every part falls back until it comes up).
 */
export async function buildRedisParts(redis: NonNullable<Config['redis']>, config: Config, store: Store, metrics: ChatMetrics, logger: Logger): Promise<RedisParts> {
  const services = openRedisServices(redis);
  await waitReady(services.client).catch((err: unknown) => logger.warn('redis is unreachable; reading features from the SQL store and limiting per replica until it is back', { error: (err as Error).message }));
  const onlineFallbacks = metrics.registry.counter(ONLINE_FALLBACK_METRIC, 'Online feature reads answered from the SQL store because Redis failed.');
  const limitFallbacks = metrics.registry.counter(RATE_LIMIT_FALLBACK_METRIC, 'Rate-limit decisions taken in-process because Redis failed.');
  const warnLimiter = throttledWarn(logger, 'rate limiter (redis) failed; limiting per replica meanwhile');
  const warnNotices = throttledWarn(logger, 'corpus-change subscription (redis) failed; polling the change feed meanwhile');
  let unfollow: (() => Promise<void>) | null = null;
  return {
    services,
    reader: new OnlineFeatureReader({ store, online: services.online, onFallback: () => onlineFallbacks.inc(), logger }),
    sync: new OnlineFeatureSync(services.online, store),
    limiter: new RedisTokenBucketLimiter({
      client: services.client,
      prefix: services.prefix,
      perMinute: config.server.rateLimitPerMin,
      fallback: new TokenBucketLimiter({ perMinute: config.server.rateLimitPerMin }),
      onError: (err) => {
        limitFallbacks.inc();
        warnLimiter(err);
      },
    }),
    follow(onChange) {
      unfollow ??= services.notifier.follow(() => onChange(), warnNotices);
    },
    async close() {
      await unfollow?.();
      await services.close();
    },
  };
}
