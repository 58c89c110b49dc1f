/**
 * Admin JSON endpoints behind the monitoring page (/admin). Every number comes from the store — the
 * prediction log (`responses`), `feedback`, the corpus tables — so it survives restarts and is the
 * same on every replica reading the same data dir; only the generation queue (depth, active) and the
 * model state are live values of this process. Documented in docs/admin-api.md.
 *
 * - GET /v1/admin/overview            → live state + all-time totals
 * - GET /v1/admin/timeseries?minutes=N&bucket_minutes=B → per-bucket requests, errors, latency
 *   p50/p99 per stage, feedback, thumbs-down share, retrieval top-score quantiles (a drift signal)
 * - GET /v1/admin/thumbs-down?limit=N → the latest answers whose current rating is 👎
 * - GET /v1/admin/corpus              → documents, chunks, collections, embedding model, index
 *   generation, last ingestion
 *
 * Mount AFTER `authenticate` (src/chat/http/auth.ts): the router runs `requireAdmin` first, which
 * reads `res.locals.user` (401 without authentication is the authenticate middleware's job; a
 * non-admin key gets 403 here).
 *
 * The aggregation functions are pure (rows in, JSON out) and exported for tests.
 */
import { Router } from 'express';
import { z } from 'zod';
import { ValidationError } from '../../../core/errors.ts';
import type { Store } from '../../../core/store/index.ts';
import type { IndexGenerationRecord, ResponseSampleRecord } from '../../../core/store/monitoring.ts';
import type { Citation } from '../../citations.ts';
import { requireAdmin } from '../auth.ts';
import { parseQuery } from './conversations.ts';

/** Default window of /v1/admin/timeseries, in minutes. */
export const DEFAULT_WINDOW_MINUTES = 60;
/** Longest window, in minutes (7 days). */
export const MAX_WINDOW_MINUTES = 7 * 24 * 60;
/** Bucket sizes the automatic choice picks from, in minutes. */
export const BUCKET_CHOICES_MINUTES = [1, 5, 15, 60] as const;
/** The automatic bucket size is the smallest choice giving at most this many buckets. */
export const TARGET_MAX_BUCKETS = 180;
/** Hard bound on buckets when `bucket_minutes` is explicit. */
export const MAX_BUCKETS = 1440;
/**
 * Most prediction-log rows aggregated per timeseries request (the newest are kept; the response
 * says `truncated: true`). Bounds the work of one admin request on a busy server.
 */
export const MAX_TIMESERIES_ROWS = 200_000;
/** Default / maximum rows of /v1/admin/thumbs-down. */
export const DEFAULT_THUMBS_DOWN_LIMIT = 20;
export const MAX_THUMBS_DOWN_LIMIT = 200;
/** Answers in the thumbs-down list are cut to this many characters (the page links the full row id). */
export const THUMBS_DOWN_ANSWER_CHARS = 2000;
/** "Requests per minute now" in the overview averages this many minutes. */
export const OVERVIEW_RECENT_MINUTES = 5;

const MINUTE_MS = 60_000;

/** Pipeline stages reported, with the `timings_json` field each reads. */
export const STAGES = {
  features: 'features_ms',
  retrieval: 'retrieve_ms',
  first_token: 'first_token_ms',
  generation: 'generate_ms',
  total: 'total_ms',
} as const;
export type Stage = keyof typeof STAGES;

export interface AdminDeps {
  /** Read through `store.monitoring` only. */
  store: Pick<Store, 'monitoring'>;
  /** Requests waiting in the generation queue now (GenerationQueue.depth). */
  queueDepth?: (() => number) | undefined;
  /** Generations running now (GenerationQueue.active). */
  queueActive?: (() => number) | undefined;
  /** The chat model, for its name and state. */
  model?: { backend: string; modelId: string; status(): { state: string } } | undefined;
  /** Live vector count of the loaded index (AppDeps.vectors). */
  vectors?: { vectors(): number | null } | undefined;
  /** Accepted for wiring symmetry with AppDeps; the numbers here come from the store, not from it. */
  metrics?: unknown;
  /** Clock, ms since epoch (tests). Default Date.now. */
  now?: (() => number) | undefined;
}

/**
 * The q-quantile of ascending `sorted` by the nearest-rank method (an observed value, never an
 * interpolation: a p99 of 3 samples is the largest, which is what an operator expects). Pure.
 * @returns null for an empty array.
 * @throws RangeError when q is outside [0, 1].
 */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile ${q} is outside [0, 1]`);
  if (sorted.length === 0) return null;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1] ?? null;
}

/** Ascending copy without non-finite values. */
function sortedFinite(values: readonly (number | null | undefined)[]): number[] {
  return values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
}

/** Rounds to 2 decimals (ms) / 6 significant digits (scores) so JSON stays small. */
function round(v: number | null, decimals: number): number | null {
  if (v === null) return null;
  const f = 10 ** decimals;
  return Math.round(v * f) / f;
}

export interface Window {
  /** Start of the first bucket, ms since epoch. */
  fromMs: number;
  /** End of the last bucket (exclusive), ms since epoch. */
  toMs: number;
  bucketMs: number;
  buckets: number;
}

/**
 * The smallest BUCKET_CHOICES_MINUTES size that splits `minutes` into at most TARGET_MAX_BUCKETS.
 * Pure.
 */
export function autoBucketMinutes(minutes: number): number {
  for (const b of BUCKET_CHOICES_MINUTES) if (Math.ceil(minutes / b) <= TARGET_MAX_BUCKETS) return b;
  return BUCKET_CHOICES_MINUTES[BUCKET_CHOICES_MINUTES.length - 1] as number;
}

/**
 * Buckets aligned to the wall clock (a 5-minute bucket starts at :00, :05...), the last one holding
 * `nowMs` (so the current, partial minute is shown). Pure.
 */
export function timeWindow(nowMs: number, minutes: number, bucketMinutes: number): Window {
  const bucketMs = bucketMinutes * MINUTE_MS;
  const buckets = Math.max(1, Math.ceil(minutes / bucketMinutes));
  const toMs = Math.floor(nowMs / bucketMs) * bucketMs + bucketMs;
  return { fromMs: toMs - buckets * bucketMs, toMs, bucketMs, buckets };
}

/** Index of the bucket holding `tMs`, or -1 outside the window. Pure. */
export function bucketIndex(w: Window, tMs: number): number {
  if (!(tMs >= w.fromMs && tMs < w.toMs)) return -1;
  return Math.floor((tMs - w.fromMs) / w.bucketMs);
}

/** One prediction-log row as the timeseries needs it. */
export interface ResponseSample {
  created_at: string;
  status: 'ok' | 'error' | 'cancelled';
  features_ms: number | null;
  retrieve_ms: number | null;
  generate_ms: number | null;
  /** Null for answers logged before this field existed, or with no generated text. */
  first_token_ms: number | null;
  total_ms: number | null;
  /** Score of the best retrieved chunk; null when nothing was retrieved. */
  top_score: number | null;
  retrieved: number;
}

export interface FeedbackSample {
  created_at: string;
  rating: number;
}

export interface Percentiles {
  p50: number | null;
  p99: number | null;
}

export interface ScoreQuantiles {
  p10: number | null;
  p50: number | null;
  p90: number | null;
}

export interface BucketStats {
  /** Bucket start (ISO-8601 UTC). */
  t: string;
  requests: number;
  errors: number;
  cancelled: number;
  /** errors / requests; null without requests. */
  error_rate: number | null;
  /** p50/p99 per stage over the bucket's 'ok' answers, in ms. */
  latency_ms: Record<Stage, Percentiles>;
  /** Feedback rows created in the bucket (every rating event, corrections included). */
  feedback: number;
  thumbs_down: number;
  /** thumbs_down / feedback; null without feedback. */
  thumbs_down_share: number | null;
  /** Quantiles of the top retrieval score over the bucket's requests that retrieved something. */
  top_score: ScoreQuantiles;
  /** Requests that retrieved nothing at all (the corpus did not cover the question). */
  no_hits: number;
}

export type WindowSummary = Omit<BucketStats, 't'> & {
  /** requests / window length in minutes. */
  requests_per_minute: number;
};

function latencyOf(rows: readonly ResponseSample[]): Record<Stage, Percentiles> {
  const ok = rows.filter((r) => r.status === 'ok');
  const out = {} as Record<Stage, Percentiles>;
  for (const [stage, field] of Object.entries(STAGES) as [Stage, (typeof STAGES)[Stage]][]) {
    const v = sortedFinite(ok.map((r) => r[field]));
    out[stage] = { p50: round(quantile(v, 0.5), 2), p99: round(quantile(v, 0.99), 2) };
  }
  return out;
}

function statsOf(rows: readonly ResponseSample[], feedback: readonly FeedbackSample[]): Omit<BucketStats, 't'> {
  const errors = rows.filter((r) => r.status === 'error').length;
  const cancelled = rows.filter((r) => r.status === 'cancelled').length;
  const down = feedback.filter((f) => f.rating < 0).length;
  const scores = sortedFinite(rows.map((r) => r.top_score));
  return {
    requests: rows.length,
    errors,
    cancelled,
    error_rate: rows.length ? round(errors / rows.length, 4) : null,
    latency_ms: latencyOf(rows),
    feedback: feedback.length,
    thumbs_down: down,
    thumbs_down_share: feedback.length ? round(down / feedback.length, 4) : null,
    top_score: { p10: round(quantile(scores, 0.1), 6), p50: round(quantile(scores, 0.5), 6), p90: round(quantile(scores, 0.9), 6) },
    no_hits: rows.filter((r) => r.retrieved === 0 && r.status !== 'cancelled').length,
  };
}

/**
 * Groups samples into the window's buckets and summarizes each bucket and the whole window. Rows
 * outside the window are ignored. Pure.
 */
export function computeTimeseries(
  w: Window,
  responses: readonly ResponseSample[],
  feedback: readonly FeedbackSample[],
): { buckets: BucketStats[]; summary: WindowSummary } {
  const perBucket: ResponseSample[][] = Array.from({ length: w.buckets }, () => []);
  const fbPerBucket: FeedbackSample[][] = Array.from({ length: w.buckets }, () => []);
  const inWindow: ResponseSample[] = [];
  const fbInWindow: FeedbackSample[] = [];
  for (const r of responses) {
    const i = bucketIndex(w, Date.parse(r.created_at));
    if (i === -1) continue;
    perBucket[i]?.push(r);
    inWindow.push(r);
  }
  for (const f of feedback) {
    const i = bucketIndex(w, Date.parse(f.created_at));
    if (i === -1) continue;
    fbPerBucket[i]?.push(f);
    fbInWindow.push(f);
  }
  const buckets = perBucket.map((rows, i) => ({ t: new Date(w.fromMs + i * w.bucketMs).toISOString(), ...statsOf(rows, fbPerBucket[i] ?? []) }));
  const summary = statsOf(inWindow, fbInWindow);
  const minutes = (w.toMs - w.fromMs) / MINUTE_MS;
  return { buckets, summary: { ...summary, requests_per_minute: round(summary.requests / minutes, 3) ?? 0 } };
}

const timeseriesQuerySchema = z.object({
  minutes: z.coerce.number().int().min(1).max(MAX_WINDOW_MINUTES).default(DEFAULT_WINDOW_MINUTES),
  bucket_minutes: z.coerce.number().int().min(1).max(24 * 60).optional(),
});

const thumbsDownQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_THUMBS_DOWN_LIMIT).default(DEFAULT_THUMBS_DOWN_LIMIT),
});

function toSample(r: ResponseSampleRecord): ResponseSample {
  return {
    created_at: r.createdAt,
    status: r.status,
    features_ms: r.featuresMs,
    retrieve_ms: r.retrieveMs,
    generate_ms: r.generateMs,
    first_token_ms: r.firstTokenMs,
    total_ms: r.totalMs,
    top_score: r.topScore,
    retrieved: r.retrieved,
  };
}

export interface TimeseriesBody {
  from: string;
  to: string;
  bucket_minutes: number;
  /** True when the window held more than MAX_TIMESERIES_ROWS answers (the newest were used). */
  truncated: boolean;
  summary: WindowSummary & {
    /** 'ok' answers in the window. */
    answers: number;
    /** Of those, answers with at least one rating. */
    rated_answers: number;
    /** rated_answers / answers; null without answers. */
    feedback_rate: number | null;
  };
  buckets: BucketStats[];
}

/** The timeseries body for `nowMs`. @throws ValidationError when the window needs over MAX_BUCKETS buckets. */
export async function timeseries(store: Pick<Store, 'monitoring'>, nowMs: number, minutes: number, bucketMinutes?: number): Promise<TimeseriesBody> {
  const bucket = bucketMinutes ?? autoBucketMinutes(minutes);
  if (Math.ceil(minutes / bucket) > MAX_BUCKETS) {
    throw new ValidationError(`bucket_minutes: ${minutes} minutes in ${bucket}-minute buckets is more than ${MAX_BUCKETS} buckets`);
  }
  const w = timeWindow(nowMs, minutes, bucket);
  const fromIso = new Date(w.fromMs).toISOString();
  const toIso = new Date(w.toMs).toISOString();
  const samples = await store.monitoring.timeseriesSamples(fromIso, toIso, MAX_TIMESERIES_ROWS + 1);
  const truncated = samples.responses.length > MAX_TIMESERIES_ROWS;
  const rows = samples.responses.slice(0, MAX_TIMESERIES_ROWS).map(toSample);
  const feedback: FeedbackSample[] = samples.feedback.map((f) => ({ created_at: f.createdAt, rating: f.rating }));
  // Share of the window's answers the users rated at all (whenever they rated them).
  const rated = { answers: samples.answers, rated: samples.ratedAnswers };
  const { buckets, summary } = computeTimeseries(w, rows, feedback);
  return {
    from: fromIso,
    to: toIso,
    bucket_minutes: bucket,
    truncated,
    summary: { ...summary, answers: rated.answers, rated_answers: rated.rated, feedback_rate: rated.answers ? round(rated.rated / rated.answers, 4) : null },
    buckets,
  };
}

export interface ThumbsDownItem {
  response_id: string;
  conversation_id: string;
  user: string;
  /** When the answer was given. */
  created_at: string;
  /** When it was rated down (the latest rating). */
  rated_at: string;
  question: string;
  answer: string | null;
  answer_truncated: boolean;
  correction: string | null;
  citations: Citation[];
  model: { backend: string; id: string };
  prompt: { name: string; sha256: string };
}

/** Latest answers whose current rating (latest feedback row per response and user) is -1. */
export async function thumbsDown(store: Pick<Store, 'monitoring'>, limit: number): Promise<ThumbsDownItem[]> {
  const rows = await store.monitoring.thumbsDown(limit);
  return rows.map((r) => ({
    response_id: r.responseId,
    conversation_id: r.conversationId,
    user: r.userName,
    created_at: r.createdAt,
    rated_at: r.ratedAt,
    question: r.query,
    answer: r.answer === null ? null : r.answer.slice(0, THUMBS_DOWN_ANSWER_CHARS),
    answer_truncated: r.answer !== null && r.answer.length > THUMBS_DOWN_ANSWER_CHARS,
    correction: r.correction,
    citations: r.citations,
    model: { backend: r.modelBackend, id: r.modelId },
    prompt: { name: r.promptName, sha256: r.promptSha256 },
  }));
}

export interface IndexGeneration {
  generation: number;
  model_id: string;
  dimension: number;
  pooling: string;
  normalized: boolean;
  max_tokens: number;
  space: string;
  hnsw_m: number;
  hnsw_ef_construction: number;
  hnsw_ef_search: number;
  status: 'active' | 'building';
  created_at: string;
  activated_at: string | null;
  saved_corpus_version: number | null;
  /** Chunks with an embedding from this generation's model. */
  embedded_chunks: number;
}

export interface CorpusStatus {
  documents: number;
  deleted_documents: number;
  chunks: number;
  collections: Array<{ name: string; documents: number; chunks: number }>;
  corpus_version: number;
  /** The active index generation; null without embeddings (BM25 only). */
  embedding: (IndexGeneration & { vectors: number | null; file_lags_corpus: boolean }) | null;
  /** A generation being built by `reindex --model`, if any. */
  building: IndexGeneration | null;
  last_ingestion: {
    at: string | null;
    run: { started_at: string; finished_at: string | null; summary: Record<string, unknown> | null } | null;
  };
}

function toGeneration(g: IndexGenerationRecord): IndexGeneration {
  return {
    generation: g.generation,
    model_id: g.modelId,
    dimension: g.dimension,
    pooling: g.pooling,
    normalized: g.normalized,
    max_tokens: g.maxTokens,
    space: g.space,
    hnsw_m: g.hnswM,
    hnsw_ef_construction: g.hnswEfConstruction,
    hnsw_ef_search: g.hnswEfSearch,
    status: g.status,
    created_at: g.createdAt,
    activated_at: g.activatedAt,
    saved_corpus_version: g.savedCorpusVersion,
    embedded_chunks: g.embeddedChunks,
  };
}

/** The corpus status body. `liveVectors`: vectors in the loaded index (null when unknown). */
export async function corpusStatus(store: Pick<Store, 'monitoring'>, liveVectors: number | null): Promise<CorpusStatus> {
  const c = await store.monitoring.corpus();
  const active = c.generations.find((g) => g.status === 'active') ?? null;
  const building = c.generations.find((g) => g.status === 'building') ?? null;
  return {
    documents: c.documents,
    deleted_documents: c.deletedDocuments,
    chunks: c.chunks,
    collections: c.collections,
    corpus_version: c.corpusVersion,
    embedding: active
      ? {
          ...toGeneration(active),
          vectors: liveVectors,
          // The HNSW file is saved lazily; it lags SQLite between saves (the server catches up on load).
          file_lags_corpus: active.savedCorpusVersion !== c.corpusVersion,
        }
      : null,
    building: building ? toGeneration(building) : null,
    last_ingestion: {
      at: c.lastIngestAt,
      run: c.lastRun ? { started_at: c.lastRun.startedAt, finished_at: c.lastRun.finishedAt, summary: c.lastRun.summary } : null,
    },
  };
}

export interface OverviewBody {
  now: string;
  model: { backend: string; id: string; state: string } | null;
  /** Live generation queue of this process; null when the router was not given one. */
  queue: { depth: number; active: number | null } | null;
  recent: { minutes: number; requests: number; requests_per_minute: number | null; errors: number };
  totals: {
    users: number;
    conversations: number;
    responses: number;
    errors: number;
    feedback: number;
    thumbs_down: number;
    last_response_at: string | null;
    last_feedback_at: string | null;
  };
}

/** The overview body: live process state plus totals. */
export async function overview(deps: AdminDeps, nowMs: number): Promise<OverviewBody> {
  const recentFrom = new Date(nowMs - OVERVIEW_RECENT_MINUTES * MINUTE_MS).toISOString();
  const { recent, totals } = await deps.store.monitoring.overview(recentFrom);
  return {
    now: new Date(nowMs).toISOString(),
    model: deps.model ? { backend: deps.model.backend, id: deps.model.modelId, state: deps.model.status().state } : null,
    queue: deps.queueDepth ? { depth: deps.queueDepth(), active: deps.queueActive?.() ?? null } : null,
    recent: {
      minutes: OVERVIEW_RECENT_MINUTES,
      requests: recent.requests,
      requests_per_minute: round(recent.requests / OVERVIEW_RECENT_MINUTES, 3),
      errors: recent.errors,
    },
    totals: {
      users: totals.users,
      conversations: totals.conversations,
      responses: totals.responses,
      errors: totals.errors,
      feedback: totals.feedback,
      thumbs_down: totals.thumbsDown,
      last_response_at: totals.lastResponseAt,
      last_feedback_at: totals.lastFeedbackAt,
    },
  };
}

/** The admin router (all routes need an admin key). Mount after `authenticate`. */
export function adminRouter(deps: AdminDeps): Router {
  const now = deps.now ?? Date.now;
  const router = Router({ strict: true });
  router.use('/v1/admin', requireAdmin, (_req, res, next) => {
    // Admin data is per-request live and partly about other users: never cache it anywhere.
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  router.get('/v1/admin/overview', async (_req, res) => {
    res.json(await overview(deps, now()));
  });
  router.get('/v1/admin/timeseries', async (req, res) => {
    const q = parseQuery(timeseriesQuerySchema, req);
    res.json(await timeseries(deps.store, now(), q.minutes, q.bucket_minutes));
  });
  router.get('/v1/admin/thumbs-down', async (req, res) => {
    const q = parseQuery(thumbsDownQuerySchema, req);
    res.json({ items: await thumbsDown(deps.store, q.limit) });
  });
  router.get('/v1/admin/corpus', async (_req, res) => {
    res.json(await corpusStatus(deps.store, deps.vectors?.vectors() ?? null));
  });
  return router;
}
