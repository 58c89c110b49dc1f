/**
 * The Redis connection of mneme (MNEME_REDIS_URL): the online feature store, the per-user rate-limit
 * buckets and the corpus-change notices use it. Redis is never the truth: every value kept there is
 * also in the SQL store (features) or can be lost without harm (rate-limit buckets, notices), so a
 * Redis without persistence is fine.
 *
 * Keys: `<prefix>:<kind>:<id>` (MNEME_REDIS_PREFIX, default `mneme`), so several deployments (or
 * test runs) can share one Redis. A standalone Redis (or a replicated primary) is assumed, not Redis
 * Cluster.
 */
import { Redis } from 'ioredis';
import { MnemeError } from '../../errors.ts';

/** Deadline of one command, in ms: a Redis that stops answering fails the command (callers fall back). */
export const REDIS_COMMAND_TIMEOUT_MS = 1000;
/** Deadline of the TCP connect, in ms. */
export const REDIS_CONNECT_TIMEOUT_MS = 2000;
/** Longest wait between reconnect attempts, in ms (ioredis retries forever, backing off to this). */
export const REDIS_MAX_RECONNECT_DELAY_MS = 2000;
/** Error code of a Redis failure wrapped in a MnemeError. */
export const REDIS_ERROR_CODE = 'redis_unavailable';

/** Allowed key prefixes (config validates MNEME_REDIS_PREFIX the same way): no glob characters. */
const PREFIX_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export interface RedisOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…`. */
  url: string;
  /** Key prefix; default `mneme`. */
  prefix?: string | undefined;
}

/**
 * A Redis failure (connection refused, timeout, script error) as a typed error (503). Callers that
 * can do without Redis catch it and fall back.
 */
export class RedisUnavailableError extends MnemeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(REDIS_ERROR_CODE, 503, message, options);
  }
}

/** Wraps any rejection of `p` into a RedisUnavailableError naming `what`. */
export async function redisCall<T>(what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof RedisUnavailableError) throw err;
    throw new RedisUnavailableError(`redis: ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * For the request path: fails at once (instead of waiting for a reconnect) while `client` is not
 * connected, so callers fall back without adding latency.
 * @throws RedisUnavailableError when the client is not ready.
 */
export function requireReady(client: Redis, what: string): void {
  if (client.status !== 'ready') throw new RedisUnavailableError(`redis: ${what}: not connected (${client.status})`);
}

/**
 * Checks a key prefix.
 * @throws RangeError for a prefix with characters other than letters, digits, `_`, `-`, `.`.
 */
export function checkPrefix(prefix: string | undefined): string {
  const p = prefix ?? 'mneme';
  if (!PREFIX_PATTERN.test(p)) throw new RangeError(`redis key prefix must match ${PREFIX_PATTERN} (got ${JSON.stringify(p)})`);
  return p;
}

/**
 * Opens a client (connects in the background; commands issued meanwhile wait, up to
 * REDIS_COMMAND_TIMEOUT_MS). Reconnects forever with backoff; a command sent while disconnected
 * fails after one retry instead of hanging. Never logs the URL (it may hold a password).
 */
export function openRedis(url: string): Redis {
  const client = new Redis(url, {
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 100, REDIS_MAX_RECONNECT_DELAY_MS),
  });
  // Without a listener an unreachable server is an unhandled 'error' event; failures surface on commands.
  client.on('error', () => {});
  return client;
}

/** Closes a client: QUIT when connected (pending replies arrive first), else drops the socket. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

/**
 * Waits until `client` is connected.
 * @throws RedisUnavailableError when it is not within `timeoutMs`.
 */
export async function waitReady(client: Redis, timeoutMs = REDIS_CONNECT_TIMEOUT_MS): Promise<void> {
  await redisCall('PING', Promise.race([
    client.ping(),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref()),
  ]));
}
