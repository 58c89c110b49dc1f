/**
 * The user feature pipeline: folds new prediction-log rows (`responses.seq` > watermark) and new
 * feedback rows (`feedback.id` > watermark) into per-user state (`feature_user_state`), appends a
 * `feature_history` row for every feature whose value changed (event_time = the source row's time,
 * see definitions.ts), upserts `feature_online`, and advances the watermarks — one IMMEDIATE
 * transaction per batch, so a crash (or a second process materializing at the same time) never
 * double-counts or skips a row: a batch is either entirely applied with its watermarks or not at all.
 *
 * History is a function of the log alone (one event per source row, folded in log order, values
 * compared with the previous value of the same feature), so any sequence of incremental runs gives
 * exactly the rows of one full recompute; test/unit/features/feature-store.test.ts proves it.
 *
 * Feedback is append-only and the latest row per (response, user) is the current rating: a new row
 * removes the previous rating's contribution and adds its own. The responses group and the feedback
 * group depend on disjoint inputs (a rating's contribution depends on the immutable rated response),
 * so the two streams can be consumed at their own pace.
 */
import { z } from 'zod';
import type { Db } from '../core/db.ts';
import { blobToVector } from '../core/db.ts';
import { MnemeError, ValidationError } from '../core/errors.ts';
import {
  FEATURE_DEFINITIONS_VERSION,
  FEEDBACK_FEATURES,
  RESPONSE_FEATURES,
  advanceFeedbackTime,
  applyRating,
  applyResponse,
  countWords,
  emptyState,
} from './definitions.ts';
import type { PrecomputedFeatureDefinition, RatingContribution, UserFeatureState } from './definitions.ts';

/**
 * Default rows read per stream per batch (and per transaction) by `materializeFeatures`. Large: each
 * batch loads and rewrites the state and online rows of every user it touches, so a backlog goes
 * ~2x faster in 20k-row batches than in 2k-row ones (measured, bench/features.ts).
 */
export const MATERIALIZE_BATCH_ROWS = 20_000;
/**
 * Default batch of the in-server scheduler: small, because a batch runs synchronously on the event
 * loop (~0.1 s at this size), and the scheduler yields to HTTP requests between batches.
 */
export const SCHEDULER_BATCH_ROWS = 2000;
/**
 * SQLite page cache used while `materializeFeatures` runs, in KiB (64 MiB; restored afterwards): a
 * batch's inserts touch B-tree pages all over feature_history, and the default 2 MiB cache re-reads them.
 */
export const MATERIALIZE_CACHE_KIB = 65_536;
export const WATERMARK_RESPONSES = 'features.responses_seq';
export const WATERMARK_FEEDBACK = 'features.feedback_id';
/** Definitions version the stored features were computed with; a mismatch triggers a rebuild. */
export const WATERMARK_VERSION = 'features.definitions_version';

export interface MaterializeOptions {
  /** Rows read per stream per transaction (1..1,000,000). Default MATERIALIZE_BATCH_ROWS. */
  batchRows?: number;
  /** Clock for `feature_history.created_at` (when the pipeline computed a value). Default: real time. */
  now?: () => Date;
  /** Drop every feature and recompute from the whole log. Default false. */
  rebuild?: boolean;
}

export interface MaterializeSummary {
  /** Log rows consumed. */
  responses: number;
  feedback: number;
  /** Distinct users whose state changed. */
  users: number;
  /** History rows written (values that changed). */
  historyRows: number;
  seconds: number;
  /** True when the store was rebuilt from scratch (asked for, or the definitions version changed). */
  rebuilt: boolean;
}

export interface BatchResult {
  responses: number;
  feedback: number;
  userIds: number[];
  historyRows: number;
  rebuilt: boolean;
}

const optionsSchema = z.object({
  batchRows: z.number().int().min(1).max(1_000_000).optional(),
  rebuild: z.boolean().optional(),
});

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

interface UserContext {
  userId: number;
  state: UserFeatureState;
  /** Latest value_json per feature (from feature_online, then as emitted). */
  last: Map<string, string>;
  /** Online rows to write at the end of the batch. */
  dirty: Map<string, { json: string; eventTime: string }>;
}

/** Distinct document ids of a logged citations array; malformed log data counts as no citations. */
export function citedDocumentIds(citationsJson: string): number[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(citationsJson);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  const ids = new Set<number>();
  for (const c of parsed) {
    const id = (c as { document_id?: unknown } | null)?.document_id;
    if (typeof id === 'number' && Number.isInteger(id)) ids.add(id);
  }
  return [...ids];
}

interface StoredState {
  state_json: string;
  interest_sum: Buffer | null;
}

/** The state's row: JSON for the integer aggregates, raw float64 bytes for the interest sum (exact and ~20x smaller/faster than JSON). */
export function encodeState(state: UserFeatureState): StoredState {
  const { interest, ...rest } = state;
  return {
    state_json: JSON.stringify({ ...rest, interest: interest ? { weight: interest.weight, atMs: interest.atMs } : null }),
    interest_sum: interest ? Buffer.from(interest.sum.buffer, interest.sum.byteOffset, interest.sum.byteLength) : null,
  };
}

export function decodeState(row: StoredState): UserFeatureState {
  const parsed = JSON.parse(row.state_json) as Omit<UserFeatureState, 'interest'> & { interest: { weight: number; atMs: number } | null };
  let interest: UserFeatureState['interest'] = null;
  if (parsed.interest && row.interest_sum) {
    const sum = new Float64Array(row.interest_sum.byteLength / 8);
    new Uint8Array(sum.buffer).set(row.interest_sum);
    interest = { sum, weight: parsed.interest.weight, atMs: parsed.interest.atMs };
  }
  return { ...parsed, interest };
}

const CANONICAL_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A log time in the stored form (toISOString), so event times compare correctly as text.
 * @throws MnemeError `invalid_log_row` when it is not a time (the batch rolls back; nothing is skipped silently).
 */
function eventTimeOf(createdAt: string, where: string): string {
  if (CANONICAL_TIME.test(createdAt)) return createdAt;
  const ms = Date.parse(createdAt);
  if (Number.isNaN(ms)) throw new MnemeError('invalid_log_row', 500, `${where}: created_at ${JSON.stringify(createdAt)} is not a time`);
  return new Date(ms).toISOString();
}

/** Deletes every materialized feature, all pipeline state and resets the watermarks (one transaction). */
export function resetFeatureStore(db: Db): void {
  db.transaction(() => resetInTransaction(db)).immediate();
}

function resetInTransaction(db: Db): void {
  db.exec('DELETE FROM feature_history; DELETE FROM feature_online; DELETE FROM feature_user_state;');
  const set = db.prepare('INSERT INTO watermarks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value');
  set.run(WATERMARK_RESPONSES, 0);
  set.run(WATERMARK_FEEDBACK, 0);
  set.run(WATERMARK_VERSION, FEATURE_DEFINITIONS_VERSION);
}

function prepareStatements(db: Db) {
return {
    watermark: db.prepare<[string], number>('SELECT value FROM watermarks WHERE name = ?').pluck(),
    setWatermark: db.prepare('INSERT INTO watermarks (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value'),
    responses: db.prepare<[number, number], ResponseRow>(
      'SELECT seq, user_id, created_at, query, query_vector, collection, citations_json FROM responses WHERE seq > ? ORDER BY seq LIMIT ?',
    ),
    feedback: db.prepare<[number, number], FeedbackRow>(
      'SELECT id, response_id, user_id, rating, correction, created_at FROM feedback WHERE id > ? ORDER BY id LIMIT ?',
    ),
    previousRating: db.prepare<[string, number, number], { rating: number; correction: string | null }>(
      'SELECT rating, correction FROM feedback WHERE response_id = ? AND user_id = ? AND id < ? ORDER BY id DESC LIMIT 1',
    ),
    ratedResponse: db.prepare<[string], { answer: string | null; citations_json: string }>('SELECT answer, citations_json FROM responses WHERE id = ?'),
    documentCollection: db.prepare<[number], string>('SELECT collection FROM documents WHERE id = ?').pluck(),
    state: db.prepare<[number], StoredState>('SELECT state_json, interest_sum FROM feature_user_state WHERE user_id = ?'),
    saveState: db.prepare(
      'INSERT INTO feature_user_state (user_id, state_json, interest_sum, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET state_json = excluded.state_json, interest_sum = excluded.interest_sum, updated_at = excluded.updated_at',
    ),
    online: db.prepare<[number], [string, string]>('SELECT feature, value_json FROM feature_online WHERE user_id = ?').raw(),
    saveOnline: db.prepare(
      'INSERT INTO feature_online (user_id, feature, value_json, event_time) VALUES (?, ?, ?, ?) ON CONFLICT (user_id, feature) DO UPDATE SET value_json = excluded.value_json, event_time = excluded.event_time',
    ),
    // Two events of one user at the same millisecond: the later one (in log order) is the value at that time.
    history: db.prepare('INSERT OR REPLACE INTO feature_history (user_id, feature, event_time, value_json, created_at) VALUES (?, ?, ?, ?, ?)'),
  };
}

/** Batch-at-a-time materializer; `materializeFeatures` and the scheduler drive it. */
export class FeatureMaterializer {
  private readonly db: Db;
  private readonly batchRows: number;
  private readonly now: () => Date;
  private rebuildPending: boolean;
  private readonly documentCollections = new Map<number, string | null>();
  private readonly stmt: ReturnType<typeof prepareStatements>;

  constructor(db: Db, options: MaterializeOptions = {}) {
    const parsed = optionsSchema.safeParse({ batchRows: options.batchRows, rebuild: options.rebuild });
    if (!parsed.success) throw new ValidationError(`materialize: ${parsed.error.issues[0]?.message ?? 'invalid options'}`, { cause: parsed.error });
    if (options.now !== undefined && typeof options.now !== 'function') throw new ValidationError('materialize: now must be a function');
    this.db = db;
    this.batchRows = parsed.data.batchRows ?? MATERIALIZE_BATCH_ROWS;
    this.now = options.now ?? (() => new Date());
    this.rebuildPending = parsed.data.rebuild ?? false;
    this.stmt = prepareStatements(db);
  }

  /**
   * Applies the next batch (up to `batchRows` responses and `batchRows` feedback rows) in one
   * IMMEDIATE transaction. Returns zero counts when the store is up to date.
   */
  runBatch(): BatchResult {
    const result = this.db.transaction((): BatchResult => {
      let rebuilt = false;
      // Read inside the write transaction: another process may have advanced them meanwhile.
      if (this.rebuildPending || this.stmt.watermark.get(WATERMARK_VERSION) !== FEATURE_DEFINITIONS_VERSION) {
        resetInTransaction(this.db);
        rebuilt = true;
      }
      const afterSeq = this.stmt.watermark.get(WATERMARK_RESPONSES) ?? 0;
      const afterFeedback = this.stmt.watermark.get(WATERMARK_FEEDBACK) ?? 0;
      const responses = this.stmt.responses.all(afterSeq, this.batchRows);
      const feedback = this.stmt.feedback.all(afterFeedback, this.batchRows);
      if (responses.length === 0 && feedback.length === 0) return { responses: 0, feedback: 0, userIds: [], historyRows: 0, rebuilt };

      const createdAt = this.now().toISOString();
      const users = new Map<number, UserContext>();
      const history: Array<{ userId: number; feature: string; eventTime: string; json: string }> = [];
      const context = (userId: number): UserContext => {
        let ctx = users.get(userId);
        if (!ctx) {
          const stored = this.stmt.state.get(userId);
          ctx = {
            userId,
            state: stored === undefined ? emptyState() : decodeState(stored),
            last: new Map(this.stmt.online.all(userId)),
            dirty: new Map(),
          };
          users.set(userId, ctx);
        }
        return ctx;
      };
      const emit = (ctx: UserContext, defs: readonly PrecomputedFeatureDefinition[], eventTime: string): void => {
        for (const def of defs) {
          const json = JSON.stringify(def.compute(ctx.state));
          if (ctx.last.get(def.name) === json) continue;
          history.push({ userId: ctx.userId, feature: def.name, eventTime, json });
          ctx.last.set(def.name, json);
          ctx.dirty.set(def.name, { json, eventTime });
        }
      };

      for (const r of responses) {
        const ctx = context(r.user_id);
        const collections = r.collection === null ? [] : [r.collection];
        for (const d of citedDocumentIds(r.citations_json)) {
          const c = this.collectionOf(d);
          if (c !== null) collections.push(c);
        }
        const vector = r.query_vector && r.query_vector.byteLength > 0 && r.query_vector.byteLength % 4 === 0 ? blobToVector(r.query_vector) : null;
        const eventTime = applyResponse(ctx.state, { createdAt: eventTimeOf(r.created_at, `responses.seq ${r.seq}`), query: r.query, queryVector: vector, collections });
        emit(ctx, RESPONSE_FEATURES, eventTime);
      }

      const rated = new Map<string, { documentIds: number[]; answerWords: number }>();
      const ratedResponse = (id: string) => {
        let info = rated.get(id);
        if (!info) {
          const row = this.stmt.ratedResponse.get(id);
          info = row ? { documentIds: citedDocumentIds(row.citations_json), answerWords: countWords(row.answer) } : { documentIds: [], answerWords: 0 };
          rated.set(id, info);
        }
        return info;
      };
      const contribution = (rating: number, correction: string | null, responseId: string): RatingContribution => ({
        rating: rating === 1 ? 1 : -1,
        ...ratedResponse(responseId),
        correctionWords: countWords(correction),
      });
      for (const f of feedback) {
        const ctx = context(f.user_id);
        const previous = this.stmt.previousRating.get(f.response_id, f.user_id, f.id);
        if (previous) applyRating(ctx.state, contribution(previous.rating, previous.correction, f.response_id), -1);
        applyRating(ctx.state, contribution(f.rating, f.correction, f.response_id), 1);
        emit(ctx, FEEDBACK_FEATURES, advanceFeedbackTime(ctx.state, eventTimeOf(f.created_at, `feedback.id ${f.id}`)));
      }

      // Written in primary-key order: consecutive inserts land on the same B-tree pages, which
      // halves the CPU and I/O of a batch touching thousands of users. The sort is stable, so of two
      // rows with the same key the later one in log order is written last and wins (INSERT OR REPLACE).
      history.sort((a, b) => a.userId - b.userId || (a.feature < b.feature ? -1 : a.feature > b.feature ? 1 : 0) || (a.eventTime < b.eventTime ? -1 : a.eventTime > b.eventTime ? 1 : 0));
      for (const h of history) this.stmt.history.run(h.userId, h.feature, h.eventTime, h.json, createdAt);
      for (const ctx of [...users.values()].sort((a, b) => a.userId - b.userId)) {
        const stored = encodeState(ctx.state);
        this.stmt.saveState.run(ctx.userId, stored.state_json, stored.interest_sum, createdAt);
        for (const [feature, v] of ctx.dirty) this.stmt.saveOnline.run(ctx.userId, feature, v.json, v.eventTime);
      }
      if (responses.length > 0) this.stmt.setWatermark.run(WATERMARK_RESPONSES, responses[responses.length - 1]!.seq);
      if (feedback.length > 0) this.stmt.setWatermark.run(WATERMARK_FEEDBACK, feedback[feedback.length - 1]!.id);
      return { responses: responses.length, feedback: feedback.length, userIds: [...users.keys()], historyRows: history.length, rebuilt };
    }).immediate();
    // Only once committed: a rolled-back rebuild must be retried by the next batch.
    this.rebuildPending = false;
    return result;
  }

  /** A document's collection (documents are tombstoned, never re-homed, so caching is safe). */
  private collectionOf(documentId: number): string | null {
    if (!this.documentCollections.has(documentId)) this.documentCollections.set(documentId, this.stmt.documentCollection.get(documentId) ?? null);
    return this.documentCollections.get(documentId) ?? null;
  }
}

/** Accumulates batch results into a summary. */
class SummaryBuilder {
  private readonly started = performance.now();
  private readonly users = new Set<number>();
  readonly totals = { responses: 0, feedback: 0, historyRows: 0, rebuilt: false };

  add(b: BatchResult): void {
    this.totals.responses += b.responses;
    this.totals.feedback += b.feedback;
    this.totals.historyRows += b.historyRows;
    this.totals.rebuilt ||= b.rebuilt;
    for (const u of b.userIds) this.users.add(u);
  }

  summary(): MaterializeSummary {
    return { ...this.totals, users: this.users.size, seconds: (performance.now() - this.started) / 1000 };
  }
}

/**
 * Materializes everything logged since the last run (synchronously, batch by batch).
 * @throws ValidationError for bad options; SQLite errors propagate (the failed batch is rolled back).
 */
export function materializeFeatures(db: Db, opts: MaterializeOptions = {}): MaterializeSummary {
  const m = new FeatureMaterializer(db, opts);
  const s = new SummaryBuilder();
  const previousCache = db.pragma('cache_size', { simple: true }) as number;
  // cache_size is in pages when positive, in KiB when negative. Only ever enlarged, and put back: the connection may be a server's.
  const currentKib = previousCache >= 0 ? (previousCache * (db.pragma('page_size', { simple: true }) as number)) / 1024 : -previousCache;
  const enlarge = currentKib < MATERIALIZE_CACHE_KIB;
  if (enlarge) db.pragma(`cache_size = -${MATERIALIZE_CACHE_KIB}`);
  try {
    for (;;) {
      const b = m.runBatch();
      s.add(b);
      if (b.responses === 0 && b.feedback === 0) break;
    }
  } finally {
    if (enlarge) db.pragma(`cache_size = ${previousCache}`);
  }
  return s.summary();
}

export interface FeatureSchedulerOptions {
  /** Called after each run that consumed rows. */
  onRun?: (summary: MaterializeSummary) => void;
  /** Rows per stream per batch. Default SCHEDULER_BATCH_ROWS. */
  batchRows?: number;
}

/**
 * Runs materialization every `intervalSeconds` (and once right away) inside a long-lived process.
 * Batches are separated by a macrotask so a large backlog never blocks the event loop (HTTP requests
 * interleave); runs never overlap (a tick that finds one in progress is skipped). Timers are unref'd.
 * `intervalSeconds` 0 disables it. `onError` receives any failure (the next tick tries again).
 * @throws ValidationError when intervalSeconds is negative or not finite.
 */
export function startFeatureScheduler(
  db: Db,
  intervalSeconds: number,
  onError: (err: unknown) => void,
  options: FeatureSchedulerOptions = {},
): { stop(): void } {
  if (!Number.isFinite(intervalSeconds) || intervalSeconds < 0) throw new ValidationError(`feature scheduler: interval must be >= 0 seconds, got ${intervalSeconds}`);
  if (intervalSeconds === 0) return { stop() {} };
  let stopped = false;
  let running = false;
  const run = async (): Promise<void> => {
    if (running || stopped) return;
    running = true;
    try {
      const m = new FeatureMaterializer(db, { batchRows: options.batchRows ?? SCHEDULER_BATCH_ROWS });
      const s = new SummaryBuilder();
      while (!stopped) {
        const b = m.runBatch();
        s.add(b);
        if (b.responses === 0 && b.feedback === 0) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const summary = s.summary();
      if (summary.responses + summary.feedback > 0) options.onRun?.(summary);
    } catch (err) {
      onError(err);
    } finally {
      running = false;
    }
  };
  const first = setTimeout(() => void run(), 0);
  first.unref();
  const timer = setInterval(() => void run(), intervalSeconds * 1000);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(timer);
    },
  };
}
