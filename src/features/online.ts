/**
 * The online feature store in front of the SQL one (MNEME_REDIS_URL): chat reads a user's online
 * vector from it (`OnlineFeatureReader`), the materializer copies each changed user's vector to it
 * after the SQL commit (`OnlineFeatureSync`). The SQL store stays the truth: a Redis error falls
 * back to the SQL read (counted, logged at most once per FALLBACK_LOG_INTERVAL_MS), and a user
 * missing from Redis (never written, or lost by a Redis restart without persistence) is read from
 * SQL and filled in, at a version any materialized write overrides.
 */
import type { FeatureValue, OnlineFeatureStore, OnlineFeatureWrite } from '../core/online-features.ts';
import { MnemeError } from '../core/errors.ts';
import type { Store } from '../core/store/index.ts';

/** Counter of online reads answered from the SQL store because Redis failed. */
export const ONLINE_FALLBACK_METRIC = 'mneme_online_features_fallback_total';
/** At most one warning per this many ms about Redis failing (the metric counts every one). */
export const FALLBACK_LOG_INTERVAL_MS = 60_000;

/** An online store that tells a miss from an empty vector and can fill a miss (RedisOnlineFeatureStore). */
export interface CachingOnlineStore extends OnlineFeatureStore {
  /** The user's values, or null when the store has nothing for the user. */
  readOrMiss(userId: number): Promise<Record<string, FeatureValue> | null>;
  /** Writes the values only if the user is still missing; false when skipped. */
  fill(userId: number, values: Record<string, FeatureValue>): Promise<boolean>;
}

export interface OnlineFeatureReaderOptions {
  store: Pick<Store, 'features'>;
  online: CachingOnlineStore;
  /** Called for every read that fell back to SQL (increment a counter). */
  onFallback?: (() => void) | undefined;
  /** Warned at most once per FALLBACK_LOG_INTERVAL_MS. */
  logger?: { warn(msg: string, fields?: Record<string, unknown>): void } | undefined;
  /** Clock in ms (tests); default Date.now. */
  now?: (() => number) | undefined;
}

/** Online reads from Redis with the SQL store as the fallback and the source of misses. */
export class OnlineFeatureReader {
  private lastWarnMs = Number.NEGATIVE_INFINITY;
  private suppressed = 0;

  constructor(private readonly opts: OnlineFeatureReaderOptions) {}

  /** The user's latest values: Redis, else (miss or error) the SQL store. Store errors propagate. */
  async read(userId: number): Promise<Record<string, FeatureValue>> {
    let cached: Record<string, FeatureValue> | null;
    try {
      cached = await this.opts.online.readOrMiss(userId);
    } catch (err) {
      this.fellBack(err as Error);
      return this.opts.store.features.onlineValues(userId);
    }
    if (cached) return cached;
    const values = await this.opts.store.features.onlineValues(userId);
    // Not awaited: the answer does not wait for the fill; a failure is only a later miss again.
    this.opts.online.fill(userId, values).catch((err: unknown) => this.fellBack(err as Error));
    return values;
  }

  private fellBack(err: Error): void {
    this.opts.onFallback?.();
    const now = (this.opts.now ?? Date.now)();
    if (now - this.lastWarnMs < FALLBACK_LOG_INTERVAL_MS) {
      this.suppressed++;
      return;
    }
    this.opts.logger?.warn('online feature store (redis) failed; reading features from the SQL store', { error: err.message, suppressed_since_last: this.suppressed });
    this.lastWarnMs = now;
    this.suppressed = 0;
  }
}

/** What one committed materialization batch changed. */
export interface CommittedBatch {
  /** The batch started the features over (every online value was deleted first). */
  reset: boolean;
  /** The SQL feature generation after the commit (orders the online writes). */
  version: number;
  /** Each changed user's whole online vector (not only the changed features). */
  users: ReadonlyMap<number, Record<string, FeatureValue>>;
}

/**
 * Copies committed batches to the online store. A failed copy is retried with the next batch (users
 * re-read from the SQL store); until then the stale users' entries are dropped where possible, so
 * their reads miss and go to SQL instead of returning old values.
 */
export class OnlineFeatureSync {
  private readonly pendingUsers = new Set<number>();
  private pendingClear = false;

  constructor(
    readonly online: OnlineFeatureStore,
    private readonly store: Pick<Store, 'features'>,
  ) {}

  /** Users whose online entry could not be written yet (tests, logs). */
  pending(): number {
    return this.pendingUsers.size + (this.pendingClear ? 1 : 0);
  }

  /**
   * Writes `batch` (after a clear when it reset), plus anything a previous failure left.
   * @throws MnemeError `online_features_stale` (503) when the online store failed: the SQL commit
   * stands; the users are retried with the next batch.
   */
  async afterCommit(batch: CommittedBatch): Promise<void> {
    if (batch.reset) {
      this.pendingClear = true;
      this.pendingUsers.clear();
    }
    for (const u of batch.users.keys()) this.pendingUsers.delete(u);
    const carried = [...this.pendingUsers];
    try {
      if (this.pendingClear) {
        await this.online.clear();
        this.pendingClear = false;
      }
      const entries: OnlineFeatureWrite[] = [...batch.users].map(([userId, values]) => ({ userId, values }));
      for (const userId of carried) entries.push({ userId, values: await this.store.features.onlineValues(userId) });
      await this.online.writeMany(entries, batch.version);
      for (const u of carried) this.pendingUsers.delete(u);
    } catch (err) {
      for (const u of batch.users.keys()) this.pendingUsers.add(u);
      await this.dropStale();
      throw new MnemeError('online_features_stale', 503, `online feature store not updated for ${this.pendingUsers.size} users (retried with the next batch): ${(err as Error).message}`, { cause: err });
    }
  }

  /** Best effort: deletes the stale users' entries so their reads fall through to the SQL store. */
  private async dropStale(): Promise<void> {
    await this.online.invalidate([...this.pendingUsers]).catch(() => {});
  }
}
