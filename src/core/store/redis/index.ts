/**
 * The Redis side of a deployment (MNEME_REDIS_URL): one shared client, the online feature store and
 * the corpus notifier on it. Rate limiters are built by the server (they need its limits):
 * `new RedisTokenBucketLimiter({ client: services.client, prefix: services.prefix, ... })`.
 */
import type { Redis } from 'ioredis';
import { checkPrefix, closeRedis, openRedis } from './connection.ts';
import type { RedisOptions } from './connection.ts';
import { CorpusNotifier } from './notify.ts';
import { RedisOnlineFeatureStore } from './online-features.ts';

export { RedisUnavailableError, openRedis, closeRedis, waitReady } from './connection.ts';
export type { RedisOptions } from './connection.ts';
export { CorpusNotifier } from './notify.ts';
export type { CorpusChangeListener } from './notify.ts';
export { RedisOnlineFeatureStore } from './online-features.ts';
export { RedisTokenBucketLimiter } from './rate-limit.ts';

export interface RedisServices {
  client: Redis;
  prefix: string;
  online: RedisOnlineFeatureStore;
  notifier: CorpusNotifier;
  /** Closes the notifier's subscriptions, then the client. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens the client (connecting in the background: a Redis that is down makes commands fail, and
 * every caller has a fallback) and builds the services on it.
 * @throws RangeError for a bad prefix.
 */
export function openRedisServices(opts: RedisOptions): RedisServices {
  const prefix = checkPrefix(opts.prefix);
  const client = openRedis(opts.url);
  const online = new RedisOnlineFeatureStore({ client, prefix });
  const notifier = new CorpusNotifier({ client, prefix });
  let closed = false;
  return {
    client,
    prefix,
    online,
    notifier,
    async close() {
      if (closed) return;
      closed = true;
      await notifier.close();
      await closeRedis(client);
    },
  };
}
