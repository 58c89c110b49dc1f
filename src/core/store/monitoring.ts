/**
 * Read-only aggregates for the admin pages (traffic, latency, feedback, corpus status) and /healthz.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/monitoring.ts. Times are ISO-8601 UTC strings.
 */
import type { ResponseStatus, StoredCitation } from './predictions.ts';

/** One prediction-log row as the admin timeseries needs it. */
export interface ResponseSampleRecord {
  createdAt: string;
  status: ResponseStatus;
  featuresMs: number | null;
  retrieveMs: number | null;
  generateMs: number | null;
  /** Null for answers logged before this field existed, or with no generated text. */
  firstTokenMs: number | null;
  totalMs: number | null;
  /** Score of the best retrieved chunk; null when nothing was retrieved. */
  topScore: number | null;
  /** Chunks retrieved. */
  retrieved: number;
}

export interface FeedbackSampleRecord {
  createdAt: string;
  rating: number;
}

/** Everything of [from, to) the timeseries aggregates, read in one snapshot. */
export interface TimeseriesSamples {
  /** Newest first, at most `maxRows`. */
  responses: ResponseSampleRecord[];
  feedback: FeedbackSampleRecord[];
  /** 'ok' answers created in the window. */
  answers: number;
  /** Of those, answers with at least one rating (whenever rated). */
  ratedAnswers: number;
}

export interface OverviewCounts {
  /** Answers since `recentFrom`, and errors among them. */
  recent: { requests: number; errors: number };
  totals: {
    /** Live users. */
    users: number;
    conversations: number;
    responses: number;
    errors: number;
    feedback: number;
    thumbsDown: number;
    lastResponseAt: string | null;
    lastFeedbackAt: string | null;
  };
}

/** An answer whose current rating (latest feedback of its user) is -1. */
export interface ThumbsDownRecord {
  responseId: string;
  conversationId: string;
  userName: string;
  /** When the answer was given. */
  createdAt: string;
  /** When it was rated down. */
  ratedAt: string;
  query: string;
  answer: string | null;
  correction: string | null;
  citations: StoredCitation[];
  modelBackend: string;
  modelId: string;
  promptName: string;
  promptSha256: string;
}

/** One vector-index generation ('active' or 'building'). */
export interface IndexGenerationRecord {
  generation: number;
  modelId: string;
  dimension: number;
  pooling: string;
  normalized: boolean;
  maxTokens: number;
  space: string;
  hnswM: number;
  hnswEfConstruction: number;
  hnswEfSearch: number;
  status: 'active' | 'building';
  createdAt: string;
  activatedAt: string | null;
  savedCorpusVersion: number | null;
  /** Chunks with an embedding from this generation's model. */
  embeddedChunks: number;
}

export interface CorpusCounts {
  documents: number;
  deletedDocuments: number;
  chunks: number;
  collections: Array<{ name: string; documents: number; chunks: number }>;
  corpusVersion: number;
  lastIngestAt: string | null;
  /** Active and building generations, oldest first. */
  generations: IndexGenerationRecord[];
  /** The latest ingestion run; `summary` is its parsed summary (null when absent or unreadable). */
  lastRun: { startedAt: string; finishedAt: string | null; summary: Record<string, unknown> | null } | null;
}

export interface HealthCounts {
  /** Live documents. */
  documents: number;
  chunks: number;
  /** The active index generation, or null (BM25 only). */
  activeGeneration: number | null;
}

export interface MonitoringStore {
  /** Counts for the admin overview; `recentFrom`: start of the "recent" window. */
  overview(recentFrom: string): Promise<OverviewCounts>;
  /** Samples of [from, to): at most `maxRows` responses (the newest), every feedback row. */
  timeseriesSamples(from: string, to: string, maxRows: number): Promise<TimeseriesSamples>;
  /** The latest `limit` answers whose current rating is -1, newest rating first. */
  thumbsDown(limit: number): Promise<ThumbsDownRecord[]>;
  /** Documents, chunks, collections, index generations, last ingestion. */
  corpus(): Promise<CorpusCounts>;
  /** The cheap counts /healthz reports. */
  health(): Promise<HealthCounts>;
}
