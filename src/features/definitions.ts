/**
 * The user feature registry: every feature mneme knows about, with its name, type, description,
 * source and freshness (the "feature view" of Feast / the "feature group" of Hopsworks). What each
 * feature means is in src/shared/feature-catalog.ts (shared with the browser); how each precomputed
 * value is computed is here.
 *
 * Precomputed features are folded from the prediction log (`responses`) and `feedback` into a small
 * per-user state by the materialization pipeline (src/features/materialize.ts); `compute(state)`
 * turns that state into the values stored in `feature_history` / `feature_online`. On-demand features
 * are computed from the request itself at request time (src/features/on-demand.ts).
 *
 * Time semantics (the one rule every reader relies on):
 * - A precomputed value's `event_time` is the `created_at` of the latest source row that contributed
 *   to it (a response for the `responses` group, a feedback row for the `feedback` group), made
 *   monotonic per user and group (`max(previous event time, created_at)`), so a value never becomes
 *   visible before the row that produced it.
 * - Time-windowed features (`messages_7d`, `active_days_30d`) are computed AS OF THEIR EVENT TIME,
 *   i.e. the window ends at the user's latest message, not at "now". Why: the offline history is then
 *   an exact function of the log (the same rows give the same history whatever the batch boundaries
 *   or the time the pipeline ran, which is what makes incremental == full recompute provable and
 *   point-in-time training data reproducible). Consequence: the online value is "as of last_seen_at";
 *   a user silent for two weeks still reads their last `messages_7d` until their next message.
 *   Consumers that care about recency combine it with `last_seen_at` or the on-demand
 *   `seconds_since_previous_message`.
 *
 * Everything in this module is free of I/O (the folds mutate the state object they are given).
 */
import {
  ACTIVE_DAYS_WINDOW_DAYS,
  CORRECTION_LENGTH_WEIGHT,
  CORRECTIONS_MAX,
  DISLIKED_CHUNKS_MAX,
  DOCUMENT_LIST_MAX,
  FEATURE_CATALOG,
  INTEREST_HALF_LIFE_DAYS,
  MESSAGES_WINDOW_DAYS,
  TOP_COLLECTIONS_MAX,
} from '../shared/feature-catalog.ts';
import type { FeatureDefinition } from '../shared/feature-catalog.ts';
import type { FeatureValue } from './types.ts';

// The catalog (meaning, parameters) lives in src/shared so the browser can show it; re-exported here
// for the server-side readers of the registry.
export {
  ACTIVE_DAYS_WINDOW_DAYS,
  CORRECTION_LENGTH_WEIGHT,
  CORRECTION_TERMS_MAX,
  CORRECTIONS_MAX,
  DISLIKED_CHUNKS_MAX,
  DOCUMENT_LIST_MAX,
  INTEREST_HALF_LIFE_DAYS,
  MESSAGES_WINDOW_DAYS,
  TOP_COLLECTIONS_MAX,
} from '../shared/feature-catalog.ts';
export type { FeatureDefinition, FeatureSource, FeatureType } from '../shared/feature-catalog.ts';

/**
 * Bumped whenever a definition or fold below changes meaning (including keyTerms in personalize.ts,
 * which `correction_terms` uses); materialization then rebuilds from the log.
 * 2: disliked_chunks and correction_terms.
 */
export const FEATURE_DEFINITIONS_VERSION = 2;
/**
 * Rated answers whose chunks/correction terms the state keeps (default 200): enough to fill
 * DISLIKED_CHUNKS_MAX and CORRECTIONS_MAX; beyond it the oldest rating is dropped (deterministic:
 * the same log order gives the same state).
 */
export const RATED_ANSWERS_STATE_MAX = 200;

/** One day, in ms. */
export const DAY_MS = 86_400_000;
/** Decimals kept in stored interest-vector components (1e-4 is far below what re-ranking can notice). */
export const INTEREST_VECTOR_DECIMALS = 4;
/** Decimals kept in rates and averages. */
export const RATE_DECIMALS = 4;

/** A feature folded from the logs by the pipeline. */
export interface PrecomputedFeatureDefinition extends FeatureDefinition {
  source: 'responses' | 'feedback';
  /** The value for a state (JSON-serializable, deterministic). */
  compute(state: UserFeatureState): FeatureValue;
}

/**
 * Running per-user aggregates. Stored in `feature_user_state`: everything but the interest sum as
 * JSON (`state_json`), the interest sum as raw float64 bytes (`interest_sum`), exact either way.
 */
export interface UserFeatureState {
  // --- responses group ---
  messagesTotal: number;
  questionTokensSum: number;
  /** Event time of the responses group: the latest response created_at seen (monotonic max). */
  responsesEventTime: string | null;
  /** created_at (epoch ms, ascending) of the messages inside the longest window before responsesEventTime. */
  recentMs: number[];
  /** Messages per collection (the request's collection filter plus the collections of cited documents). */
  collectionCounts: Record<string, number>;
  /** Time-decayed sum of query vectors and of their weights, as of `atMs`; null before the first vector. */
  interest: { sum: Float64Array; weight: number; atMs: number } | null;
  // --- feedback group (built from the CURRENT rating of each rated response) ---
  feedbackEventTime: string | null;
  ratedUp: number;
  ratedDown: number;
  /** Document id → (responses citing it rated up) − (rated down). Zero entries are removed. */
  documentNet: Record<string, number>;
  /** Answer length in words → vote weight (up-rated answers: 1, corrections: CORRECTION_LENGTH_WEIGHT). */
  lengthVotes: Record<string, number>;
  /**
   * Current ratings that feed `disliked_chunks` / `correction_terms`, by response id: the rating
   * time (epoch ms), the chunks the answer cited when it was rated down (else []), and the key terms
   * of its correction (else []). At most RATED_ANSWERS_STATE_MAX entries (the oldest dropped).
   */
  ratedAnswers: Record<string, RatedAnswer>;
}

/** One current rating as `disliked_chunks` / `correction_terms` see it. */
export interface RatedAnswer {
  atMs: number;
  chunks: number[];
  terms: string[];
}

/** A response row as the responses fold sees it. */
export interface ResponseEvent {
  createdAt: string;
  query: string;
  /** The query embedding, or null when no embedder ran. */
  queryVector: Float32Array | null;
  /** Collections this message touched: its collection filter and the collections of its cited documents. */
  collections: string[];
}

/** What one (response, rating) pair contributes to the feedback group. */
export interface RatingContribution {
  rating: 1 | -1;
  /** The rated response's id. */
  responseId: string;
  /** When this rating was given (epoch ms; the feedback row's created_at). */
  atMs: number;
  /** Distinct ids of the chunks cited by the rated answer. */
  chunkIds: number[];
  /** Key terms of the user's correction (keyTerms, at most CORRECTION_TERMS_MAX); [] when none was given. */
  correctionTerms: string[];
  /** Distinct ids of the documents cited by the rated answer. */
  documentIds: number[];
  /** Words in the rated answer (citation markers excluded); 0 when it has none. */
  answerWords: number;
  /** Words in the user's correction; 0 when none was given. */
  correctionWords: number;
}

export function emptyState(): UserFeatureState {
  return {
    messagesTotal: 0,
    questionTokensSum: 0,
    responsesEventTime: null,
    recentMs: [],
    collectionCounts: {},
    interest: null,
    feedbackEventTime: null,
    ratedUp: 0,
    ratedDown: 0,
    documentNet: {},
    lengthVotes: {},
    ratedAnswers: {},
  };
}

/**
 * Model-independent token estimate of a question: runs of letters/digits plus single punctuation
 * marks. The pipeline cannot depend on which embedding model happens to be configured (that would
 * make the history depend on configuration, not on the log), so it uses this instead of a tokenizer.
 */
export function countQuestionTokens(text: string): number {
  return text.match(/[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu)?.length ?? 0;
}

/** Words (tokens with a letter or digit) in an answer or correction, ignoring citation markers like "[2]", "[1, 3]" or "[2-4]". */
export function countWords(text: string | null): number {
  if (!text) return 0;
  return text.replace(/\[\s*\d[\d\s,;\-–]*\]/g, ' ').match(/\S*[\p{L}\p{N}]\S*/gu)?.length ?? 0;
}

const later = (a: string | null, b: string): string => (a !== null && a > b ? a : b);
const round = (x: number, decimals: number): number => {
  const f = 10 ** decimals;
  const r = Math.round(x * f) / f;
  return Object.is(r, -0) ? 0 : r;
};
const bump = (map: Record<string, number>, key: string, delta: number): void => {
  const v = (map[key] ?? 0) + delta;
  if (v === 0) delete map[key];
  else map[key] = v;
};

/**
 * Folds one response into the state (mutating it) and returns the group's new event time.
 * Responses must be folded in log order (`responses.seq`): the interest vector is a float sum, and the
 * same order gives bit-identical results.
 */
export function applyResponse(state: UserFeatureState, e: ResponseEvent): string {
  const ms = Date.parse(e.createdAt);
  state.messagesTotal += 1;
  state.questionTokensSum += countQuestionTokens(e.query);
  const eventTime = later(state.responsesEventTime, e.createdAt);
  state.responsesEventTime = eventTime;

  // Keep only what the longest window can still see; insert in order (created_at may arrive slightly out of order).
  const horizon = Date.parse(eventTime) - ACTIVE_DAYS_WINDOW_DAYS * DAY_MS;
  const recent = state.recentMs;
  let drop = 0;
  while (drop < recent.length && recent[drop]! <= horizon) drop++;
  if (drop > 0) recent.splice(0, drop);
  if (ms > horizon) {
    let i = recent.length;
    while (i > 0 && recent[i - 1]! > ms) i--;
    recent.splice(i, 0, ms);
  }

  for (const c of new Set(e.collections)) bump(state.collectionCounts, c, 1);

  if (e.queryVector && e.queryVector.length > 0) {
    const x = e.queryVector;
    // A different dimension means the embedding model changed: old vectors live in another space.
    if (!state.interest || state.interest.sum.length !== x.length) {
      state.interest = { sum: new Float64Array(x.length), weight: 0, atMs: ms };
    }
    const it = state.interest;
    const decay = 2 ** (-Math.max(0, ms - it.atMs) / (INTEREST_HALF_LIFE_DAYS * DAY_MS));
    for (let i = 0; i < x.length; i++) it.sum[i] = it.sum[i]! * decay + x[i]!;
    it.weight = it.weight * decay + 1;
    it.atMs = Math.max(it.atMs, ms);
  }
  return eventTime;
}

/**
 * Adds (`sign` 1) or removes (`sign` -1) one rating's contribution. A changed rating is "remove the
 * previous one, add the new one"; all aggregates are integer counts, so the result is exact whatever
 * the order of changes.
 */
export function applyRating(state: UserFeatureState, c: RatingContribution, sign: 1 | -1): void {
  if (c.rating === 1) state.ratedUp += sign;
  else state.ratedDown += sign;
  for (const d of new Set(c.documentIds)) bump(state.documentNet, String(d), sign * c.rating);
  // A thumbs-down alone says nothing about length (it is as often about content), so only up-rated
  // answers and explicit corrections vote.
  if (c.rating === 1 && c.answerWords > 0) bump(state.lengthVotes, String(c.answerWords), sign);
  if (c.correctionWords > 0) bump(state.lengthVotes, String(c.correctionWords), sign * CORRECTION_LENGTH_WEIGHT);
  applyRatedAnswer(state, c, sign);
}

/** Keeps `ratedAnswers` in step with one rating's addition (sign 1) or removal (sign -1). */
function applyRatedAnswer(state: UserFeatureState, c: RatingContribution, sign: 1 | -1): void {
  state.ratedAnswers ??= {};
  if (sign === -1) {
    delete state.ratedAnswers[c.responseId];
    return;
  }
  const chunks = c.rating === -1 ? [...new Set(c.chunkIds)] : [];
  if (chunks.length === 0 && c.correctionTerms.length === 0) return;
  state.ratedAnswers[c.responseId] = { atMs: c.atMs, chunks, terms: [...c.correctionTerms] };
  const ids = Object.keys(state.ratedAnswers);
  if (ids.length <= RATED_ANSWERS_STATE_MAX) return;
  const entries = ids.map((id) => [id, state.ratedAnswers[id]!.atMs] as const).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [id] of entries.slice(0, ids.length - RATED_ANSWERS_STATE_MAX)) delete state.ratedAnswers[id];
}

/** Current ratings newest first (ties: response id), for the timed lists. */
function ratedNewestFirst(s: UserFeatureState): RatedAnswer[] {
  return Object.entries(s.ratedAnswers ?? {})
    .sort((a, b) => b[1].atMs - a[1].atMs || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, r]) => r);
}

/** `disliked_chunks`: chunk id → time of its latest down-rating, the DISLIKED_CHUNKS_MAX most recent. */
function dislikedChunks(s: UserFeatureState): Record<string, number> {
  const out: Record<string, number> = {};
  let n = 0;
  for (const r of ratedNewestFirst(s)) {
    for (const id of [...r.chunks].sort((a, b) => a - b)) {
      if (n >= DISLIKED_CHUNKS_MAX) return out;
      if (out[String(id)] !== undefined) continue;
      out[String(id)] = r.atMs;
      n++;
    }
  }
  return out;
}

/** `correction_terms`: "term term …" → time of the correction, the CORRECTIONS_MAX most recent. */
function correctionTerms(s: UserFeatureState): Record<string, number> {
  const out: Record<string, number> = {};
  let n = 0;
  for (const r of ratedNewestFirst(s)) {
    if (r.terms.length === 0) continue;
    const key = r.terms.join(' ');
    if (out[key] !== undefined) continue;
    out[key] = r.atMs;
    if (++n >= CORRECTIONS_MAX) break;
  }
  return out;
}

/** Advances the feedback group's event time; returns it. */
export function advanceFeedbackTime(state: UserFeatureState, createdAt: string): string {
  state.feedbackEventTime = later(state.feedbackEventTime, createdAt);
  return state.feedbackEventTime;
}

/** The interest vector: decayed sum / total weight, rounded to INTEREST_VECTOR_DECIMALS (a plain loop: the hot path). */
function interestMean(s: UserFeatureState): number[] | null {
  const it = s.interest;
  if (!it || it.weight <= 0) return null;
  const scale = 10 ** INTEREST_VECTOR_DECIMALS;
  const out = new Array<number>(it.sum.length);
  // `+ 0` turns -0 into 0, so the JSON never says "-0".
  for (let i = 0; i < it.sum.length; i++) out[i] = Math.round((it.sum[i]! / it.weight) * scale) / scale + 0;
  return out;
}

/** Index of the first entry of the ascending `sorted` that is > `t` (binary search). */
function firstAfter(sorted: readonly number[], t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! > t) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Where the window of `days` before the responses event time starts in recentMs (ascending). A
 * binary search, not a filter: a user asking thousands of questions a day keeps thousands of entries,
 * and this runs on every materialization.
 */
function windowStart(state: UserFeatureState, days: number): number {
  if (state.responsesEventTime === null) return state.recentMs.length;
  return firstAfter(state.recentMs, Date.parse(state.responsesEventTime) - days * DAY_MS);
}

/** Distinct UTC days among recentMs from index `from` on (one binary search per day). */
function distinctDays(recent: readonly number[], from: number): number {
  let days = 0;
  for (let i = from; i < recent.length; days++) {
    const day = Math.floor(recent[i]! / DAY_MS);
    i = firstAfter(recent, (day + 1) * DAY_MS - 1);
  }
  return days;
}

function documentList(state: UserFeatureState, positive: boolean): number[] {
  return Object.entries(state.documentNet)
    .filter(([, n]) => (positive ? n > 0 : n < 0))
    .map(([id, n]) => ({ id: Number(id), n: Math.abs(n) }))
    .sort((a, b) => b.n - a.n || a.id - b.id)
    .slice(0, DOCUMENT_LIST_MAX)
    .map((d) => d.id);
}

/** Weighted lower median of the length votes, in words; null without votes. */
function weightedMedianLength(votes: Record<string, number>): number | null {
  const entries = Object.entries(votes)
    .map(([w, n]) => [Number(w), n] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => a[0] - b[0]);
  const total = entries.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return null;
  let acc = 0;
  for (const [words, n] of entries) {
    acc += n;
    if (acc * 2 >= total) return words;
  }
  return null;
}

/** A catalog entry whose value is materialized from the logs. */
type PrecomputedCatalogEntry = Extract<(typeof FEATURE_CATALOG)[number], { source: 'responses' | 'feedback' }>;

/**
 * How each precomputed feature's value is computed from the user's state (what it means is in
 * FEATURE_CATALOG). Keyed by the catalog's precomputed names, so a feature missing here, or one here
 * that the catalog does not list, is a type error.
 */
const COMPUTE: { readonly [N in PrecomputedCatalogEntry['name']]: (state: UserFeatureState) => FeatureValue } = {
  messages_total: (s) => s.messagesTotal,
  messages_7d: (s) => s.recentMs.length - windowStart(s, MESSAGES_WINDOW_DAYS),
  active_days_30d: (s) => distinctDays(s.recentMs, windowStart(s, ACTIVE_DAYS_WINDOW_DAYS)),
  last_seen_at: (s) => s.responsesEventTime,
  top_collections: (s) =>
    Object.entries(s.collectionCounts)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, TOP_COLLECTIONS_MAX)
      .map(([c]) => c),
  avg_question_tokens: (s) => (s.messagesTotal === 0 ? 0 : round(s.questionTokensSum / s.messagesTotal, RATE_DECIMALS)),
  interest_vector: interestMean,
  ratings_total: (s) => s.ratedUp + s.ratedDown,
  helpful_rate: (s) => (s.ratedUp + s.ratedDown === 0 ? null : round(s.ratedUp / (s.ratedUp + s.ratedDown), RATE_DECIMALS)),
  engaged_documents: (s) => documentList(s, true),
  disliked_documents: (s) => documentList(s, false),
  disliked_chunks: dislikedChunks,
  correction_terms: correctionTerms,
  preferred_answer_length: (s) => weightedMedianLength(s.lengthVotes),
};

function isPrecomputed(d: (typeof FEATURE_CATALOG)[number]): d is PrecomputedCatalogEntry {
  return d.source !== 'request';
}

/** Features materialized into feature_history / feature_online, in a stable (catalog) order. */
export const PRECOMPUTED_FEATURES: readonly PrecomputedFeatureDefinition[] = FEATURE_CATALOG.filter(isPrecomputed).map((d) => ({
  ...d,
  compute: COMPUTE[d.name],
}));

/** Features computed from the request (src/features/on-demand.ts). */
export const ON_DEMAND_FEATURES: readonly FeatureDefinition[] = FEATURE_CATALOG.filter((d) => d.source === 'request');

/** Every feature, precomputed first. */
export const FEATURE_DEFINITIONS: readonly FeatureDefinition[] = [...PRECOMPUTED_FEATURES, ...ON_DEMAND_FEATURES];

/** Precomputed features by source group. */
export const RESPONSE_FEATURES = PRECOMPUTED_FEATURES.filter((f) => f.source === 'responses');
export const FEEDBACK_FEATURES = PRECOMPUTED_FEATURES.filter((f) => f.source === 'feedback');
