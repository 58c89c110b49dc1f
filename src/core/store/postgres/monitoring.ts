/**
 * PostgreSQL implementation of {@link MonitoringStore} (schema: migrations/postgres/030_corpus.sql
 * and 035_users_chat.sql). Same semantics as sqlite/monitoring.ts; each method reads one snapshot
 * (one statement, or a read-only REPEATABLE READ transaction). Timing fields read from the logged
 * JSON are numbers or null (a non-numeric value reads as null instead of failing the page).
 */
import type {
  CorpusCounts,
  HealthCounts,
  IndexGenerationRecord,
  MonitoringStore,
  OverviewCounts,
  ThumbsDownRecord,
  TimeseriesSamples,
} from '../monitoring.ts';
import type { ResponseStatus, StoredCitation } from '../predictions.ts';
import type { PostgresConnection } from './connection.ts';
import { snapshot } from './conversations.ts';

interface SampleRow {
  created_at: string;
  status: ResponseStatus;
  features_ms: number | null;
  retrieve_ms: number | null;
  generate_ms: number | null;
  first_token_ms: number | null;
  total_ms: number | null;
  top_score: number | null;
  retrieved: number;
}

interface ThumbsDownRow {
  rated_at: string;
  correction: string | null;
  user_name: string;
  response_id: string;
  conversation_id: string;
  created_at: string;
  query: string;
  answer: string | null;
  /** json column: parsed by pg. */
  citations_json: unknown;
  model_backend: string;
  model_id: string;
  prompt_name: string;
  prompt_sha256: string;
}

interface GenerationRow {
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
  embedded_chunks: number;
}

interface OverviewRow {
  recent_requests: number;
  recent_errors: number;
  users: number;
  conversations: number;
  responses: number;
  errors: number;
  feedback: number;
  thumbs_down: number;
  last_response_at: string | null;
  last_feedback_at: string | null;
}

/** SQL: the number at `path` (a json path expression such as `timings_json->'total_ms'`), or NULL when it is not a number. */
function jsonNumber(path: string): string {
  return `CASE WHEN json_typeof(${path}) = 'number' THEN (${path})::text::float8 END`;
}
const timing = (key: string) => jsonNumber(`CASE WHEN json_typeof(timings_json) = 'object' THEN timings_json->'${key}' END`);

const SQL_OVERVIEW = `SELECT
    (SELECT count(*) FROM responses WHERE created_at >= $1) AS recent_requests,
    (SELECT count(*) FROM responses WHERE created_at >= $1 AND status = 'error') AS recent_errors,
    (SELECT count(*) FROM users WHERE revoked_at IS NULL) AS users,
    (SELECT count(*) FROM conversations) AS conversations,
    (SELECT count(*) FROM responses) AS responses,
    (SELECT count(*) FROM responses WHERE status = 'error') AS errors,
    (SELECT count(*) FROM feedback) AS feedback,
    (SELECT count(*) FROM feedback WHERE rating = -1) AS thumbs_down,
    (SELECT max(created_at) FROM responses) AS last_response_at,
    (SELECT max(created_at) FROM feedback) AS last_feedback_at`;

const SQL_SAMPLES = `SELECT created_at, status,
    ${timing('features_ms')} AS features_ms,
    ${timing('retrieve_ms')} AS retrieve_ms,
    ${timing('generate_ms')} AS generate_ms,
    ${timing('first_token_ms')} AS first_token_ms,
    ${timing('total_ms')} AS total_ms,
    ${jsonNumber(`CASE WHEN json_typeof(retrieved_json) = 'array' AND json_typeof(retrieved_json->0) = 'object' THEN retrieved_json->0->'score' END`)} AS top_score,
    CASE WHEN json_typeof(retrieved_json) = 'array' THEN json_array_length(retrieved_json) ELSE 0 END AS retrieved
  FROM responses
  WHERE created_at >= $1 AND created_at < $2
  ORDER BY created_at DESC, seq DESC
  LIMIT $3`;

const SQL_THUMBS_DOWN = `SELECT f.created_at AS rated_at, f.correction, u.name AS user_name, r.id AS response_id, r.conversation_id,
       r.created_at, r.query, r.answer, r.citations_json, r.model_backend, r.model_id, r.prompt_name, r.prompt_sha256
  FROM feedback f
  JOIN responses r ON r.id = f.response_id
  JOIN users u ON u.id = f.user_id
  WHERE f.rating = -1
    AND f.id = (SELECT max(f2.id) FROM feedback f2 WHERE f2.response_id = f.response_id AND f2.user_id = f.user_id)
  ORDER BY f.id DESC
  LIMIT $1`;

const SQL_GENERATIONS = `SELECT m.generation, m.model_id, m.dimension, m.pooling, m.normalized, m.max_tokens, m.space, m.hnsw_m,
       m.hnsw_ef_construction, m.hnsw_ef_search, m.status, m.created_at, m.activated_at,
       (SELECT count(*) FROM embeddings e WHERE e.model_id = m.model_id) AS embedded_chunks
  FROM index_meta m WHERE m.status IN ('active', 'building') ORDER BY m.generation`;

function toGeneration(g: GenerationRow): IndexGenerationRecord {
  return {
    generation: g.generation,
    modelId: g.model_id,
    dimension: g.dimension,
    pooling: g.pooling,
    normalized: g.normalized,
    maxTokens: g.max_tokens,
    space: g.space,
    hnswM: g.hnsw_m,
    hnswEfConstruction: g.hnsw_ef_construction,
    hnswEfSearch: g.hnsw_ef_search,
    status: g.status,
    createdAt: g.created_at,
    activatedAt: g.activated_at,
    // The SQLite engine's legacy column (no longer written there either): this engine tracks the
    // feed position (saved_feed_seq) instead.
    savedCorpusVersion: null,
    embeddedChunks: g.embedded_chunks,
  };
}

export class PostgresMonitoringStore implements MonitoringStore {
  constructor(protected readonly c: PostgresConnection) {}

  async overview(recentFrom: string): Promise<OverviewCounts> {
    const r = (await this.c.one<OverviewRow>(SQL_OVERVIEW, [recentFrom]))!;
    return {
      recent: { requests: r.recent_requests, errors: r.recent_errors },
      totals: {
        users: r.users,
        conversations: r.conversations,
        responses: r.responses,
        errors: r.errors,
        feedback: r.feedback,
        thumbsDown: r.thumbs_down,
        lastResponseAt: r.last_response_at,
        lastFeedbackAt: r.last_feedback_at,
      },
    };
  }

  async timeseriesSamples(from: string, to: string, maxRows: number): Promise<TimeseriesSamples> {
    return snapshot(this.c, async (q) => {
      const rows = await q.rows<SampleRow>(SQL_SAMPLES, [from, to, maxRows]);
      const feedback = await q.rows<{ created_at: string; rating: number }>(
        'SELECT created_at, rating FROM feedback WHERE created_at >= $1 AND created_at < $2 ORDER BY id',
        [from, to],
      );
      const rated = await q.one<{ answers: number; rated: number }>(
        `SELECT count(*) AS answers, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id)) AS rated
           FROM responses r WHERE r.created_at >= $1 AND r.created_at < $2 AND r.status = 'ok'`,
        [from, to],
      );
      return {
        responses: rows.map((r) => ({
          createdAt: r.created_at,
          status: r.status,
          featuresMs: r.features_ms,
          retrieveMs: r.retrieve_ms,
          generateMs: r.generate_ms,
          firstTokenMs: r.first_token_ms,
          totalMs: r.total_ms,
          topScore: r.top_score,
          retrieved: r.retrieved,
        })),
        feedback: feedback.map((f) => ({ createdAt: f.created_at, rating: f.rating })),
        answers: rated?.answers ?? 0,
        ratedAnswers: rated?.rated ?? 0,
      };
    });
  }

  async thumbsDown(limit: number): Promise<ThumbsDownRecord[]> {
    const rows = await this.c.rows<ThumbsDownRow>(SQL_THUMBS_DOWN, [limit]);
    return rows.map((r) => ({
      responseId: r.response_id,
      conversationId: r.conversation_id,
      userName: r.user_name,
      createdAt: r.created_at,
      ratedAt: r.rated_at,
      query: r.query,
      answer: r.answer,
      correction: r.correction,
      citations: (r.citations_json ?? []) as StoredCitation[],
      modelBackend: r.model_backend,
      modelId: r.model_id,
      promptName: r.prompt_name,
      promptSha256: r.prompt_sha256,
    }));
  }

  async corpus(): Promise<CorpusCounts> {
    return snapshot(this.c, async (q) => {
      const head = (await q.one<{ documents: number; deleted: number; chunks: number; version: number | null; last_ingest_at: string | null }>(
        `SELECT (SELECT count(*) FROM documents WHERE deleted_at IS NULL) AS documents,
                (SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL) AS deleted,
                (SELECT count(*) FROM chunks) AS chunks,
                (SELECT version FROM corpus_state WHERE id = 1) AS version,
                (SELECT last_ingest_at FROM corpus_state WHERE id = 1) AS last_ingest_at`,
      ))!;
      const collections = await q.rows<{ name: string; documents: number; chunks: number }>(
        `SELECT d.collection AS name, count(DISTINCT d.id) AS documents, count(c.id) AS chunks
           FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
          WHERE d.deleted_at IS NULL
          GROUP BY d.collection ORDER BY d.collection COLLATE "C"`,
      );
      const lastRun = await q.one<{ started_at: string; finished_at: string | null; summary_json: unknown }>(
        'SELECT started_at, finished_at, summary_json FROM ingest_runs ORDER BY id DESC LIMIT 1',
      );
      const generations = await q.rows<GenerationRow>(SQL_GENERATIONS);
      return {
        documents: head.documents,
        deletedDocuments: head.deleted,
        chunks: head.chunks,
        collections,
        corpusVersion: head.version ?? 0,
        lastIngestAt: head.last_ingest_at,
        generations: generations.map(toGeneration),
        lastRun: lastRun
          ? { startedAt: lastRun.started_at, finishedAt: lastRun.finished_at, summary: (lastRun.summary_json ?? null) as Record<string, unknown> | null }
          : null,
      };
    });
  }

  async health(): Promise<HealthCounts> {
    const r = (await this.c.one<{ documents: number; chunks: number; active: number | null }>(
      `SELECT (SELECT count(*) FROM documents WHERE deleted_at IS NULL) AS documents,
              (SELECT count(*) FROM chunks) AS chunks,
              (SELECT generation FROM index_meta WHERE status = 'active') AS active`,
    ))!;
    return { documents: r.documents, chunks: r.chunks, activeGeneration: r.active };
  }
}
