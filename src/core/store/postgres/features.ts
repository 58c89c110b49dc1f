/**
 * PostgreSQL implementation of {@link FeatureTableStore} (schema: migrations/postgres/040_features_exports.sql).
 * Same semantics as the SQLite engine (sqlite/features.ts), with these engine-specific parts:
 * - `readBatch` reads in one REPEATABLE READ READ ONLY snapshot. Paging by `responses.seq > watermark`
 *   (`feedback.id`) is safe because 035_users_chat.sql assigns both in commit order (every insert
 *   takes the table's advisory lock first): a snapshot that sees seq N sees every committed seq below N;
 * - `commitBatch` is a compare-and-set on the `features.generation` watermark (UPDATE … WHERE value =
 *   token): of two runs committing from the same token, the second finds 0 rows, writes nothing and
 *   returns false — across processes and replicas;
 * - rows are written in bulk (`unnest` of arrays, FEATURE_WRITE_ROWS per statement), deduplicated
 *   by key first (the later row in log order wins, as SQLite's INSERT OR REPLACE does).
 */
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
import type { PgQueries, PgTx, PostgresConnection } from './connection.ts';

/** Watermark names (table `watermarks`), as on SQLite. */
export const WATERMARK_RESPONSES = 'features.responses_seq';
export const WATERMARK_FEEDBACK = 'features.feedback_id';
export const WATERMARK_VERSION = 'features.definitions_version';
export const WATERMARK_GENERATION = 'features.generation';

/** Rows per bulk INSERT statement (each array parameter holds this many values; default 2000). */
export const FEATURE_WRITE_ROWS = 2000;
/** Ids (users, responses, documents) per read query: one `= ANY($1)` array each (default 1000). */
export const FEATURE_READ_IDS = 1000;
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
  prev_rating: number | null;
  prev_correction: string | null;
}

interface StateRow {
  user_id: number;
  state_json: string;
  interest_sum: Buffer | null;
}

interface KeyRow {
  user_id: number;
  feature: string;
  event_time: string;
}

const SQL_WATERMARKS = 'SELECT name, value FROM watermarks WHERE name = ANY($1::text[])';
const SQL_UPSERT_WATERMARK = 'INSERT INTO watermarks (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value';
/** The compare-and-set of a commit (and the bump of a reset when $2 is null). */
const SQL_BUMP_GENERATION = `UPDATE watermarks SET value = value + 1 WHERE name = '${WATERMARK_GENERATION}' AND ($1::bigint IS NULL OR value = $1::bigint)`;
// json columns as text: the log's JSON exactly as written (pg would parse \`json\` into objects).
const SQL_RESPONSES = `SELECT seq, user_id, created_at, query, query_vector, collection, citations_json::text AS citations_json
  FROM responses WHERE seq > $1 ORDER BY seq LIMIT $2`;
// Each row with the same user's previous rating of the same response (LATERAL: one index probe each).
const SQL_FEEDBACK = `SELECT f.id, f.response_id, f.user_id, f.rating, f.correction, f.created_at,
    p.rating AS prev_rating, p.correction AS prev_correction
  FROM feedback f
  LEFT JOIN LATERAL (SELECT rating, correction FROM feedback
                      WHERE response_id = f.response_id AND user_id = f.user_id AND id < f.id
                      ORDER BY id DESC LIMIT 1) p ON true
  WHERE f.id > $1 ORDER BY f.id LIMIT $2`;
const SQL_RATED = 'SELECT id, answer, citations_json::text AS citations_json FROM responses WHERE id = ANY($1::text[])';
const SQL_STATES = 'SELECT user_id, state_json, interest_sum FROM feature_user_state WHERE user_id = ANY($1::bigint[])';
const SQL_ONLINE_OF = 'SELECT user_id, feature, value_json FROM feature_online WHERE user_id = ANY($1::bigint[])';
const SQL_INSERT_HISTORY = `INSERT INTO feature_history (user_id, feature, event_time, value_json, created_at)
  SELECT u.user_id, u.feature, u.event_time, u.value_json, $5::timestamptz FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[]) AS u(user_id, feature, event_time, value_json)
  ON CONFLICT (user_id, feature, event_time) DO UPDATE SET value_json = excluded.value_json, created_at = excluded.created_at`;
const SQL_SAVE_STATES = `INSERT INTO feature_user_state (user_id, state_json, interest_sum, updated_at)
  SELECT u.user_id, u.state_json, u.interest_sum, $4::timestamptz FROM unnest($1::bigint[], $2::text[], $3::bytea[]) AS u(user_id, state_json, interest_sum)
  ON CONFLICT (user_id) DO UPDATE SET state_json = excluded.state_json, interest_sum = excluded.interest_sum, updated_at = excluded.updated_at`;
const SQL_SAVE_ONLINE = `INSERT INTO feature_online (user_id, feature, value_json, event_time)
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])
  ON CONFLICT (user_id, feature) DO UPDATE SET value_json = excluded.value_json, event_time = excluded.event_time`;

/** bytea (float32 little-endian) → Float32Array; null when not a whole number of float32 values. */
function toQueryVector(v: Buffer | null): Float32Array | null {
  if (v === null || v.byteLength === 0 || v.byteLength % 4 !== 0) return null;
  const out = new Float32Array(v.byteLength / 4);
  new Uint8Array(out.buffer).set(v);
  return out;
}

function toResponse(r: ResponseRow): FeatureSourceResponse {
  return {
    seq: r.seq,
    userId: r.user_id,
    createdAt: r.created_at,
    query: r.query,
    queryVector: toQueryVector(r.query_vector),
    collection: r.collection,
    citationsJson: r.citations_json,
  };
}

function toFeedback(f: FeedbackRow): FeatureSourceFeedback {
  return {
    id: f.id,
    responseId: f.response_id,
    userId: f.user_id,
    rating: f.rating,
    correction: f.correction,
    createdAt: f.created_at,
    previous: f.prev_rating === null ? null : { rating: f.prev_rating, correction: f.prev_correction },
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

function parseValues(rows: ReadonlyArray<{ feature: string; value_json: string }>): Record<string, FeatureValue> {
  const out: Record<string, FeatureValue> = {};
  for (const { feature, value_json } of rows) out[feature] = JSON.parse(value_json) as FeatureValue;
  return out;
}

/** Consecutive slices of at most `size` items. */
function* slices<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** The last write per key, in first-appearance order (SQLite's INSERT OR REPLACE in log order). */
function lastPerKey(rows: readonly FeatureHistoryWrite[], key: (r: FeatureHistoryWrite) => string): FeatureHistoryWrite[] {
  const byKey = new Map<string, FeatureHistoryWrite>();
  for (const r of rows) byKey.set(key(r), r);
  return [...byKey.values()];
}

/** Starts a consistent read: every query of `q` after this sees one snapshot. */
async function snapshot(q: PgTx): Promise<void> {
  await q.exec('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
}

export class PostgresFeatureTableStore implements FeatureTableStore {
  constructor(protected readonly c: PostgresConnection) {}

  async onlineValues(userId: number): Promise<Record<string, FeatureValue>> {
    return parseValues(await this.c.rows('SELECT feature, value_json FROM feature_online WHERE user_id = $1', [userId]));
  }

  async onlineRecords(userId: number): Promise<OnlineFeatureRecord[]> {
    const rows = await this.c.rows<{ feature: string; value_json: string; event_time: string }>(
      'SELECT feature, value_json, event_time FROM feature_online WHERE user_id = $1 ORDER BY feature',
      [userId],
    );
    return rows.map((r) => ({ feature: r.feature, value: JSON.parse(r.value_json) as FeatureValue, eventTime: r.event_time }));
  }

  async valuesAsOf(userId: number, time: string): Promise<Record<string, FeatureValue>> {
    // Per feature, the row with the greatest event time ≤ t: one backward walk of the primary key.
    return parseValues(
      await this.c.rows(
        `SELECT DISTINCT ON (feature) feature, value_json FROM feature_history
          WHERE user_id = $1 AND event_time <= $2::timestamptz ORDER BY feature, event_time DESC`,
        [userId, time],
      ),
    );
  }

  async readHistory(
    userIds: readonly number[],
    pick: (userId: number, keys: readonly FeatureHistoryKey[]) => Iterable<number>,
  ): Promise<Map<number, Map<number, FeatureValue>>> {
    const out = new Map<number, Map<number, FeatureValue>>();
    const unique = [...new Set(userIds)];
    await this.c.tx(async (q) => {
      await snapshot(q);
      for (const chunk of slices(unique, FEATURE_READ_IDS)) await this.readHistoryChunk(q, chunk, pick, out);
    });
    return out;
  }

  /** Keys of the users (index only), then the values of the picked positions alone. */
  private async readHistoryChunk(
    q: PgQueries,
    userIds: readonly number[],
    pick: (userId: number, keys: readonly FeatureHistoryKey[]) => Iterable<number>,
    out: Map<number, Map<number, FeatureValue>>,
  ): Promise<void> {
    const rows = await q.rows<KeyRow>('SELECT user_id, feature, event_time FROM feature_history WHERE user_id = ANY($1::bigint[]) ORDER BY user_id, feature, event_time', [userIds]);
    const keysOf = new Map<number, FeatureHistoryKey[]>();
    for (const r of rows) {
      let keys = keysOf.get(r.user_id);
      if (!keys) keysOf.set(r.user_id, (keys = []));
      keys.push([r.feature, r.event_time]);
    }
    const want = { user: [] as number[], feature: [] as string[], time: [] as string[], pos: [] as number[] };
    for (const userId of userIds) {
      const keys = keysOf.get(userId) ?? [];
      out.set(userId, new Map());
      for (const p of new Set(pick(userId, keys))) {
        const k = keys[p];
        if (!k) continue;
        want.user.push(userId);
        want.feature.push(k[0]);
        want.time.push(k[1]);
        want.pos.push(p);
      }
    }
    if (want.pos.length === 0) return;
    const values = await q.rows<{ user_id: number; pos: number; value_json: string }>(
      `SELECT w.user_id, w.pos, h.value_json
         FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[]) AS w(user_id, feature, event_time, pos)
         JOIN feature_history h ON h.user_id = w.user_id AND h.feature = w.feature AND h.event_time = w.event_time`,
      [want.user, want.feature, want.time, want.pos],
    );
    for (const v of values) out.get(v.user_id)?.set(v.pos, JSON.parse(v.value_json) as FeatureValue);
  }

  async eraseUser(userId: number): Promise<{ history: number; online: number; state: number }> {
    return this.c.tx(async (q) => ({
      history: await q.run('DELETE FROM feature_history WHERE user_id = $1', [userId]),
      online: await q.run('DELETE FROM feature_online WHERE user_id = $1', [userId]),
      state: await q.run('DELETE FROM feature_user_state WHERE user_id = $1', [userId]),
    }));
  }

  /** The named watermarks (absent ones are missing from the map). */
  private async watermarkMap(q: PgQueries): Promise<Map<string, number>> {
    const rows = await q.rows<{ name: string; value: number }>(SQL_WATERMARKS, [[WATERMARK_RESPONSES, WATERMARK_FEEDBACK, WATERMARK_VERSION, WATERMARK_GENERATION]]);
    return new Map(rows.map((r) => [r.name, r.value]));
  }

  async watermarks(): Promise<FeatureWatermarks> {
    const w = await this.watermarkMap(this.c);
    return { responsesSeq: w.get(WATERMARK_RESPONSES) ?? 0, feedbackId: w.get(WATERMARK_FEEDBACK) ?? 0, definitionsVersion: w.get(WATERMARK_VERSION) ?? null };
  }

  async readBatch(opts: { batchRows: number; definitionsVersion: number; rebuild: boolean }): Promise<FeatureBatch> {
    return this.c.tx(async (q) => {
      await snapshot(q);
      const w = await this.watermarkMap(q);
      const reset = opts.rebuild || w.get(WATERMARK_VERSION) !== opts.definitionsVersion;
      const token = w.get(WATERMARK_GENERATION) ?? 0;
      const afterSeq = reset ? 0 : (w.get(WATERMARK_RESPONSES) ?? 0);
      const afterFeedback = reset ? 0 : (w.get(WATERMARK_FEEDBACK) ?? 0);
      const responses = (await q.rows<ResponseRow>(SQL_RESPONSES, [afterSeq, opts.batchRows])).map(toResponse);
      const feedback = (await q.rows<FeedbackRow>(SQL_FEEDBACK, [afterFeedback, opts.batchRows])).map(toFeedback);
      const ratedResponses = await this.readRatedResponses(q, feedback);
      const users = new Map<number, FeatureUserSnapshot>();
      for (const { userId } of [...responses, ...feedback]) users.set(userId, { state: null, online: new Map() });
      if (!reset) await this.readUsers(q, users);
      return { token, reset, responses, feedback, ratedResponses, users };
    });
  }

  private async readRatedResponses(q: PgQueries, feedback: readonly FeatureSourceFeedback[]): Promise<Map<string, RatedResponseInfo>> {
    const out = new Map<string, RatedResponseInfo>();
    const ids = [...new Set(feedback.map((f) => f.responseId))];
    for (const chunk of slices(ids, FEATURE_READ_IDS)) {
      const rows = await q.rows<{ id: string; answer: string | null; citations_json: string }>(SQL_RATED, [chunk]);
      for (const r of rows) out.set(r.id, { answer: r.answer, citationsJson: r.citations_json });
    }
    return out;
  }

  /** Fills in the stored state and online values of each user of the map. */
  private async readUsers(q: PgQueries, users: Map<number, FeatureUserSnapshot>): Promise<void> {
    for (const chunk of slices([...users.keys()], FEATURE_READ_IDS)) {
      for (const s of await q.rows<StateRow>(SQL_STATES, [chunk])) {
        const u = users.get(s.user_id);
        if (u) u.state = toState(s);
      }
      for (const o of await q.rows<{ user_id: number; feature: string; value_json: string }>(SQL_ONLINE_OF, [chunk])) users.get(o.user_id)?.online.set(o.feature, o.value_json);
    }
  }

  async commitBatch(w: FeatureBatchWrite): Promise<boolean> {
    const history = lastPerKey(w.history, (h) => `${h.userId}\u0000${h.feature}\u0000${h.eventTime}`);
    const online = lastPerKey(w.online, (o) => `${o.userId}\u0000${o.feature}`);
    const states = [...new Map(w.states.map((s) => [s.userId, s.state])).entries()];
    return this.c.tx(async (q) => {
      // The compare-and-set first: a concurrent commit from the same token waits for this row's lock,
      // then finds the value moved on and updates nothing.
      if ((await q.run(SQL_BUMP_GENERATION, [w.token])) === 0) return false;
      if (w.reset) await this.resetNow(q, w.definitionsVersion);
      for (const part of slices(history, FEATURE_WRITE_ROWS)) {
        await q.run(SQL_INSERT_HISTORY, [part.map((h) => h.userId), part.map((h) => h.feature), part.map((h) => h.eventTime), part.map((h) => h.valueJson), w.createdAt]);
      }
      for (const part of slices(states, FEATURE_WRITE_ROWS)) {
        const sums = part.map(([, s]) => (s.interestSum ? Buffer.from(s.interestSum.buffer, s.interestSum.byteOffset, s.interestSum.byteLength) : null));
        await q.run(SQL_SAVE_STATES, [part.map(([id]) => id), part.map(([, s]) => s.stateJson), sums, w.createdAt]);
      }
      for (const part of slices(online, FEATURE_WRITE_ROWS)) await this.saveOnline(q, part);
      if (w.lastResponseSeq !== null) await q.run(SQL_UPSERT_WATERMARK, [WATERMARK_RESPONSES, w.lastResponseSeq]);
      if (w.lastFeedbackId !== null) await q.run(SQL_UPSERT_WATERMARK, [WATERMARK_FEEDBACK, w.lastFeedbackId]);
      await q.run(SQL_UPSERT_WATERMARK, [WATERMARK_VERSION, w.definitionsVersion]);
      return true;
    });
  }

  async writeOnline(rows: readonly FeatureHistoryWrite[]): Promise<void> {
    const online = lastPerKey(rows, (o) => `${o.userId}\u0000${o.feature}`);
    await this.c.tx(async (q) => {
      for (const part of slices(online, FEATURE_WRITE_ROWS)) await this.saveOnline(q, part);
    });
  }

  private async saveOnline(q: PgQueries, part: readonly FeatureHistoryWrite[]): Promise<void> {
    await q.run(SQL_SAVE_ONLINE, [part.map((o) => o.userId), part.map((o) => o.feature), part.map((o) => o.valueJson), part.map((o) => o.eventTime)]);
  }

  async documentCollections(documentIds: readonly number[]): Promise<Map<number, string | null>> {
    const out = new Map<number, string | null>(documentIds.map((id) => [id, null]));
    for (const chunk of slices([...out.keys()], FEATURE_READ_IDS)) {
      for (const r of await this.c.rows<{ id: number; collection: string }>('SELECT id, collection FROM documents WHERE id = ANY($1::bigint[])', [chunk])) out.set(r.id, r.collection);
    }
    return out;
  }

  async reset(definitionsVersion: number): Promise<void> {
    await this.c.tx(async (q) => {
      await q.run(SQL_BUMP_GENERATION, [null]);
      await this.resetNow(q, definitionsVersion);
    });
  }

  /** Inside a transaction: every feature row and all state go, watermarks back to 0. */
  private async resetNow(q: PgQueries, definitionsVersion: number): Promise<void> {
    // DELETE, not TRUNCATE: TRUNCATE is not MVCC-safe, a concurrent snapshot reader would see empty tables.
    await q.run('DELETE FROM feature_history');
    await q.run('DELETE FROM feature_online');
    await q.run('DELETE FROM feature_user_state');
    await q.run(SQL_UPSERT_WATERMARK, [WATERMARK_RESPONSES, 0]);
    await q.run(SQL_UPSERT_WATERMARK, [WATERMARK_FEEDBACK, 0]);
    await q.run(SQL_UPSERT_WATERMARK, [WATERMARK_VERSION, definitionsVersion]);
  }

  /** Nothing to tune: the server's shared buffers serve every connection. Runs `fn`. */
  async withBulkTuning<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}
