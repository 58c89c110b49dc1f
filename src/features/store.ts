/**
 * Reads of the user feature store: the online vector (latest values), point-in-time reads for one
 * user, a point-in-time join for many (user, time) rows, and erasure. The tables are the store's
 * (`store.features`, src/core/store/features.ts); this class validates input and does the joins.
 *
 * Point-in-time rule: for a time t, each feature's value is the history row with the greatest
 * event_time <= t (inclusive boundary); a value whose event_time is after t is never returned. What
 * an event time means (and why windowed features are as of their event time) is in definitions.ts.
 * Features with no row at or before t are absent from the result (unknown), never null-filled.
 */
import { z } from 'zod';
import { ValidationError } from '../core/errors.ts';
import type { Store } from '../core/store/index.ts';
import type { FeatureHistoryKey, OnlineFeatureRecord } from '../core/store/features.ts';
import type { OnlineFeatureReader } from './online.ts';
import type { FeatureReader, FeatureValue } from './types.ts';

export type { OnlineFeatureRecord } from '../core/store/features.ts';

export interface PointInTimeRow {
  userId: number;
  /** ISO-8601 instant with Z or an offset (or a date, meaning its UTC midnight). */
  time: string;
}

const userIdSchema = z.number().int().positive();
const timeSchema = z.union([z.iso.datetime({ offset: true }), z.iso.date()]);

/** Validates an ISO time and returns it in the stored form (toISOString, which sorts as text). */
export function normalizeTime(time: string): string {
  const res = timeSchema.safeParse(time);
  const ms = res.success ? Date.parse(time) : Number.NaN;
  if (Number.isNaN(ms)) throw new ValidationError(`time must be an ISO-8601 instant with Z or an offset, or a date (got ${JSON.stringify(time)})`);
  return new Date(ms).toISOString();
}

function checkUserId(userId: number): number {
  if (!userIdSchema.safeParse(userId).success) throw new ValidationError(`userId must be a positive integer (got ${String(userId)})`);
  return userId;
}

/** Arrays are frozen because the join shares one parsed value between rows. */
function shared(v: FeatureValue): FeatureValue {
  return Array.isArray(v) ? (Object.freeze(v) as FeatureValue) : v;
}

/** (result row, feature, picked history position) triples of one user, found on the keys alone. */
type Pick = [row: number, feature: string, position: number];

/**
 * Merges a user's request times (row indices sorted by time) with each feature's sorted event times:
 * for each row and feature, the position of the last key at or before the row's time.
 */
function pickPositions(keys: readonly FeatureHistoryKey[], indices: readonly number[], times: readonly string[], wanted: Set<string> | null, picks: Pick[]): number[] {
  const needed: number[] = [];
  let start = 0;
  while (start < keys.length) {
    const feature = keys[start]![0];
    let end = start;
    while (end < keys.length && keys[end]![0] === feature) end++;
    if (wanted === null || wanted.has(feature)) {
      // keys[start..end) is this feature's rows by event_time; walk it alongside the sorted times.
      let p = start - 1;
      for (const i of indices) {
        const t = times[i]!;
        while (p + 1 < end && keys[p + 1]![1] <= t) p++;
        if (p < start) continue;
        picks.push([i, feature, p]);
        needed.push(p);
      }
    }
    start = end;
  }
  return needed;
}

export class FeatureStore implements FeatureReader {
  private readonly store: Store;
  private readonly online: OnlineFeatureReader | undefined;

  /** `online`: read online values through it (Redis, falling back to SQL); default: the SQL online table. */
  constructor(opts: { store: Store; online?: OnlineFeatureReader | undefined }) {
    this.store = opts.store;
    this.online = opts.online;
  }

  /**
   * Latest materialized values for the user (one indexed range read of the online table, or one
   * Redis HGETALL with `online`); an empty object for a user with no history.
   * @throws ValidationError for a non-positive or non-integer id.
   */
  async getOnlineFeatures(userId: number): Promise<Record<string, FeatureValue>> {
    const id = checkUserId(userId);
    return this.online ? this.online.read(id) : this.store.features.onlineValues(id);
  }

  /** Latest values with their event times, by feature name (for `GET /v1/me/features`). */
  async getOnlineFeatureRecords(userId: number): Promise<OnlineFeatureRecord[]> {
    return this.store.features.onlineRecords(checkUserId(userId));
  }

  /**
   * Values as they were at `timeIso`: per feature, the history row with the greatest event_time <= t.
   * @throws ValidationError for a bad user id or time.
   */
  async getFeaturesAsOf(userId: number, timeIso: string): Promise<Record<string, FeatureValue>> {
    const user = checkUserId(userId);
    return this.store.features.valuesAsOf(user, normalizeTime(timeIso));
  }

  /**
   * Point-in-time join: for each (userId, time) row, the values `getFeaturesAsOf(userId, time)` would
   * return (restricted to `opts.features` when given), in input order. Per distinct user: one read of
   * the history KEYS, a merge of the user's sorted request times with each feature's sorted event
   * times, then the values of only the history rows actually selected (by one scan or by key
   * lookups, the store's choice). Never one query per (row, feature). One consistent snapshot.
   * Array values are frozen and shared between result rows.
   * @throws ValidationError naming the first bad row.
   */
  async pointInTimeJoin(rows: ReadonlyArray<PointInTimeRow>, opts: { features?: readonly string[] } = {}): Promise<Array<Record<string, FeatureValue>>> {
    const times = new Array<string>(rows.length);
    const byUser = new Map<number, number[]>();
    rows.forEach((row, i) => {
      try {
        times[i] = normalizeTime(row.time);
        const userId = checkUserId(row.userId);
        const list = byUser.get(userId);
        if (list) list.push(i);
        else byUser.set(userId, [i]);
      } catch (err) {
        throw new ValidationError(`pointInTimeJoin: row ${i}: ${(err as Error).message}`, { cause: err });
      }
    });
    const wanted = opts.features ? new Set(opts.features) : null;
    const picks = new Map<number, Pick[]>();
    const values = await this.store.features.readHistory([...byUser.keys()], (userId, keys) => {
      const indices = byUser.get(userId) ?? [];
      indices.sort((a, b) => (times[a]! < times[b]! ? -1 : times[a]! > times[b]! ? 1 : 0));
      const userPicks: Pick[] = [];
      picks.set(userId, userPicks);
      return pickPositions(keys, indices, times, wanted, userPicks);
    });
    const out: Array<Record<string, FeatureValue>> = rows.map(() => ({}));
    for (const [userId, userPicks] of picks) {
      const userValues = values.get(userId);
      const frozen = new Map<number, FeatureValue>();
      for (const [i, feature, p] of userPicks) {
        if (!frozen.has(p)) {
          const v = userValues?.get(p);
          if (v === undefined) continue;
          frozen.set(p, shared(v));
        }
        out[i]![feature] = frozen.get(p)!;
      }
    }
    return out;
  }

  /**
   * Removes every feature row of the user (history, online, pipeline state) in one transaction.
   * The user's log rows are the caller's business: deleting the user erases them; erasing features
   * while keeping the log would let the next materialization start the user over from new rows only.
   * @throws ValidationError for a bad id.
   */
  async eraseUser(userId: number): Promise<{ history: number; online: number; state: number }> {
    return this.store.features.eraseUser(checkUserId(userId));
  }
}
