/**
 * The user feature pipeline: folds new prediction-log rows (`responses.seq` > watermark) and new
 * feedback rows (`feedback.id` > watermark) into per-user state (`feature_user_state`), appends a
 * `feature_history` row for every feature whose value changed (event_time = the source row's time,
 * see definitions.ts), upserts `feature_online`, and advances the watermarks. Each batch is read in one
 * snapshot, folded in memory and committed in one write transaction that first checks no other run
 * committed since the read (else the batch is read again), so a crash (or a second process
 * materializing at the same time) never double-counts or skips a row: a batch is either entirely
 * applied with its watermarks or not at all. The tables are the store's (`store.features`).
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
import { MnemeError, ValidationError } from '../core/errors.ts';
import type { Store } from '../core/store/index.ts';
import type { FeatureBatch, FeatureBatchWrite, FeatureHistoryWrite, StoredFeatureState } from '../core/store/features.ts';
import {
  CORRECTION_TERMS_MAX,
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
import type { OnlineFeatureSync } from './online.ts';
import { keyTerms } from './personalize.ts';
import type { FeatureValue } from './types.ts';

/**
 * Default rows read per stream per batch (and per transaction) by `materializeFeatures`. Large: each
 * batch loads and rewrites the state and online rows of every user it touches, so a backlog goes
 * ~2x faster in 20k-row batches than in 2k-row ones (measured, bench/features.ts).
 */
export const MATERIALIZE_BATCH_ROWS = 20_000;
/**
 * Default batch of the in-server scheduler: small, because a batch's fold and its read and write run
 * synchronously on the event loop (~0.1 s at this size), and the scheduler yields to HTTP requests
 * between batches (and between a batch's read and its write).
 */
export const SCHEDULER_BATCH_ROWS = 2000;

export interface MaterializeOptions {
  /** Rows read per stream per transaction (1..1,000,000). Default MATERIALIZE_BATCH_ROWS. */
  batchRows?: number;
  /** Clock for `feature_history.created_at` (when the pipeline computed a value). Default: real time. */
  now?: () => Date;
  /** Drop every feature and recompute from the whole log. Default false. */
  rebuild?: boolean;
  /**
   * The online store in front of SQL (MNEME_REDIS_URL): each committed batch's changed users are
   * copied to it (their whole vector). Default: none (chat reads the SQL online table).
   */
  online?: OnlineFeatureSync | undefined;
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

/** Outcome of one batch; `stale` when another run committed first (nothing was written). */
export interface BatchResult {
  responses: number;
  feedback: number;
  userIds: number[];
  historyRows: number;
  rebuilt: boolean;
  stale?: boolean;
}

const optionsSchema = z.object({
  batchRows: z.number().int().min(1).max(1_000_000).optional(),
  rebuild: z.boolean().optional(),
});

/** Most consecutive stale batches before a run gives up (each one means another run made progress). */
const MAX_STALE_RETRIES = 100;

interface UserContext {
  userId: number;
  state: UserFeatureState;
  /** Latest value_json per feature (stored online values, then as emitted). */
  last: Map<string, string>;
  /** Online rows to write at the end of the batch. */
  dirty: Map<string, { json: string; eventTime: string }>;
}

/** A logged citations array (malformed log data counts as no citations). */
function parseCitations(citationsJson: string): unknown[] {
  try {
    const parsed: unknown = JSON.parse(citationsJson);
    return Array.isArray(parsed) ? parsed : [];
  } catch {
    return [];
  }
}

const isId = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);

/** Distinct document ids of a logged citations array; malformed log data counts as no citations. */
export function citedDocumentIds(citationsJson: string): number[] {
  const ids = new Set<number>();
  for (const c of parseCitations(citationsJson)) {
    const id = (c as { document_id?: unknown } | null)?.document_id;
    if (isId(id)) ids.add(id);
  }
  return [...ids];
}

/**
 * Distinct chunk ids of a logged citations array: each citation's `chunk_id`, plus the `chunk_id`s of
 * its `passages` / `chunk_ids` when a citation groups several passages of one document.
 */
export function citedChunkIds(citationsJson: string): number[] {
  const ids = new Set<number>();
  for (const c of parseCitations(citationsJson)) {
    if (c === null || typeof c !== 'object') continue;
    const r = c as { chunk_id?: unknown; chunk_ids?: unknown; passages?: unknown };
    if (isId(r.chunk_id)) ids.add(r.chunk_id);
    if (Array.isArray(r.chunk_ids)) for (const id of r.chunk_ids) if (isId(id)) ids.add(id);
    if (Array.isArray(r.passages)) for (const p of r.passages) if (isId((p as { chunk_id?: unknown } | null)?.chunk_id)) ids.add((p as { chunk_id: number }).chunk_id);
  }
  return [...ids];
}

/** The state as stored: JSON for the integer aggregates, the interest sum as exact float64 values (~20x smaller/faster than JSON). */
export function encodeState(state: UserFeatureState): StoredFeatureState {
  const { interest, ...rest } = state;
  return {
    stateJson: JSON.stringify({ ...rest, interest: interest ? { weight: interest.weight, atMs: interest.atMs } : null }),
    interestSum: interest ? interest.sum : null,
  };
}

export function decodeState(stored: StoredFeatureState): UserFeatureState {
  const parsed = JSON.parse(stored.stateJson) as Omit<UserFeatureState, 'interest'> & { interest: { weight: number; atMs: number } | null };
  const interest: UserFeatureState['interest'] =
    parsed.interest && stored.interestSum ? { sum: stored.interestSum, weight: parsed.interest.weight, atMs: parsed.interest.atMs } : null;
  // States written before FEATURE_DEFINITIONS_VERSION 2 have no ratedAnswers (a version change rebuilds them anyway).
  return { ...parsed, ratedAnswers: parsed.ratedAnswers ?? {}, interest };
}

const CANONICAL_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * A log time in the stored form (toISOString), so event times compare correctly as text.
 * @throws MnemeError `invalid_log_row` when it is not a time (the batch is not committed; nothing is skipped silently).
 */
function eventTimeOf(createdAt: string, where: string): string {
  if (CANONICAL_TIME.test(createdAt)) return createdAt;
  const ms = Date.parse(createdAt);
  if (Number.isNaN(ms)) throw new MnemeError('invalid_log_row', 500, `${where}: created_at ${JSON.stringify(createdAt)} is not a time`);
  return new Date(ms).toISOString();
}

/** Deletes every materialized feature and all pipeline state, and resets the watermarks (one transaction). */
export async function resetFeatureStore(store: Store): Promise<void> {
  await store.features.reset(FEATURE_DEFINITIONS_VERSION);
}

/** Folds one batch in memory (pure apart from the clock): the rows to write. */
class BatchFold {
  readonly users = new Map<number, UserContext>();
  readonly history: FeatureHistoryWrite[] = [];
  private readonly rated = new Map<string, { documentIds: number[]; chunkIds: number[]; answerWords: number }>();

  constructor(
    private readonly batch: FeatureBatch,
    private readonly collectionOf: (documentId: number) => string | null,
  ) {}

  private context(userId: number): UserContext {
    let ctx = this.users.get(userId);
    if (!ctx) {
      const stored = this.batch.users.get(userId);
      ctx = { userId, state: stored?.state ? decodeState(stored.state) : emptyState(), last: new Map(stored?.online), dirty: new Map() };
      this.users.set(userId, ctx);
    }
    return ctx;
  }

  private emit(ctx: UserContext, defs: readonly PrecomputedFeatureDefinition[], eventTime: string): void {
    for (const def of defs) {
      const json = JSON.stringify(def.compute(ctx.state));
      if (ctx.last.get(def.name) === json) continue;
      this.history.push({ userId: ctx.userId, feature: def.name, eventTime, valueJson: json });
      ctx.last.set(def.name, json);
      ctx.dirty.set(def.name, { json, eventTime });
    }
  }

  foldResponses(): void {
    for (const r of this.batch.responses) {
      const ctx = this.context(r.userId);
      const collections = r.collection === null ? [] : [r.collection];
      for (const d of citedDocumentIds(r.citationsJson)) {
        const c = this.collectionOf(d);
        if (c !== null) collections.push(c);
      }
      const eventTime = applyResponse(ctx.state, { createdAt: eventTimeOf(r.createdAt, `responses.seq ${r.seq}`), query: r.query, queryVector: r.queryVector, collections });
      this.emit(ctx, RESPONSE_FEATURES, eventTime);
    }
  }

  private contribution(rating: number, correction: string | null, responseId: string, createdAt: string): RatingContribution {
    let info = this.rated.get(responseId);
    if (!info) {
      const row = this.batch.ratedResponses.get(responseId);
      info = row
        ? { documentIds: citedDocumentIds(row.citationsJson), chunkIds: citedChunkIds(row.citationsJson), answerWords: countWords(row.answer) }
        : { documentIds: [], chunkIds: [], answerWords: 0 };
      this.rated.set(responseId, info);
    }
    return {
      rating: rating === 1 ? 1 : -1,
      responseId,
      atMs: Date.parse(createdAt),
      ...info,
      correctionWords: countWords(correction),
      correctionTerms: correction ? keyTerms(correction, CORRECTION_TERMS_MAX) : [],
    };
  }

  foldFeedback(): void {
    for (const f of this.batch.feedback) {
      const ctx = this.context(f.userId);
      const at = eventTimeOf(f.createdAt, `feedback.id ${f.id}`);
      if (f.previous) applyRating(ctx.state, this.contribution(f.previous.rating, f.previous.correction, f.responseId, at), -1);
      applyRating(ctx.state, this.contribution(f.rating, f.correction, f.responseId, at), 1);
      this.emit(ctx, FEEDBACK_FEATURES, advanceFeedbackTime(ctx.state, at));
    }
  }

  /** Whole online vector (parsed) of every user with a changed value. */
  changedVectors(): Map<number, Record<string, FeatureValue>> {
    const out = new Map<number, Record<string, FeatureValue>>();
    for (const ctx of this.users.values()) {
      if (ctx.dirty.size === 0) continue;
      const values: Record<string, FeatureValue> = {};
      for (const [feature, json] of ctx.last) values[feature] = JSON.parse(json) as FeatureValue;
      out.set(ctx.userId, values);
    }
    return out;
  }

  /** The write of this fold. */
  toWrite(createdAt: string): FeatureBatchWrite {
    const b = this.batch;
    const online: FeatureHistoryWrite[] = [];
    const states: FeatureBatchWrite['states'] = [];
    for (const ctx of this.users.values()) {
      states.push({ userId: ctx.userId, state: encodeState(ctx.state) });
      for (const [feature, v] of ctx.dirty) online.push({ userId: ctx.userId, feature, eventTime: v.eventTime, valueJson: v.json });
    }
    return {
      token: b.token,
      reset: b.reset,
      definitionsVersion: FEATURE_DEFINITIONS_VERSION,
      lastResponseSeq: b.responses.at(-1)?.seq ?? null,
      lastFeedbackId: b.feedback.at(-1)?.id ?? null,
      createdAt,
      history: this.history,
      states,
      online,
    };
  }
}

/** Batch-at-a-time materializer; `materializeFeatures` and the scheduler drive it. */
export class FeatureMaterializer {
  private readonly store: Store;
  private readonly batchRows: number;
  private readonly now: () => Date;
  private rebuildPending: boolean;
  private readonly online: OnlineFeatureSync | undefined;
  /** Documents are tombstoned, never re-homed, so their collections can be cached for the run. */
  private readonly documentCollections = new Map<number, string | null>();

  /** @throws ValidationError for bad options. */
  constructor(store: Store, options: MaterializeOptions = {}) {
    const parsed = optionsSchema.safeParse({ batchRows: options.batchRows, rebuild: options.rebuild });
    if (!parsed.success) throw new ValidationError(`materialize: ${parsed.error.issues[0]?.message ?? 'invalid options'}`, { cause: parsed.error });
    if (options.now !== undefined && typeof options.now !== 'function') throw new ValidationError('materialize: now must be a function');
    this.store = store;
    this.batchRows = parsed.data.batchRows ?? MATERIALIZE_BATCH_ROWS;
    this.now = options.now ?? (() => new Date());
    this.rebuildPending = parsed.data.rebuild ?? false;
    this.online = options.online;
  }

  /**
   * Reads the next batch (up to `batchRows` responses and `batchRows` feedback rows), folds it and
   * commits it in one write transaction. Zero counts when the store is up to date; `stale: true`
   * (nothing written) when another run committed between the read and the write: just run again.
   */
  async runBatch(): Promise<BatchResult> {
    const batch = await this.store.features.readBatch({ batchRows: this.batchRows, definitionsVersion: FEATURE_DEFINITIONS_VERSION, rebuild: this.rebuildPending });
    if (batch.responses.length === 0 && batch.feedback.length === 0 && !batch.reset) {
      // Nothing new: still retry online writes a previous failure left (read back from SQL, generation `token`).
      if (this.online && this.online.pending() > 0) await this.online.afterCommit({ reset: false, version: batch.token, users: new Map() });
      return { responses: 0, feedback: 0, userIds: [], historyRows: 0, rebuilt: false };
    }
    await this.loadCollections(batch);
    const fold = new BatchFold(batch, (d) => this.documentCollections.get(d) ?? null);
    fold.foldResponses();
    fold.foldFeedback();
    const committed = await this.store.features.commitBatch(fold.toWrite(this.now().toISOString()));
    if (!committed) return { responses: 0, feedback: 0, userIds: [], historyRows: 0, rebuilt: false, stale: true };
    // Only once committed: a failed rebuild must be retried by the next batch.
    if (batch.reset) this.rebuildPending = false;
    // After the SQL commit (the truth); a failure throws, the batch stays committed, the users are retried.
    await this.online?.afterCommit({ reset: batch.reset, version: batch.token + 1, users: fold.changedVectors() });
    return { responses: batch.responses.length, feedback: batch.feedback.length, userIds: [...fold.users.keys()], historyRows: fold.history.length, rebuilt: batch.reset };
  }

  private async loadCollections(batch: FeatureBatch): Promise<void> {
    const missing = new Set<number>();
    for (const r of batch.responses) for (const d of citedDocumentIds(r.citationsJson)) if (!this.documentCollections.has(d)) missing.add(d);
    if (missing.size === 0) return;
    for (const [id, c] of await this.store.features.documentCollections([...missing])) this.documentCollections.set(id, c);
  }
}

/** Accumulates batch results into a summary. */
class SummaryBuilder {
  private readonly started = performance.now();
  private readonly users = new Set<number>();
  readonly totals = { responses: 0, feedback: 0, historyRows: 0, rebuilt: false };
  private stale = 0;

  /** Adds a batch; returns true when the run is done (nothing left to read). */
  add(b: BatchResult): boolean {
    if (b.stale) {
      if (++this.stale > MAX_STALE_RETRIES) throw new MnemeError('materialize_contended', 503, `materialize: ${MAX_STALE_RETRIES} batches in a row lost to concurrent runs`);
      return false;
    }
    this.stale = 0;
    this.totals.responses += b.responses;
    this.totals.feedback += b.feedback;
    this.totals.historyRows += b.historyRows;
    this.totals.rebuilt ||= b.rebuilt;
    for (const u of b.userIds) this.users.add(u);
    return b.responses === 0 && b.feedback === 0;
  }

  summary(): MaterializeSummary {
    return { ...this.totals, users: this.users.size, seconds: (performance.now() - this.started) / 1000 };
  }
}

/**
 * Materializes everything logged since the last run, batch by batch (one write transaction each),
 * with the engine tuned for bulk work meanwhile.
 * @throws ValidationError for bad options; store errors propagate (the failed batch is not committed).
 */
export async function materializeFeatures(store: Store, opts: MaterializeOptions = {}): Promise<MaterializeSummary> {
  const m = new FeatureMaterializer(store, opts);
  const s = new SummaryBuilder();
  await store.features.withBulkTuning(async () => {
    while (!s.add(await m.runBatch()));
  });
  return s.summary();
}

export interface FeatureSchedulerOptions {
  /** Called after each run that consumed rows. */
  onRun?: (summary: MaterializeSummary) => void;
  /** Rows per stream per batch. Default SCHEDULER_BATCH_ROWS. */
  batchRows?: number;
  /** See MaterializeOptions.online. */
  online?: OnlineFeatureSync | undefined;
}

const nextMacrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Lease name the in-server materializer holds while it runs (one replica at a time). */
export const FEATURES_LEASE = 'features-materialize';

/**
 * Runs materialization every `intervalSeconds` (and once right away) inside a long-lived process.
 * Batches are small (SCHEDULER_BATCH_ROWS) and separated by a macrotask, so a large backlog never
 * blocks the event loop for long (HTTP requests interleave); runs never overlap (a tick that finds
 * one in progress is skipped). Timers are unref'd. `intervalSeconds` 0 disables it. `onError`
 * receives any failure (the next tick tries again).
 * @throws ValidationError when intervalSeconds is negative or not finite.
 */
export function startFeatureScheduler(
  store: Store,
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
    // One materializer at a time across every process on this store (all replicas): the others skip.
    const lease = await store.tryLease(FEATURES_LEASE).catch((err: unknown) => {
      onError(err);
      return null;
    });
    if (!lease) {
      running = false;
      return;
    }
    try {
      const m = new FeatureMaterializer(store, { batchRows: options.batchRows ?? SCHEDULER_BATCH_ROWS, online: options.online });
      const s = new SummaryBuilder();
      while (!stopped && !s.add(await m.runBatch())) await nextMacrotask();
      const summary = s.summary();
      if (summary.responses + summary.feedback > 0) options.onRun?.(summary);
    } catch (err) {
      onError(err);
    } finally {
      await lease.release().catch(onError);
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
