/** SQLite implementation of {@link MonitoringStore} (every statement of this aggregate lives here). */
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
import type { SqliteConnection } from './connection.ts';
import { parseJsonOr } from './conversations.ts';

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
  user: string;
  response_id: string;
  conversation_id: string;
  created_at: string;
  query: string;
  answer: string | null;
  citations_json: string;
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
  normalized: number;
  max_tokens: number;
  space: string;
  hnsw_m: number;
  hnsw_ef_construction: number;
  hnsw_ef_search: number;
  status: 'active' | 'building';
  created_at: string;
  activated_at: string | null;
  saved_corpus_version: number | null;
}

export class SqliteMonitoringStore implements MonitoringStore {
  constructor(protected readonly c: SqliteConnection) {}

  /** A single number (count, max) from `sql`. */
  private scalar<T = number>(sql: string, ...params: unknown[]): T {
    return this.c.stmt<unknown[], T>(sql).pluck().get(...params) as T;
  }

  async overview(recentFrom: string): Promise<OverviewCounts> {
    return this.c.read(() => {
      const recent = this.c
        .stmt<[string], { requests: number; errors: number }>(
          `SELECT count(*) AS requests, coalesce(sum(status = 'error'), 0) AS errors FROM responses WHERE created_at >= ?`,
        )
        .get(recentFrom) ?? { requests: 0, errors: 0 };
      return {
        recent,
        totals: {
          users: this.scalar('SELECT count(*) FROM users WHERE revoked_at IS NULL'),
          conversations: this.scalar('SELECT count(*) FROM conversations'),
          responses: this.scalar('SELECT count(*) FROM responses'),
          errors: this.scalar("SELECT count(*) FROM responses WHERE status = 'error'"),
          feedback: this.scalar('SELECT count(*) FROM feedback'),
          thumbsDown: this.scalar('SELECT count(*) FROM feedback WHERE rating = -1'),
          lastResponseAt: this.scalar<string | null>('SELECT max(created_at) FROM responses'),
          lastFeedbackAt: this.scalar<string | null>('SELECT max(created_at) FROM feedback'),
        },
      };
    });
  }

  async timeseriesSamples(from: string, to: string, maxRows: number): Promise<TimeseriesSamples> {
    return this.c.read(() => {
      const rows = this.c
        .stmt<[string, string, number], SampleRow>(
          `SELECT created_at, status,
                  json_extract(timings_json, '$.features_ms') AS features_ms,
                  json_extract(timings_json, '$.retrieve_ms') AS retrieve_ms,
                  json_extract(timings_json, '$.generate_ms') AS generate_ms,
                  json_extract(timings_json, '$.first_token_ms') AS first_token_ms,
                  json_extract(timings_json, '$.total_ms') AS total_ms,
                  json_extract(retrieved_json, '$[0].score') AS top_score,
                  json_array_length(retrieved_json) AS retrieved
             FROM responses
            WHERE created_at >= ? AND created_at < ? AND json_valid(timings_json) AND json_valid(retrieved_json)
            ORDER BY created_at DESC
            LIMIT ?`,
        )
        .all(from, to, maxRows);
      const feedback = this.c
        .stmt<[string, string], { created_at: string; rating: number }>('SELECT created_at, rating FROM feedback WHERE created_at >= ? AND created_at < ?')
        .all(from, to);
      const rated = this.c
        .stmt<[string, string], { answers: number; rated: number | null }>(
          `SELECT count(*) AS answers, sum(EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id)) AS rated
             FROM responses r WHERE r.created_at >= ? AND r.created_at < ? AND r.status = 'ok'`,
        )
        .get(from, to);
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
    const rows = this.c
      .stmt<[number], ThumbsDownRow>(
        `SELECT f.created_at AS rated_at, f.correction, u.name AS user, r.id AS response_id, r.conversation_id,
                r.created_at, r.query, r.answer, r.citations_json, r.model_backend, r.model_id, r.prompt_name, r.prompt_sha256
           FROM feedback f
           JOIN responses r ON r.id = f.response_id
           JOIN users u ON u.id = f.user_id
          WHERE f.rating = -1
            AND f.id = (SELECT max(f2.id) FROM feedback f2 WHERE f2.response_id = f.response_id AND f2.user_id = f.user_id)
          ORDER BY f.id DESC
          LIMIT ?`,
      )
      .all(limit);
    return rows.map((r) => ({
      responseId: r.response_id,
      conversationId: r.conversation_id,
      userName: r.user,
      createdAt: r.created_at,
      ratedAt: r.rated_at,
      query: r.query,
      answer: r.answer,
      correction: r.correction,
      citations: parseJsonOr<StoredCitation[]>(r.citations_json, []),
      modelBackend: r.model_backend,
      modelId: r.model_id,
      promptName: r.prompt_name,
      promptSha256: r.prompt_sha256,
    }));
  }

  async corpus(): Promise<CorpusCounts> {
    return this.c.read(() => {
      const state = this.c.stmt<[], { version: number; last_ingest_at: string | null }>('SELECT version, last_ingest_at FROM corpus_state WHERE id = 1').get();
      const collections = this.c
        .stmt<[], { name: string; documents: number; chunks: number }>(
          `SELECT d.collection AS name, count(DISTINCT d.id) AS documents, count(c.id) AS chunks
             FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
            WHERE d.deleted_at IS NULL
            GROUP BY d.collection ORDER BY d.collection`,
        )
        .all();
      const lastRun = this.c
        .stmt<[], { started_at: string; finished_at: string | null; summary_json: string | null }>(
          'SELECT started_at, finished_at, summary_json FROM ingest_runs ORDER BY id DESC LIMIT 1',
        )
        .get();
      return {
        documents: this.scalar('SELECT count(*) FROM documents WHERE deleted_at IS NULL'),
        deletedDocuments: this.scalar('SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL'),
        chunks: this.scalar('SELECT count(*) FROM chunks'),
        collections,
        corpusVersion: state?.version ?? 0,
        lastIngestAt: state?.last_ingest_at ?? null,
        generations: this.generations(),
        lastRun: lastRun
          ? { startedAt: lastRun.started_at, finishedAt: lastRun.finished_at, summary: parseJsonOr<Record<string, unknown> | null>(lastRun.summary_json, null) }
          : null,
      };
    });
  }

  async health(): Promise<HealthCounts> {
    return this.c.read(() => ({
      documents: this.scalar('SELECT count(*) FROM documents WHERE deleted_at IS NULL'),
      chunks: this.scalar('SELECT count(*) FROM chunks'),
      activeGeneration: this.scalar<number | undefined>("SELECT generation FROM index_meta WHERE status = 'active'") ?? null,
    }));
  }

  private generations(): IndexGenerationRecord[] {
    const rows = this.c
      .stmt<[], GenerationRow>(
        `SELECT generation, model_id, dimension, pooling, normalized, max_tokens, space, hnsw_m, hnsw_ef_construction,
                hnsw_ef_search, status, created_at, activated_at, saved_corpus_version
           FROM index_meta WHERE status IN ('active', 'building') ORDER BY generation`,
      )
      .all();
    return rows.map((g) => ({
      generation: g.generation,
      modelId: g.model_id,
      dimension: g.dimension,
      pooling: g.pooling,
      normalized: g.normalized === 1,
      maxTokens: g.max_tokens,
      space: g.space,
      hnswM: g.hnsw_m,
      hnswEfConstruction: g.hnsw_ef_construction,
      hnswEfSearch: g.hnsw_ef_search,
      status: g.status,
      createdAt: g.created_at,
      activatedAt: g.activated_at,
      savedCorpusVersion: g.saved_corpus_version,
      embeddedChunks: this.scalar('SELECT count(*) FROM embeddings WHERE model_id = ?', g.model_id),
    }));
  }
}
