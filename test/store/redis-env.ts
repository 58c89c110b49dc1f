/**
 * The Redis test server: `MNEME_TEST_REDIS_URL` (e.g. redis://127.0.0.1:6379). Each test uses its
 * own random key prefix and deletes its keys afterwards (`dropPrefix`), so runs can share a server.
 *
 * Unset or unreachable: the Redis suites skip with the reason printed, unless `CI` is set — a CI run
 * must exercise Redis, so there the reason fails the run instead.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL_VAR = 'MNEME_TEST_REDIS_URL';
/** How long the reachability probe waits, in ms. */
export const PROBE_TIMEOUT_MS = 3_000;

export type RedisAvailability = { url: string; reason: null } | { url: null; reason: string };

/** Probes `MNEME_TEST_REDIS_URL` with a PING; never throws. */
export async function findRedisTestServer(): Promise<RedisAvailability> {
  const url = process.env[TEST_REDIS_URL_VAR];
  if (!url) return { url: null, reason: `${TEST_REDIS_URL_VAR} is not set` };
  const probe = new Redis(url, { lazyConnect: true, connectTimeout: PROBE_TIMEOUT_MS, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
    return { url, reason: null };
  } catch (err) {
    return { url: null, reason: `${TEST_REDIS_URL_VAR}=${url} is unreachable: ${(err as Error).message}` };
  } finally {
    probe.disconnect();
  }
}

/** A fresh key prefix (letters and digits only). */
export function randomPrefix(): string {
  return `mnemetest${randomBytes(6).toString('hex')}`;
}

/** Deletes every key starting with `prefix:` (SCAN + UNLINK). */
export async function dropPrefix(client: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length > 0) n += await client.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
  return n;
}
