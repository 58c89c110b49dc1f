/**
 * The online feature store: each user's latest feature values, read on every chat request. Two
 * implementations: `SqlOnlineFeatureStore` (the SQL store's online table, `store.features`: the
 * embedded default) and `RedisOnlineFeatureStore` (src/core/store/redis/online-features.ts, one hash
 * per user, selected by MNEME_REDIS_URL). The SQL store stays the truth either way: the materializer
 * commits there first and then copies each changed user's vector to Redis (src/features/online.ts).
 */
import type { Store } from './store/index.ts';
import type { FeatureHistoryWrite, FeatureValue } from './store/features.ts';

export type { FeatureValue } from './store/features.ts';

/** One user's values for `writeMany`. */
export interface OnlineFeatureWrite {
  userId: number;
  /** Feature name → value (numbers, strings, null, number/string arrays, small maps). */
  values: Record<string, FeatureValue>;
  /** Event time per feature (ISO-8601 UTC); stores that keep none ignore it. Default: now. */
  eventTimes?: Record<string, string> | undefined;
}

export interface OnlineFeatureStore {
  /** Sets the given features of the user (features not named are kept). */
  write(userId: number, values: Record<string, FeatureValue>, eventTimes?: Record<string, string>): Promise<void>;
  /**
   * `write` for many users in one round trip / transaction.
   * @param version the SQL store's feature generation the values come from (Redis: a write older than
   * what the user's entry already holds is skipped, so late writers never roll values back). Optional.
   */
  writeMany(entries: readonly OnlineFeatureWrite[], version?: number): Promise<void>;
  /** The user's values ({} when none). Values round-trip exactly (arrays as arrays). */
  read(userId: number): Promise<Record<string, FeatureValue>>;
  /** Removes everything the store holds for the user. */
  erase(userId: number): Promise<void>;
  /**
   * Drops the users' entries without a tombstone, so their next reads miss and go to the SQL store
   * (after a failed write). A store that is itself the truth (SQL) does nothing.
   */
  invalidate(userIds: readonly number[]): Promise<void>;
  /** Removes every user's values (a feature rebuild starts over). */
  clear(): Promise<void>;
  /** Releases connections (idempotent); the SQL-backed store leaves the Store open (its owner closes it). */
  close(): Promise<void>;
}

/** Reads and writes the SQL store's online table through `store.features`. */
export class SqlOnlineFeatureStore implements OnlineFeatureStore {
  constructor(private readonly store: Pick<Store, 'features'>) {}

  async write(userId: number, values: Record<string, FeatureValue>, eventTimes?: Record<string, string>): Promise<void> {
    await this.writeMany([{ userId, values, eventTimes }]);
  }

  async writeMany(entries: readonly OnlineFeatureWrite[]): Promise<void> {
    const now = new Date().toISOString();
    const rows: FeatureHistoryWrite[] = [];
    for (const e of entries) {
      for (const [feature, value] of Object.entries(e.values)) {
        rows.push({ userId: e.userId, feature, eventTime: e.eventTimes?.[feature] ?? now, valueJson: JSON.stringify(value) });
      }
    }
    if (rows.length > 0) await this.store.features.writeOnline(rows);
  }

  async read(userId: number): Promise<Record<string, FeatureValue>> {
    return this.store.features.onlineValues(userId);
  }

  /** Removes the user's feature rows (history, online values, pipeline state: the SQL store keeps them together). */
  async erase(userId: number): Promise<void> {
    await this.store.features.eraseUser(userId);
  }

  /** No-op: this table is the truth. */
  async invalidate(): Promise<void> {}

  /** No-op: the SQL online table is reset with the rest of the features (`store.features.reset`). */
  async clear(): Promise<void> {}

  async close(): Promise<void> {}
}
