/** SQLite implementation of {@link FeatureTableStore} (every statement of this aggregate lives here). */
import type {
  FeatureBatch,
  FeatureBatchWrite,
  FeatureHistoryKey,
  FeatureHistoryWrite,
  FeatureSourceFeedback,
  FeatureSourceResponse,
  FeatureTableStore,
  FeatureUserSnapshot,
  FeatureValue,
  FeatureWatermarks,
  OnlineFeatureRecord,
  RatedResponseInfo,
  StoredFeatureState,
} from '../features.ts';
import { blobToVector } from './codec.ts';
import type { SqliteConnection } from './connection.ts';

/** Watermark names (table `watermarks`). */
export const WATERMARK_RESPONSES = 'features.responses_seq';
export const WATERMARK_FEEDBACK = 'features.feedback_id';
/** Definitions version the stored features were computed with. */
export const WATERMARK_VERSION = 'features.definitions_version';
/** Bumped by every committed batch: the optimistic token of read → fold → commit. */
export const WATERMARK_GENERATION = 'features.generation';

/**
 * `readHistory` reads a user's values with one scan when at least 1/PIT_SCAN_FRACTION_INVERSE of their
 * history rows are picked, else by unique-key lookups (one lookup costs about as much as a few scanned rows).
 */
export const PIT_SCAN_FRACTION_INVERSE = 4;
/**
 * SQLite page cache of `withBulkTuning`, in KiB (64 MiB): a batch's inserts touch B-tree pages all
 * over feature_history, and the default 2 MiB cache re-reads them.
 */
export const BULK_CACHE_KIB = 65_536;

interface ResponseRow {
  seq: number;
  user_id: number;
  created_at: string;
  query: string;
  query_vector: Buffer | null;
  collection: string | null;
  citations_json: string;
}

interface FeedbackRow {
  id: number;
  response_id: string;
  user_id: number;
  rating: number;
  correction: string | null;
  created_at: string;
}

interface StateRow {
  state_json: string;
  interest_sum: Buffer | null;
}

const UPSERT_WATERMARK = 'INSERT INTO watermarks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value';

function toResponse(r: ResponseRow): FeatureSourceResponse {
  const v = r.query_vector;
  return {
    seq: r.seq,
    userId: r.user_id,
    createdAt: r.created_at,
    query: r.query,
    queryVector: v && v.byteLength > 0 && v.byteLength % 4 === 0 ? blobToVector(v) : null,
    collection: r.collection,
    citationsJson: r.citations_json,
  };
}

function toState(row: StateRow): StoredFeatureState {
  let interestSum: Float64Array | null = null;
  if (row.interest_sum && row.interest_sum.byteLength % 8 === 0) {
    interestSum = new Float64Array(row.interest_sum.byteLength / 8);
    new Uint8Array(interestSum.buffer).set(row.interest_sum);
  }
  return { stateJson: row.state_json, interestSum };
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export class SqliteFeatureTableStore implements FeatureTableStore {
  constructor(protected readonly c: SqliteConnection) {}

  async onlineValues(userId: number): Promise<Record<string, FeatureValue>> {
    const out: Record<string, FeatureValue> = {};
    const rows = this.c.stmt<[number], [string, string]>('SELECT feature, value_json FROM feature_online WHERE user_id = ?').raw().all(userId);
    for (const [feature, json] of rows) out[feature] = JSON.parse(json) as FeatureValue;
    return out;
  }

  async onlineRecords(userId: number): Promise<OnlineFeatureRecord[]> {
    const rows = this.c
      .stmt<[number], [string, string, string]>('SELECT feature, value_json, event_time FROM feature_online WHERE user_id = ? ORDER BY feature')
      .raw()
      .all(userId);
    return rows.map(([feature, json, eventTime]) => ({ feature, value: JSON.parse(json) as FeatureValue, eventTime }));
  }

  async valuesAsOf(userId: number, time: string): Promise<Record<string, FeatureValue>> {
    // The latest event time per feature at or before t from the covering index alone, then only
    // those rows' values (a long history of 3 KB vectors is never read). CROSS JOIN pins that order.
    const rows = this.c
      .stmt<[{ user: number; t: string }], [string, string]>(
        `SELECT h.feature, h.value_json
         FROM (SELECT feature, max(event_time) AS t FROM feature_history WHERE user_id = @user AND event_time <= @t GROUP BY feature) m
         CROSS JOIN feature_history h ON h.user_id = @user AND h.feature = m.feature AND h.event_time = m.t
         ORDER BY h.feature`,
      )
      .raw()
      .all({ user: userId, t: time });
    const out: Record<string, FeatureValue> = {};
    for (const [feature, json] of rows) out[feature] = JSON.parse(json) as FeatureValue;
    return out;
  }

  async readHistory(
    userIds: readonly number[],
    pick: (userId: number, keys: readonly FeatureHistoryKey[]) => Iterable<number>,
  ): Promise<Map<number, Map<number, FeatureValue>>> {
    // Keys only, from the covering UNIQUE index: the large values (a 384-d vector is ~3 KB) are not read.
    const keysOf = this.c.stmt<[number], [string, string]>('SELECT feature, event_time FROM feature_history WHERE user_id = ? ORDER BY feature, event_time').raw();
    const allValues = this.c.stmt<[number], string>('SELECT value_json FROM feature_history WHERE user_id = ? ORDER BY feature, event_time').pluck();
    const oneValue = this.c.stmt<[number, string, string], string>('SELECT value_json FROM feature_history WHERE user_id = ? AND feature = ? AND event_time = ?').pluck();
    return this.c.read(() => {
      const out = new Map<number, Map<number, FeatureValue>>();
      for (const userId of userIds) {
        const keys = keysOf.all(userId);
        const needed = [...new Set(pick(userId, keys))];
        const values = new Map<number, FeatureValue>();
        out.set(userId, values);
        if (needed.length === 0) continue;
        if (needed.length * PIT_SCAN_FRACTION_INVERSE >= keys.length) {
          const all = allValues.all(userId);
          for (const p of needed) if (all[p] !== undefined) values.set(p, JSON.parse(all[p]) as FeatureValue);
        } else {
          for (const p of needed) {
            const k = keys[p];
            const json = k ? oneValue.get(userId, k[0], k[1]) : undefined;
            if (json !== undefined) values.set(p, JSON.parse(json) as FeatureValue);
          }
        }
      }
      return out;
    });
  }

  async eraseUser(userId: number): Promise<{ history: number; online: number; state: number }> {
    return this.c.write(() => ({
      history: this.c.stmt('DELETE FROM feature_history WHERE user_id = ?').run(userId).changes,
      online: this.c.stmt('DELETE FROM feature_online WHERE user_id = ?').run(userId).changes,
      state: this.c.stmt('DELETE FROM feature_user_state WHERE user_id = ?').run(userId).changes,
    }));
  }

  private watermark(name: string): number | undefined {
    return this.c.stmt<[string], number>('SELECT value FROM watermarks WHERE name = ?').pluck().get(name);
  }

  async watermarks(): Promise<FeatureWatermarks> {
    return this.c.read(() => ({
      responsesSeq: this.watermark(WATERMARK_RESPONSES) ?? 0,
      feedbackId: this.watermark(WATERMARK_FEEDBACK) ?? 0,
      definitionsVersion: this.watermark(WATERMARK_VERSION) ?? null,
    }));
  }

  async readBatch(opts: { batchRows: number; definitionsVersion: number; rebuild: boolean }): Promise<FeatureBatch> {
    return this.c.read(() => {
      const reset = opts.rebuild || this.watermark(WATERMARK_VERSION) !== opts.definitionsVersion;
      const token = this.watermark(WATERMARK_GENERATION) ?? 0;
      const afterSeq = reset ? 0 : (this.watermark(WATERMARK_RESPONSES) ?? 0);
      const afterFeedback = reset ? 0 : (this.watermark(WATERMARK_FEEDBACK) ?? 0);
      const responses = this.c
        .stmt<[number, number], ResponseRow>('SELECT seq, user_id, created_at, query, query_vector, collection, citations_json FROM responses WHERE seq > ? ORDER BY seq LIMIT ?')
        .all(afterSeq, opts.batchRows)
        .map(toResponse);
      const feedback = this.readFeedback(afterFeedback, opts.batchRows);
      const ratedResponses = this.readRatedResponses(feedback);
      const users = new Map<number, FeatureUserSnapshot>();
      for (const { userId } of [...responses, ...feedback]) {
        if (!users.has(userId)) users.set(userId, reset ? { state: null, online: new Map() } : this.readUser(userId));
      }
      return { token, reset, responses, feedback, ratedResponses, users };
    });
  }

  private readFeedback(after: number, limit: number): FeatureSourceFeedback[] {
    const previous = this.c.stmt<[string, number, number], { rating: number; correction: string | null }>(
      'SELECT rating, correction FROM feedback WHERE response_id = ? AND user_id = ? AND id < ? ORDER BY id DESC LIMIT 1',
    );
    return this.c
      .stmt<[number, number], FeedbackRow>('SELECT id, response_id, user_id, rating, correction, created_at FROM feedback WHERE id > ? ORDER BY id LIMIT ?')
      .all(after, limit)
      .map((f) => ({
        id: f.id,
        responseId: f.response_id,
        userId: f.user_id,
        rating: f.rating,
        correction: f.correction,
        createdAt: f.created_at,
        previous: previous.get(f.response_id, f.user_id, f.id) ?? null,
      }));
  }

  private readRatedResponses(feedback: readonly FeatureSourceFeedback[]): Map<string, RatedResponseInfo> {
    const get = this.c.stmt<[string], { answer: string | null; citations_json: string }>('SELECT answer, citations_json FROM responses WHERE id = ?');
    const out = new Map<string, RatedResponseInfo>();
    for (const f of feedback) {
      if (out.has(f.responseId)) continue;
      const row = get.get(f.responseId);
      if (row) out.set(f.responseId, { answer: row.answer, citationsJson: row.citations_json });
    }
    return out;
  }

  private readUser(userId: number): FeatureUserSnapshot {
    const state = this.c.stmt<[number], StateRow>('SELECT state_json, interest_sum FROM feature_user_state WHERE user_id = ?').get(userId);
    const online = this.c.stmt<[number], [string, string]>('SELECT feature, value_json FROM feature_online WHERE user_id = ?').raw().all(userId);
    return { state: state ? toState(state) : null, online: new Map(online) };
  }

  async commitBatch(w: FeatureBatchWrite): Promise<boolean> {
    // Written in primary-key order: consecutive inserts land on the same B-tree pages, which halves
    // the CPU and I/O of a batch touching thousands of users. The sort is stable, so of two rows with
    // the same key the later one in log order is written last and wins (INSERT OR REPLACE).
    const byKey = (a: FeatureHistoryWrite, b: FeatureHistoryWrite) => a.userId - b.userId || cmp(a.feature, b.feature) || cmp(a.eventTime, b.eventTime);
    const history = [...w.history].sort(byKey);
    const online = [...w.online].sort(byKey);
    const states = [...w.states].sort((a, b) => a.userId - b.userId);
    return this.c.write(() => {
      // Read inside the write transaction: another process may have committed since the batch was read.
      if ((this.watermark(WATERMARK_GENERATION) ?? 0) !== w.token) return false;
      if (w.reset) this.resetNow(w.definitionsVersion);
      const insertHistory = this.c.stmt('INSERT OR REPLACE INTO feature_history (user_id, feature, event_time, value_json, created_at) VALUES (?, ?, ?, ?, ?)');
      for (const h of history) insertHistory.run(h.userId, h.feature, h.eventTime, h.valueJson, w.createdAt);
      const saveState = this.c.stmt(
        'INSERT INTO feature_user_state (user_id, state_json, interest_sum, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET state_json = excluded.state_json, interest_sum = excluded.interest_sum, updated_at = excluded.updated_at',
      );
      for (const { userId, state } of states) {
        const sum = state.interestSum ? Buffer.from(state.interestSum.buffer, state.interestSum.byteOffset, state.interestSum.byteLength) : null;
        saveState.run(userId, state.stateJson, sum, w.createdAt);
      }
      const saveOnline = this.c.stmt(
        'INSERT INTO feature_online (user_id, feature, value_json, event_time) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, feature) DO UPDATE SET value_json = excluded.value_json, event_time = excluded.event_time',
      );
      for (const o of online) saveOnline.run(o.userId, o.feature, o.valueJson, o.eventTime);
      const set = this.c.stmt(UPSERT_WATERMARK);
      if (w.lastResponseSeq !== null) set.run(WATERMARK_RESPONSES, w.lastResponseSeq);
      if (w.lastFeedbackId !== null) set.run(WATERMARK_FEEDBACK, w.lastFeedbackId);
      set.run(WATERMARK_VERSION, w.definitionsVersion);
      set.run(WATERMARK_GENERATION, w.token + 1);
      return true;
    });
  }

  async writeOnline(rows: readonly FeatureHistoryWrite[]): Promise<void> {
    await this.c.write(() => {
      const save = this.c.stmt(
        'INSERT INTO feature_online (user_id, feature, value_json, event_time) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, feature) DO UPDATE SET value_json = excluded.value_json, event_time = excluded.event_time',
      );
      for (const o of rows) save.run(o.userId, o.feature, o.valueJson, o.eventTime);
    });
  }

  async documentCollections(documentIds: readonly number[]): Promise<Map<number, string | null>> {
    const get = this.c.stmt<[number], string>('SELECT collection FROM documents WHERE id = ?').pluck();
    return this.c.read(() => new Map(documentIds.map((id) => [id, get.get(id) ?? null])));
  }

  async reset(definitionsVersion: number): Promise<void> {
    await this.c.write(() => {
      this.resetNow(definitionsVersion);
      this.c.stmt(UPSERT_WATERMARK).run(WATERMARK_GENERATION, (this.watermark(WATERMARK_GENERATION) ?? 0) + 1);
    });
  }

  /** Inside a write transaction: every feature row and all state go, watermarks back to 0. */
  private resetNow(definitionsVersion: number): void {
    this.c.stmt('DELETE FROM feature_history').run();
    this.c.stmt('DELETE FROM feature_online').run();
    this.c.stmt('DELETE FROM feature_user_state').run();
    const set = this.c.stmt(UPSERT_WATERMARK);
    set.run(WATERMARK_RESPONSES, 0);
    set.run(WATERMARK_FEEDBACK, 0);
    set.run(WATERMARK_VERSION, definitionsVersion);
  }

  async withBulkTuning<T>(fn: () => Promise<T>): Promise<T> {
    const db = this.c.db;
    const previous = db.pragma('cache_size', { simple: true }) as number;
    // cache_size is in pages when positive, in KiB when negative. Only ever enlarged, and put back: the connection may be a server's.
    const currentKib = previous >= 0 ? (previous * (db.pragma('page_size', { simple: true }) as number)) / 1024 : -previous;
    const enlarge = currentKib < BULK_CACHE_KIB;
    if (enlarge) db.pragma(`cache_size = -${BULK_CACHE_KIB}`);
    try {
      return await fn();
    } finally {
      if (enlarge && this.c.isOpen) db.pragma(`cache_size = ${previous}`);
    }
  }
}
