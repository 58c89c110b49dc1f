/**
 * What the training-data export reads and records: a snapshot of the prediction log with its
 * feedback (streamed page by page), the preference pairing, the per-data-dir key of the pseudonymous
 * user hashes, and the record of every export run (which manifest holds which user hashes).
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/exports.ts.
 */
import crypto from 'node:crypto';

export type ResponseStatusValue = 'ok' | 'error' | 'cancelled';

/** One `responses` row joined with its current (latest) feedback, as the exporter reads it. */
export interface LoggedResponse {
  seq: number;
  id: string;
  /** The asking user (exported only as a pseudonymous hash). */
  userId: number;
  /** When that user was created (ISO-8601 UTC): with the id, what identifies them for good. */
  userCreatedAt: string;
  conversationId: string;
  turnIndex: number;
  createdAt: string;
  status: ResponseStatusValue;
  collection: string | null;
  promptName: string;
  promptSha256: string;
  /** The exact messages sent to the model, as JSON text ('' when none was stored). */
  renderedPromptJson: string;
  modelBackend: string;
  modelId: string;
  /** The user's message as typed (no context): what near-duplicate detection compares. */
  query: string;
  answer: string | null;
  /** Current rating (latest feedback row), null when unrated. */
  rating: 1 | -1 | null;
  /** Correction text of the latest feedback row, if any. */
  correction: string | null;
  /** The release that answered (issue 15); null/absent for rows logged without releases. */
  release?: string | null | undefined;
}

/** Smallest prompt-hash prefix accepted by the `prompt` filter, in hex digits. */
export const PROMPT_HASH_MIN_PREFIX = 8;

export interface ExportFilters {
  /** Inclusive lower bound on `created_at` (ISO-8601 UTC with ms, as stored). */
  since?: string | undefined;
  /** Exclusive upper bound on `created_at`. */
  until?: string | undefined;
  /**
   * Least effective rating: a response with a correction counts +1 (its target is the user's own
   * answer), else its current rating, and an unrated response counts 0. So 1 = rated up or corrected,
   * 0 = everything but rated-down-and-uncorrected, -1 = everything. Blank corrections (only spaces,
   * tabs, CR, LF) count as none.
   */
  minRating?: -1 | 0 | 1 | undefined;
  /** Exact `responses.collection` (a request made without a collection has none and never matches). */
  collection?: string | undefined;
  /** `model_id`, or `backend:model_id`. */
  model?: string | undefined;
  /** Prompt template name, or its sha256 (full, or a prefix of at least PROMPT_HASH_MIN_PREFIX hex digits, any case). */
  prompt?: string | undefined;
  /** Exact `responses.release`: only answers of this release. */
  release?: string | undefined;
  /** Include responses whose status is 'error' or 'cancelled' (default: only 'ok'). */
  includeErrors?: boolean | undefined;
}

/** Log bounds at the start of an export: the snapshot every later page stays within. */
export interface LogSnapshot {
  firstSeq: number | null;
  /** Largest seq present (0 for an empty log). */
  snapshotSeq: number;
}

export interface SelectionStats {
  /** Rows matching the filters (including status-excluded ones). */
  matched: number;
  /** Rows matching the filters but left out for their status (error / cancelled). */
  excludedByStatus: { error: number; cancelled: number };
}

export interface SelectOptions {
  filters: ExportFilters;
  /** Read rows with seq ≤ this (from `logSnapshot`). */
  snapshotSeq: number;
  /** Rows per page (default SELECT_PAGE_ROWS of the engine). */
  pageRows?: number | undefined;
}

export interface PreferencePlan {
  /** Rated responses considered (after filters). */
  rated: number;
  /** Their current ratings. */
  ratings: { up: number; down: number };
  /** Rated responses left out for their status. */
  excludedByStatus: { error: number; cancelled: number };
  /** Cross-response pairs planned (a -1 answer matched with a +1 answer to the same prompt). */
  plannedRatingPairs: number;
}

/** A rated-down response and, when one exists, the rated-up response it is paired with. */
export interface PreferenceRow {
  down: LoggedResponse;
  up: LoggedResponse | null;
}

/** A planned preference selection; `close()` releases what the plan holds (always call it). */
export interface PreferenceSelection {
  readonly plan: PreferencePlan;
  /**
   * Streams every rated-down response of the plan (seq order) with its partner. Rated-up responses
   * whose prompt key is null (malformed) are streamed too, as `{down: <that row>, up: null}` with
   * `down.rating === 1`, so the caller can report them; they yield no pair.
   */
  rows(opts?: { pageRows?: number | undefined }): AsyncGenerator<PreferenceRow>;
  close(): Promise<void>;
}

export interface NewExportRun {
  /** Absolute path of the manifest written. */
  manifestPath: string;
  format: string;
  examples: number;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** Distinct pseudonymous hashes of the users whose data the files hold. */
  userHashes: readonly string[];
}

/**
 * A user as the hash sees them: the id and the creation time. Ids alone can come back (SQLite gives a
 * new user the id of an erased one that had the largest); with the creation time a hash never
 * names two people.
 */
export interface ExportUserRef {
  id: number;
  /** ISO-8601 UTC, as stored. */
  createdAt: string;
}

/** Hex digits kept of a user hash (128 bits: no collisions among any realistic number of users). */
export const USER_HASH_HEX_DIGITS = 32;

/**
 * The pseudonymous hash of a user: HMAC-SHA256 keyed with the data dir's secret (ExportSource.userHashKey)
 * over "mneme-user:<id>:<createdAt>", hex, first USER_HASH_HEX_DIGITS digits. Stable across exports
 * of one data dir; without the key, guessing ids and times does not reveal whom a hash belongs to.
 */
export function pseudonymousUserHash(key: Uint8Array, user: ExportUserRef): string {
  return crypto.createHmac('sha256', key).update(`mneme-user:${user.id}:${user.createdAt}`).digest('hex').slice(0, USER_HASH_HEX_DIGITS);
}

export interface ExportSource {
  /** The log's bounds now: later pages read only rows up to `snapshotSeq`. */
  logSnapshot(): Promise<LogSnapshot>;
  /**
   * Streams the responses matching `filters` with seq ≤ snapshotSeq, in seq order, with their current
   * feedback, a page at a time (each page its own short read: a long export never pins the log),
   * counting the ones excluded for their status into `stats` (read it after the stream ends).
   */
  selectResponses(opts: SelectOptions, stats: SelectionStats): AsyncGenerator<LoggedResponse>;
  /**
   * Plans preference pairs among the rated responses (seq ≤ snapshotSeq) passing the filters
   * (`minRating` does not apply): each rated-down response is matched with a rated-up response to the
   * same prompt — equal `promptKey(renderedPromptJson)`, null meaning malformed — the k-th -1 answer
   * of a prompt, in log order, with the ((k-1) mod U)+1-th of its U +1 answers, so every rated-down
   * answer is used once and the rated-up ones are shared evenly. Memory stays flat (the plan is
   * stored by the engine, not held in JS).
   * @throws ConflictError when another selection is open on this store.
   */
  planPreference(opts: Omit<SelectOptions, 'pageRows'>, promptKey: (renderedPromptJson: string) => string | null): Promise<PreferenceSelection>;
  /** The data dir's random secret keying the user hashes (created on first use, 32 bytes). */
  userHashKey(): Promise<Uint8Array>;
  /** pseudonymousUserHash(userHashKey(), user): works after the user is erased (nothing of theirs is read). */
  userHash(user: ExportUserRef): Promise<string>;
  /** Records an export run with its user hashes (one transaction); returns its id. */
  recordRun(run: NewExportRun): Promise<number>;
  /** Forgets a recorded run (an export that failed after recording it). */
  forgetRun(id: number): Promise<void>;
  /**
   * Manifest paths of the recorded runs that contained the user's hash, distinct, most recent first.
   * The files may since have been deleted or overwritten by a later export: check them.
   */
  manifestsContainingUser(user: ExportUserRef): Promise<string[]>;
}
