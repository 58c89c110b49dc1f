/**
 * Reads of the user feature store (SQLite, embedded): the online vector (latest values), point-in-time
 * reads for one user, a point-in-time join for many (user, time) rows, and erasure.
 *
 * Point-in-time rule: for a time t, each feature's value is the history row with the greatest
 * event_time <= t (inclusive boundary); a value whose event_time is after t is never returned. What
 * an event time means (and why windowed features are as of their event time) is in definitions.ts.
 * Features with no row at or before t are absent from the result (unknown), never null-filled.
 */
import { z } from 'zod';
import type { Db } from '../core/db.ts';
import { ValidationError } from '../core/errors.ts';
import type { FeatureReader, FeatureValue } from './types.ts';

export interface OnlineFeatureRecord {
  feature: string;
  value: FeatureValue;
  /** Event time of the value (see definitions.ts). */
  eventTime: string;
}

export interface PointInTimeRow {
  userId: number;
  /** ISO-8601 instant with Z or an offset (or a date, meaning its UTC midnight). */
  time: string;
}

/**
 * The join reads a user's values with one scan when at least 1/PIT_SCAN_FRACTION_INVERSE of their
 * history rows are selected, else by unique-key lookups (one lookup costs about as much as a few scanned rows).
 */
export const PIT_SCAN_FRACTION_INVERSE = 4;

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

/** Parses a stored value; arrays are frozen because the join shares one parsed value between rows. */
function parseShared(json: string): FeatureValue {
  const v = JSON.parse(json) as FeatureValue;
  return Array.isArray(v) ? (Object.freeze(v) as FeatureValue) : v;
}

function prepareStatements(db: Db) {
  return {
    online: db.prepare<[number], [string, string]>('SELECT feature, value_json FROM feature_online WHERE user_id = ?').raw(),
    onlineRecords: db.prepare<[number], [string, string, string]>('SELECT feature, value_json, event_time FROM feature_online WHERE user_id = ? ORDER BY feature').raw(),
    // The latest event time per feature at or before t from the covering index alone, then only
    // those rows' values (a long history of 3 KB vectors is never read). CROSS JOIN pins that order.
    asOf: db
      .prepare<[{ user: number; t: string }], [string, string]>(
        `SELECT h.feature, h.value_json
         FROM (SELECT feature, max(event_time) AS t FROM feature_history WHERE user_id = @user AND event_time <= @t GROUP BY feature) m
         CROSS JOIN feature_history h ON h.user_id = @user AND h.feature = m.feature AND h.event_time = m.t
         ORDER BY h.feature`,
      )
      .raw(),
    // Keys only, from the covering UNIQUE index: the large values (a 384-d vector is ~3 KB) are not read.
    historyKeys: db.prepare<[number], [string, string]>('SELECT feature, event_time FROM feature_history WHERE user_id = ? ORDER BY feature, event_time').raw(),
    historyValues: db.prepare<[number], string>('SELECT value_json FROM feature_history WHERE user_id = ? ORDER BY feature, event_time').pluck(),
    historyValue: db.prepare<[number, string, string], string>('SELECT value_json FROM feature_history WHERE user_id = ? AND feature = ? AND event_time = ?').pluck(),
    eraseHistory: db.prepare('DELETE FROM feature_history WHERE user_id = ?'),
    eraseOnline: db.prepare('DELETE FROM feature_online WHERE user_id = ?'),
    eraseState: db.prepare('DELETE FROM feature_user_state WHERE user_id = ?'),
  };
}

export class SqliteFeatureStore implements FeatureReader {
  private readonly db: Db;
  private readonly stmt: ReturnType<typeof prepareStatements>;

  constructor(opts: { db: Db }) {
    this.db = opts.db;
    this.stmt = prepareStatements(opts.db);
  }

  /**
   * Latest materialized values for the user (one indexed range read of feature_online); an empty
   * object for a user with no history.
   * @throws ValidationError for a non-positive or non-integer id.
   */
  getOnlineFeatures(userId: number): Record<string, FeatureValue> {
    const out: Record<string, FeatureValue> = {};
    for (const [feature, json] of this.stmt.online.all(checkUserId(userId))) out[feature] = JSON.parse(json) as FeatureValue;
    return out;
  }

  /** Latest values with their event times, by feature name (for `GET /v1/me/features`). */
  getOnlineFeatureRecords(userId: number): OnlineFeatureRecord[] {
    return this.stmt.onlineRecords.all(checkUserId(userId)).map(([feature, json, eventTime]) => ({ feature, value: JSON.parse(json) as FeatureValue, eventTime }));
  }

  /**
   * Values as they were at `timeIso`: per feature, the history row with the greatest event_time <= t.
   * @throws ValidationError for a bad user id or time.
   */
  getFeaturesAsOf(userId: number, timeIso: string): Record<string, FeatureValue> {
    const out: Record<string, FeatureValue> = {};
    for (const [feature, json] of this.stmt.asOf.all({ user: checkUserId(userId), t: normalizeTime(timeIso) })) out[feature] = JSON.parse(json) as FeatureValue;
    return out;
  }

  /**
   * Point-in-time join: for each (userId, time) row, the values `getFeaturesAsOf(userId, time)` would
   * return (restricted to `opts.features` when given), in input order. Per distinct user: one read of
   * the history KEYS, a merge of the user's sorted request times with each feature's sorted event
   * times, then the values of only the history rows actually selected — by one scan when they are
   * most of the user's history (the typical training join, one row per logged response), by primary
   * key lookups when few are (sparse samples of long histories). Never one query per (row, feature).
   * Runs in one read transaction (a consistent snapshot). Array values are frozen and shared
   * between result rows.
   * @throws ValidationError naming the first bad row.
   */
  pointInTimeJoin(rows: ReadonlyArray<PointInTimeRow>, opts: { features?: readonly string[] } = {}): Array<Record<string, FeatureValue>> {
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
    const out: Array<Record<string, FeatureValue>> = rows.map(() => ({}));
    this.db.transaction(() => {
      for (const [userId, indices] of byUser) {
        indices.sort((a, b) => (times[a]! < times[b]! ? -1 : times[a]! > times[b]! ? 1 : 0));
        const keys = this.stmt.historyKeys.all(userId);
        // (result row, feature, selected history position) triples, found on keys alone.
        const picks: Array<[number, string, number]> = [];
        const needed = new Set<number>();
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
              needed.add(p);
            }
          }
          start = end;
        }
        if (picks.length === 0) continue;
        const values = new Map<number, FeatureValue>();
        if (needed.size * PIT_SCAN_FRACTION_INVERSE >= keys.length) {
          const all = this.stmt.historyValues.all(userId);
          for (const p of needed) values.set(p, parseShared(all[p]!));
        } else {
          for (const p of needed) values.set(p, parseShared(this.stmt.historyValue.get(userId, keys[p]![0], keys[p]![1])!));
        }
        for (const [i, feature, p] of picks) out[i]![feature] = values.get(p)!;
      }
    })();
    return out;
  }

  /**
   * Removes every feature row of the user (history, online, pipeline state) in one transaction
   * (a savepoint when called inside the caller's transaction, e.g. user deletion). The user's log
   * rows are the caller's business: deleting the user cascades them; erasing features while keeping
   * the log would let the next materialization start the user over from new rows only.
   */
  eraseUser(userId: number): { history: number; online: number; state: number } {
    checkUserId(userId);
    return this.db.transaction(() => ({
      history: this.stmt.eraseHistory.run(userId).changes,
      online: this.stmt.eraseOnline.run(userId).changes,
      state: this.stmt.eraseState.run(userId).changes,
    }))();
  }
}
