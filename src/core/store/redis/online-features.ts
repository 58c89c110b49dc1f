/**
 * The online feature store in Redis: one hash per user, `<prefix>:features:<userId>`, field =
 * feature name, value = the value's JSON (so numbers, strings, null, arrays and maps round-trip
 * exactly). Field `@v` holds the SQL feature generation the values come from: writes are versioned
 * (ONLINE_WRITE_SCRIPT), so a late writer never rolls a user back. An erasure leaves a tombstone
 * (`<prefix>:features-erased:<userId>`, ERASE_TOMBSTONE_SECONDS) that refuses writes racing with it.
 *
 * A user without a hash is a miss (`readOrMiss` → null): Redis may have been restarted without
 * persistence; the caller then reads the SQL store and fills the hash (`fill`).
 */
import type { Redis } from 'ioredis';
import type { FeatureValue, OnlineFeatureStore, OnlineFeatureWrite } from '../../online-features.ts';
import { ValidationError } from '../../errors.ts';
import { RedisUnavailableError, checkPrefix, closeRedis, redisCall, requireReady } from './connection.ts';
import { ONLINE_WRITE_SCRIPT, defineScript, script } from './scripts.ts';

/** How long an erased user's id refuses online writes, in s (1 h: far longer than any write in flight). */
export const ERASE_TOMBSTONE_SECONDS = 3600;
/** Users per pipeline round trip in `writeMany`. */
export const WRITE_PIPELINE_USERS = 1000;
/** Keys per SCAN step / UNLINK in `clear`. */
export const CLEAR_SCAN_COUNT = 1000;
/** Hash field holding the version; feature names may not start with '@'. */
const VERSION_FIELD = '@v';
const UNVERSIONED = -1;

export interface RedisOnlineFeatureStoreOptions {
  client: Redis;
  /** Key prefix (MNEME_REDIS_PREFIX); default `mneme`. */
  prefix?: string | undefined;
  /** `close()` quits the client. Default false (the client is shared; its owner closes it). */
  ownsClient?: boolean | undefined;
}

function fieldArgs(values: Record<string, FeatureValue>): string[] {
  const args: string[] = [];
  for (const [feature, value] of Object.entries(values)) {
    if (feature.startsWith('@')) throw new ValidationError(`online feature names may not start with "@" (got ${JSON.stringify(feature)})`);
    args.push(feature, JSON.stringify(value));
  }
  return args;
}

export class RedisOnlineFeatureStore implements OnlineFeatureStore {
  readonly prefix: string;
  private readonly client: Redis;
  private readonly ownsClient: boolean;

  /** @throws RangeError for a bad prefix. */
  constructor(opts: RedisOnlineFeatureStoreOptions) {
    this.client = opts.client;
    this.prefix = checkPrefix(opts.prefix);
    this.ownsClient = opts.ownsClient ?? false;
    defineScript(this.client, ONLINE_WRITE_SCRIPT);
  }

  /** The user's hash key. */
  key(userId: number): string {
    return `${this.prefix}:features:${userId}`;
  }

  private tombstone(userId: number): string {
    return `${this.prefix}:features-erased:${userId}`;
  }

  /** @throws ValidationError for a feature name starting with '@'; RedisUnavailableError. */
  async write(userId: number, values: Record<string, FeatureValue>): Promise<void> {
    await this.writeMany([{ userId, values }]);
  }

  /**
   * One script call per user, WRITE_PIPELINE_USERS per round trip. Event times are not kept (the
   * SQL store has them). A user whose tombstone is alive is skipped.
   * @throws ValidationError for a feature name starting with '@'; RedisUnavailableError.
   */
  async writeMany(entries: readonly OnlineFeatureWrite[], version?: number): Promise<void> {
    const v = version ?? UNVERSIONED;
    if (!Number.isInteger(v) || v < UNVERSIONED) throw new ValidationError(`online feature version must be an integer >= 0 (got ${String(version)})`);
    for (let i = 0; i < entries.length; i += WRITE_PIPELINE_USERS) {
      await this.runWrites(entries.slice(i, i + WRITE_PIPELINE_USERS), v, false);
    }
  }

  /**
   * Writes the user's values only when the user has no hash (and no tombstone): a read-through
   * fill from the SQL store, at version 0 so any materialized write wins over it.
   * @returns true when written.
   */
  async fill(userId: number, values: Record<string, FeatureValue>): Promise<boolean> {
    const written = await this.runWrites([{ userId, values }], 0, true);
    return written[0] === 1;
  }

  private async runWrites(entries: readonly OnlineFeatureWrite[], version: number, onlyIfAbsent: boolean): Promise<number[]> {
    const pipeline = this.client.pipeline();
    const call = script<number>(pipeline, ONLINE_WRITE_SCRIPT.name);
    for (const e of entries) void call(this.key(e.userId), this.tombstone(e.userId), version, onlyIfAbsent ? '1' : '0', ...fieldArgs(e.values));
    const results = (await redisCall('online feature write', pipeline.exec())) ?? [];
    return results.map(([err, r]) => {
      if (err) throw new RedisUnavailableError(`redis: online feature write failed: ${err.message}`, { cause: err });
      return Number(r);
    });
  }

  /** @throws RedisUnavailableError. */
  async read(userId: number): Promise<Record<string, FeatureValue>> {
    return (await this.readOrMiss(userId)) ?? {};
  }

  /**
   * The user's values, or null when the user has no hash (never written, erased, or lost by a
   * Redis restart). One HGETALL. Fails at once while disconnected (the caller falls back).
   * @throws RedisUnavailableError (also for a value that is not JSON: the hash is not mneme's).
   */
  async readOrMiss(userId: number): Promise<Record<string, FeatureValue> | null> {
    requireReady(this.client, 'online feature read');
    const raw = await redisCall('HGETALL', this.client.hgetall(this.key(userId)));
    let found = false;
    const out: Record<string, FeatureValue> = {};
    for (const [field, json] of Object.entries(raw)) {
      found = true;
      if (field === VERSION_FIELD) continue;
      try {
        out[field] = JSON.parse(json) as FeatureValue;
      } catch (err) {
        throw new RedisUnavailableError(`redis: ${this.key(userId)} field ${field} is not JSON`, { cause: err });
      }
    }
    return found ? out : null;
  }

  /** Tombstones the user (refusing racing writes for ERASE_TOMBSTONE_SECONDS) and deletes the hash, atomically. */
  async erase(userId: number): Promise<void> {
    const results = await redisCall(
      'erase',
      this.client.multi().set(this.tombstone(userId), '1', 'EX', ERASE_TOMBSTONE_SECONDS).unlink(this.key(userId)).exec(),
    );
    for (const [err] of results ?? []) if (err) throw new RedisUnavailableError(`redis: erase failed: ${err.message}`, { cause: err });
  }

  /** Deletes the users' hashes (no tombstone): their next reads miss and are filled from the SQL store. */
  async invalidate(userIds: readonly number[]): Promise<void> {
    for (let i = 0; i < userIds.length; i += CLEAR_SCAN_COUNT) {
      const keys = userIds.slice(i, i + CLEAR_SCAN_COUNT).map((u) => this.key(u));
      if (keys.length > 0) await redisCall('UNLINK', this.client.unlink(...keys));
    }
  }

  /** Deletes every user's hash of this prefix (SCAN + UNLINK; tombstones stay). */
  async clear(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await redisCall('SCAN', this.client.scan(cursor, 'MATCH', `${this.prefix}:features:*`, 'COUNT', CLEAR_SCAN_COUNT));
      if (keys.length > 0) await redisCall('UNLINK', this.client.unlink(...keys));
      cursor = next;
    } while (cursor !== '0');
  }

  async close(): Promise<void> {
    if (this.ownsClient) await closeRedis(this.client);
  }
}
