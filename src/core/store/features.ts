/**
 * The user feature tables: offline history, online values, per-user pipeline state and watermarks.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/features.ts. What the values mean (and the point-in-time rule) is src/features/.
 *
 * Materialization is read → fold → commit: `readBatch` returns the next log rows with everything the
 * fold needs (one snapshot), the pipeline folds them in memory, and `commitBatch` writes the result
 * in one write transaction — only if no other run committed in between (an optimistic token), so two
 * processes materializing at once never double-count a row. No transaction spans an await.
 */

/** A feature value as stored: JSON (a number, string, null, list or small map). */
export type FeatureValue = number | string | null | number[] | string[] | Record<string, number>;

export interface OnlineFeatureRecord {
  feature: string;
  value: FeatureValue;
  /** Event time of the value (ISO-8601 UTC, see src/features/definitions.ts). */
  eventTime: string;
}

/** A history row's key, `[feature, eventTime]`; a user's keys come sorted by feature, then event time. */
export type FeatureHistoryKey = readonly [feature: string, eventTime: string];

/** Per-user pipeline state: the JSON of the aggregates and, exactly, the interest vector's sum. */
export interface StoredFeatureState {
  stateJson: string;
  interestSum: Float64Array | null;
}

/** A prediction-log row as the feature pipeline reads it. */
export interface FeatureSourceResponse {
  seq: number;
  userId: number;
  createdAt: string;
  query: string;
  /** The query embedding, or null (none logged, or not a whole number of float32 values). */
  queryVector: Float32Array | null;
  collection: string | null;
  /** The logged citations, as JSON text (parsed by the pipeline: malformed log data is its call). */
  citationsJson: string;
}

export interface FeatureRating {
  rating: number;
  correction: string | null;
}

/** A feedback row with the same user's previous rating of the same response (null for a first one). */
export interface FeatureSourceFeedback extends FeatureRating {
  id: number;
  responseId: string;
  userId: number;
  createdAt: string;
  previous: FeatureRating | null;
}

/** What a rating's contribution depends on: the rated answer and its citations (JSON text). */
export interface RatedResponseInfo {
  answer: string | null;
  citationsJson: string;
}

/** One user's stored pipeline state and online values (feature → value JSON). */
export interface FeatureUserSnapshot {
  state: StoredFeatureState | null;
  online: Map<string, string>;
}

/** The next rows to materialize, read in one snapshot. */
export interface FeatureBatch {
  /** Pass back to `commitBatch`: it refuses the batch when another run committed since this read. */
  token: number;
  /** True when this batch starts the store over (asked for, or computed by another definitions version). */
  reset: boolean;
  /** Up to `batchRows` responses after the responses watermark, in log order. */
  responses: FeatureSourceResponse[];
  /** Up to `batchRows` feedback rows after the feedback watermark, in id order. */
  feedback: FeatureSourceFeedback[];
  /** The rated response of every feedback row (absent when it no longer exists). */
  ratedResponses: Map<string, RatedResponseInfo>;
  /** Every user of the batch; state null and no online values when new (or when `reset`). */
  users: Map<number, FeatureUserSnapshot>;
}

export interface FeatureHistoryWrite {
  userId: number;
  feature: string;
  eventTime: string;
  valueJson: string;
}

/** The result of folding one batch. */
export interface FeatureBatchWrite {
  token: number;
  /** Delete every feature row and all state first (FeatureBatch.reset). */
  reset: boolean;
  /** Recorded with the watermarks: a later read with another version resets. */
  definitionsVersion: number;
  /** Last responses seq / feedback id consumed; null when the batch had none. */
  lastResponseSeq: number | null;
  lastFeedbackId: number | null;
  /** When the pipeline computed the values (ISO-8601 UTC), stored with each history row. */
  createdAt: string;
  /** In log order: of two rows with the same (user, feature, event time) the later one wins. */
  history: FeatureHistoryWrite[];
  states: Array<{ userId: number; state: StoredFeatureState }>;
  online: Array<FeatureHistoryWrite>;
}

export interface FeatureWatermarks {
  responsesSeq: number;
  feedbackId: number;
  /** Definitions version of the stored values; null before the first run. */
  definitionsVersion: number | null;
}

export interface FeatureTableStore {
  /** Latest values of the user, by feature ({} when none). */
  onlineValues(userId: number): Promise<Record<string, FeatureValue>>;
  /** Latest values with their event times, sorted by feature. */
  onlineRecords(userId: number): Promise<OnlineFeatureRecord[]>;
  /** Per feature, the history value with the greatest event time ≤ `time` (ISO-8601 UTC, stored form). */
  valuesAsOf(userId: number, time: string): Promise<Record<string, FeatureValue>>;
  /**
   * Reads the history of several users in one snapshot: per user, its sorted keys go to `pick`, which
   * returns the positions (indices into those keys) whose values it needs; the result maps each user
   * to position → parsed value. Values of unpicked rows are never read.
   */
  readHistory(
    userIds: readonly number[],
    pick: (userId: number, keys: readonly FeatureHistoryKey[]) => Iterable<number>,
  ): Promise<Map<number, Map<number, FeatureValue>>>;
  /**
   * Upserts online values outside a materialization (one transaction; other features of the user kept).
   * The materializer writes them with `commitBatch`; this is for online-store tooling and tests.
   */
  writeOnline(rows: readonly FeatureHistoryWrite[]): Promise<void>;
  /** Removes the user's history, online values and state in one transaction; returns rows removed. */
  eraseUser(userId: number): Promise<{ history: number; online: number; state: number }>;
  /**
   * The next batch to materialize.
   * @param opts.batchRows most responses and most feedback rows read (each).
   * @param opts.definitionsVersion the pipeline's; a stored value computed by another resets.
   * @param opts.rebuild start over from the whole log.
   */
  readBatch(opts: { batchRows: number; definitionsVersion: number; rebuild: boolean }): Promise<FeatureBatch>;
  /**
   * Writes a folded batch (history, states, online values, watermarks) in one transaction.
   * @returns false, writing nothing, when another run committed since the batch was read (read again).
   */
  commitBatch(write: FeatureBatchWrite): Promise<boolean>;
  /** The collection of each document id (null for an unknown document). */
  documentCollections(documentIds: readonly number[]): Promise<Map<number, string | null>>;
  /** Deletes every feature row and all state; watermarks back to 0 with `definitionsVersion`. */
  reset(definitionsVersion: number): Promise<void>;
  watermarks(): Promise<FeatureWatermarks>;
  /**
   * Runs `fn` with the engine tuned for a long materialization (SQLite: a 64 MiB page cache for this
   * connection), restored afterwards whatever `fn` does.
   */
  withBulkTuning<T>(fn: () => Promise<T>): Promise<T>;
}
