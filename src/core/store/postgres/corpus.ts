/**
 * PostgreSQL implementation of {@link CorpusStore} (schema: migrations/postgres/030_corpus.sql).
 * Same semantics as the SQLite engine (sqlite/corpus.ts), with these engine-specific parts:
 * - full text: a weighted `tsvector` per chunk (title A, heading path B, text C) with a GIN index,
 *   queried with the SQLite engine's OR-ed terms through `websearch_to_tsquery` and ranked by Okapi
 *   BM25 computed in SQL from trigger-maintained term statistics (085_bm25.sql; higher is better);
 * - dense search: pgvector, one HNSW cosine index per embedding model (an expression + partial
 *   index, created with the model's generation), see {@link PostgresCorpusStore.searchVector};
 * - every write transaction takes the corpus lock (`mneme_lock_corpus()`) first, so the change feed's
 *   sequence numbers follow commit order across replicas (and no write deadlocks on it);
 * - large documents are staged in bounded transactions exactly as on SQLite: a staging copy
 *   (tombstoned, so nothing serves it) made visible in one short transaction.
 */
import { createHash, randomUUID } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { nowIso } from '../../clock.ts';
import type {
  ChunkMeta,
  ChunkRecord,
  CollectionSummary,
  ChunkText,
  CorpusChange,
  CorpusCounts,
  CorpusStore,
  DocumentListItem,
  DocumentListQuery,
  DocumentRef,
  EngineReport,
  FeedBounds,
  EfCalibration,
  IndexGeneration,
  LexicalCandidates,
  NewChunk,
  NewDocument,
  NewGeneration,
  ReplaceDocumentResult,
  ScoredChunkRef,
  SearchScope,
} from '../corpus.ts';
import { composeLexicalCandidates, excludeParam } from '../corpus.ts';
import { DOC_FTS_MAX_CHUNKS, ftsTerms, pruneTerms, termsToFtsQuery } from '../sqlite/fts-query.ts';
import type { PgQueries, PgTx, PostgresConnection } from './connection.ts';

/** Excluded collections as a text[] parameter, null when none (the SQL then skips the test). */
const excludeArray = (exclude: readonly string[] | undefined): string[] | null => (excludeParam(exclude) === null ? null : [...exclude!]);

/**
 * Most chunks written (or deleted) in one transaction (default 1000, as on SQLite). A document with
 * more is staged, so the corpus lock is never held for long.
 */
export const DOC_TX_MAX_CHUNKS = 1000;
/** Text-search configuration: English stemming and stopwords (the SQLite engine uses the porter stemmer). */
export const TS_CONFIG = 'english';
/** pgvector's HNSW limit for `vector` (dimensions); a larger model is searched exactly (no index). */
export const PGVECTOR_HNSW_MAX_DIMENSIONS = 2000;
/** pgvector's ceiling for hnsw.ef_search. */
export const PGVECTOR_MAX_EF_SEARCH = 1000;
/** How long a model's dimension and calibrated ef_search are reused before searchVector reads them again, in ms. */
export const MODEL_GENERATION_TTL_MS = 30_000;

const STAGING_PREFIX = 'staging:';
const REPLACED_PREFIX = 'replaced:';
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Float32Array → pgvector's text form `[x,y,…]` (each float32 printed exactly, read back exactly). */
export function vectorToPg(v: Float32Array): string {
  return `[${Array.prototype.join.call(v, ',')}]`;
}

/** pgvector's text form → Float32Array (the text is a JSON array of numbers). */
export function pgToVector(text: string): Float32Array {
  return Float32Array.from(JSON.parse(text) as number[]);
}

/** The HNSW index of one embedding model (a deterministic, identifier-safe name). */
export function hnswIndexName(modelId: string, dimension: number): string {
  return `embeddings_hnsw_${createHash('sha256').update(modelId).digest('hex').slice(0, 16)}_d${dimension}`;
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
  file: string;
  status: 'building' | 'active' | 'retired';
  created_at: string;
  activated_at: string | null;
  saved_feed_seq: number | null;
  calibrated_ef: number | null;
  calibrated_recall: number | null;
  calibrated_at: string | null;
  calibrated_vectors: number | null;
}

function toGeneration(r: GenerationRow): IndexGeneration {
  return {
    generation: r.generation,
    modelId: r.model_id,
    dimension: r.dimension,
    pooling: r.pooling,
    normalized: r.normalized,
    maxTokens: r.max_tokens,
    space: r.space,
    hnswM: r.hnsw_m,
    hnswEfConstruction: r.hnsw_ef_construction,
    hnswEfSearch: r.hnsw_ef_search,
    file: r.file,
    status: r.status,
    createdAt: r.created_at,
    activatedAt: r.activated_at,
    savedFeedSeq: r.saved_feed_seq,
    calibration:
      r.calibrated_ef === null || r.calibrated_recall === null || r.calibrated_at === null || r.calibrated_vectors === null
        ? null
        : { ef: r.calibrated_ef, recall: r.calibrated_recall, at: r.calibrated_at, vectors: Number(r.calibrated_vectors) },
  };
}

interface ScoredRow {
  id: number;
  score: number;
}

const SQL_LOCK = 'SELECT mneme_lock_corpus()';
/** Okapi BM25 term-frequency saturation (SQLite FTS5's default). */
export const BM25_K1 = 1.2;
/** Okapi BM25 length normalization, 0–1 (SQLite FTS5's default). */
export const BM25_B = 0.75;
/**
 * BM25 term frequency of a lexeme = Σ over its positions of its label's weight: title (A) 0.5, heading
 * path (B) 0.5, text (C) 1.0 (D, unused, 0.1), as the SQLite engine's bm25() column weights
 * weigh the same token in each column (BM25_WEIGHT_* in sqlite/corpus.ts).
 */
const BM25_TF = `CASE w WHEN 'A' THEN ${0.5} WHEN 'B' THEN ${0.5} WHEN 'C' THEN ${1.0} ELSE ${0.1} END`;

/**
 * Okapi BM25 over one scope of full text (migrations/postgres/085_bm25.sql): candidates are the rows
 * matching the OR-ed tsquery ($1, through the GIN index; `candidates` selects `id, doc, tsv, tsv_len`
 * from them), scored Σ_t idf(t)·tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen)) over the query's
 * lexemes (to_tsvector of the terms, $4), idf(t) = ln(1 + (N − df + 0.5)/(df + 0.5)) from the scope's
 * term statistics (always positive; FTS5's ln((N − df + 0.5)/(df + 0.5)) floored at 1e-6 was
 * measured too: document list hit@1 0.588 vs 0.618 on the PostgreSQL-manual questions). Rows
 * `id, doc, score`, higher is better.
 */
function bm25Scored(scope: { stats: 'chunk' | 'document'; terms: string; candidates: string }): string {
  return `WITH q AS (SELECT w FROM websearch_to_tsquery('${TS_CONFIG}', $1) AS w WHERE numnode(w) > 0),
  st AS (SELECT n::float8 AS n, greatest(total_len::float8 / greatest(n, 1), 1) AS avglen FROM corpus_stats WHERE scope = '${scope.stats}'),
  ql AS MATERIALIZED (SELECT t.lexeme, ln(1 + (st.n - t.df + 0.5) / (t.df + 0.5)) AS idf
    FROM (SELECT DISTINCT u.lexeme FROM unnest(to_tsvector('${TS_CONFIG}', $4::text)) AS u) AS l
    JOIN ${scope.terms} t ON t.lexeme = l.lexeme CROSS JOIN st),
  cand AS MATERIALIZED (${scope.candidates})
  SELECT cand.id AS id, cand.doc AS doc,
    sum(f.idf * f.tf * ${BM25_K1 + 1} / (f.tf + ${BM25_K1} * (1 - ${BM25_B} + ${BM25_B} * cand.tsv_len / st.avglen)))::float8 AS score
  FROM cand CROSS JOIN st
  CROSS JOIN LATERAL (SELECT ql.idf, (SELECT sum(${BM25_TF}) FROM unnest(u.weights) AS w) AS tf
    FROM unnest(cand.tsv) AS u JOIN ql ON ql.lexeme = u.lexeme OFFSET 0) AS f
  GROUP BY cand.id, cand.doc`;
}
/** Per term of $1 (in order): its df (the smallest of its lexemes' chunk df, 0 when unknown) and the chunk count. */
const SQL_TERM_DF = `SELECT coalesce((SELECT min(ts.df) FROM unnest(to_tsvector('${TS_CONFIG}', t.term)) AS u JOIN term_stats ts ON ts.lexeme = u.lexeme), 0) AS df,
    (SELECT n FROM corpus_stats WHERE scope = 'chunk') AS total
  FROM unnest($1::text[]) WITH ORDINALITY AS t(term, i) ORDER BY t.i`;
/**
 * searchText ($1 OR-ed query, $2 limit, $3 collection or null, $4 the terms, $5 excluded collections
 * or null: issue 14's access control, applied to the candidates before scoring): live chunks, best first.
 */
const SQL_SEARCH_TEXT = `${bm25Scored({
  stats: 'chunk',
  terms: 'term_stats',
  candidates: `SELECT c.id, c.document_id AS doc, c.tsv, c.tsv_len FROM q JOIN chunks c ON c.tsv @@ q.w JOIN documents d ON d.id = c.document_id
    WHERE d.deleted_at IS NULL AND ($3::text IS NULL OR d.collection = $3::text) AND ($5::text[] IS NULL OR d.collection <> ALL($5::text[]))`,
})}
  ORDER BY score DESC, id LIMIT $2`;
/** searchDocuments (parameters as SQL_SEARCH_TEXT): live documents by their whole text, best first. */
const SQL_SEARCH_DOCUMENTS = `${bm25Scored({
  stats: 'document',
  terms: 'document_term_stats',
  candidates: `SELECT d.id, d.id AS doc, d.tsv, d.tsv_len FROM q JOIN documents d ON d.tsv @@ q.w
    WHERE d.deleted_at IS NULL AND ($3::text IS NULL OR d.collection = $3::text) AND ($5::text[] IS NULL OR d.collection <> ALL($5::text[]))`,
})}
  ORDER BY score DESC, id LIMIT $2`;
/**
 * bestChunks ($1 OR-ed query, $2 document ids, $3 unused, $4 the terms): per document its chunk with
 * the best chunk-level BM25 (as searchText scores it, so the document list and the chunk list agree).
 */
const SQL_BEST_CHUNKS = `SELECT DISTINCT ON (s.doc) s.doc AS "documentId", s.id AS "chunkId" FROM (${bm25Scored({
  stats: 'chunk',
  terms: 'term_stats',
  candidates: `SELECT c.id, c.document_id AS doc, c.tsv, c.tsv_len FROM q JOIN chunks c ON c.tsv @@ q.w
    WHERE c.document_id = ANY($2::bigint[]) AND c.ord < ${DOC_FTS_MAX_CHUNKS} AND $3::text IS NULL`,
})}) AS s
  ORDER BY s.doc, s.score DESC, s.id`;
const SQL_DOCUMENT_ITEM = `SELECT d.id AS id, d.collection AS collection, d.title AS title, d.source_uri AS "sourceUri", d.kind AS kind,
    d.bytes AS bytes, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks, d.ingested_at AS "ingestedAt", d.updated_at AS "updatedAt"
  FROM documents d`;
/** listDocuments ($1 collection, $2 before id, $3 limit, $4 LIKE pattern, $5 full-text query or null, $6 excluded collections or null). */
const SQL_LIST_DOCUMENTS = `${SQL_DOCUMENT_ITEM}
  WHERE d.deleted_at IS NULL AND ($1::text IS NULL OR d.collection = $1::text) AND ($2::bigint IS NULL OR d.id < $2::bigint)
    AND ($6::text[] IS NULL OR d.collection <> ALL($6::text[]))
    AND ($4::text IS NULL OR d.title ILIKE $4::text OR d.source_uri ILIKE $4::text
         OR ($5::text IS NOT NULL AND d.tsv @@ websearch_to_tsquery('${TS_CONFIG}', $5::text)))
  ORDER BY d.id DESC LIMIT $3`;

/** `%text%` for (I)LIKE with its wildcards escaped (PostgreSQL's default escape is backslash). */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

const SQL_INSERT_CHUNKS = `INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256, tsv)
  SELECT $1, u.ord, u.text, u.heading_path, u.token_count, u.sha, mneme_chunk_tsv(t.title, u.heading_path, u.text)
  FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::text[]) AS u(ord, text, heading_path, token_count, sha)
  CROSS JOIN (SELECT title FROM documents WHERE id = $1) AS t
  RETURNING id, ord`;
const SQL_INSERT_VECTORS = `INSERT INTO embeddings (chunk_id, model_id, vector)
  SELECT u.id, $1, u.v::vector FROM unnest($2::bigint[], $3::text[]) AS u(id, v)
  ON CONFLICT (chunk_id, model_id) DO UPDATE SET vector = excluded.vector`;

export class PostgresCorpusStore implements CorpusStore {
  readonly nativeVectorSearch = true;
  /**
   * Per model: its vectors' dimension (fixed per model) and the default ef_search, from its latest
   * generation (read at most every MODEL_GENERATION_TTL_MS, so a calibration another process records
   * reaches this replica's searches; or created here). Saves a round trip per dense search.
   */
  private readonly models = new Map<string, { dimension: number; efSearch: number; atMs: number }>();

  constructor(private readonly c: PostgresConnection) {}

  /** One corpus write transaction: the corpus lock first, then `fn`. */
  private write<T>(fn: (q: PgTx) => Promise<T>): Promise<T> {
    return this.c.tx(async (q) => {
      await q.one(SQL_LOCK);
      return fn(q);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // documents

  async findDocument(collection: string, sourceUri: string): Promise<DocumentRef | null> {
    const r = await this.c.one<{ id: number; content_sha256: string; deleted_at: string | null }>(
      'SELECT id, content_sha256, deleted_at FROM documents WHERE collection = $1 AND source_uri = $2',
      [collection, sourceUri],
    );
    return r ? { id: r.id, contentSha256: r.content_sha256, deletedAt: r.deleted_at } : null;
  }

  async vectorsByContentHash(documentId: number, modelId: string): Promise<Map<string, Float32Array>> {
    const rows = await this.c.rows<{ h: string; vector: string }>(
      'SELECT c.content_sha256 AS h, e.vector::text AS vector FROM chunks c JOIN embeddings e ON e.chunk_id = c.id AND e.model_id = $1 WHERE c.document_id = $2',
      [modelId, documentId],
    );
    return new Map(rows.map((r) => [r.h, pgToVector(r.vector)]));
  }

  async replaceDocument(doc: NewDocument, chunks: NewChunk[], existing: DocumentRef | null, modelId: string | null): Promise<ReplaceDocumentResult> {
    if (chunks.length > DOC_TX_MAX_CHUNKS) return this.replaceStaged(doc, chunks, existing, modelId);
    return this.write(async (q) => {
      let documentId: number;
      let removed: number[] = [];
      if (existing) {
        documentId = existing.id;
        removed = (await q.rows<{ id: number }>('DELETE FROM chunks WHERE document_id = $1 RETURNING id', [documentId])).map((r) => r.id).sort((a, b) => a - b);
        await q.run(
          'UPDATE documents SET content_sha256 = $1, title = $2, kind = $3, bytes = $4, updated_at = $5, deleted_at = NULL, weight = $7 WHERE id = $6',
          [doc.contentSha256, doc.title, doc.kind, doc.bytes, nowIso(), documentId, doc.weight ?? 1],
        );
      } else {
        documentId = await this.insertDocument(q, doc, doc.sourceUri, null);
      }
      const vectorsAdded = await this.insertChunks(q, documentId, chunks, modelId);
      return { documentId, chunksAdded: chunks.length, chunksDeleted: removed.length, vectorsAdded, chunkIdsRemoved: removed };
    });
  }

  /** Large document: staging copy written in bounded transactions, then one short visibility flip. */
  private async replaceStaged(doc: NewDocument, chunks: NewChunk[], existing: DocumentRef | null, modelId: string | null): Promise<ReplaceDocumentResult> {
    const stagingUri = `${STAGING_PREFIX}${randomUUID()}:${doc.sourceUri}`;
    const documentId = await this.write((q) => this.insertDocument(q, doc, stagingUri, nowIso()));
    const vectorsAdded: Array<[number, Float32Array]> = [];
    for (let i = 0; i < chunks.length; i += DOC_TX_MAX_CHUNKS) {
      const slice = chunks.slice(i, i + DOC_TX_MAX_CHUNKS);
      vectorsAdded.push(...(await this.write((q) => this.insertChunks(q, documentId, slice, modelId))));
      await yieldToEventLoop();
    }
    await this.write(async (q) => {
      if (existing) {
        // The old row keeps its id for old logs, under a name that frees (collection, source_uri).
        await q.run('UPDATE documents SET source_uri = $1, deleted_at = $2 WHERE id = $3', [`${REPLACED_PREFIX}${existing.id}:${doc.sourceUri}`, nowIso(), existing.id]);
      }
      await q.run('UPDATE documents SET source_uri = $1, deleted_at = NULL WHERE id = $2', [doc.sourceUri, documentId]);
    });
    const chunkIdsRemoved = existing ? await this.deleteChunksBounded(existing.id) : [];
    return { documentId, chunksAdded: chunks.length, chunksDeleted: chunkIdsRemoved.length, vectorsAdded, chunkIdsRemoved };
  }

  private async insertDocument(q: PgQueries, doc: NewDocument, sourceUri: string, deletedAt: string | null): Promise<number> {
    const now = nowIso();
    const r = await q.one<{ id: number }>(
      `INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at, deleted_at, weight)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9) RETURNING id`,
      [doc.collection, sourceUri, doc.contentSha256, doc.title, doc.kind, doc.bytes, now, deletedAt, doc.weight ?? 1],
    );
    return r!.id;
  }

  /** Inside a write transaction: one statement for the chunks, one for their vectors. */
  private async insertChunks(q: PgQueries, documentId: number, chunks: NewChunk[], modelId: string | null): Promise<Array<[number, Float32Array]>> {
    if (chunks.length === 0) return [];
    const ids = await q.rows<{ id: number; ord: number }>(SQL_INSERT_CHUNKS, [
      documentId,
      chunks.map((ch) => ch.ord),
      chunks.map((ch) => ch.text),
      chunks.map((ch) => ch.headingPath),
      chunks.map((ch) => ch.tokenCount),
      chunks.map((ch) => ch.contentSha256),
    ]);
    const idByOrd = new Map(ids.map((r) => [r.ord, r.id]));
    if (modelId === null) return [];
    const added: Array<[number, Float32Array]> = [];
    for (const ch of chunks) if (ch.vector) added.push([idByOrd.get(ch.ord)!, ch.vector]);
    added.sort((a, b) => a[0] - b[0]);
    if (added.length > 0) await q.run(SQL_INSERT_VECTORS, [modelId, added.map(([id]) => id), added.map(([, v]) => vectorToPg(v))]);
    return added;
  }

  /** Deletes a document's chunks DOC_TX_MAX_CHUNKS per transaction; returns their ids. */
  private async deleteChunksBounded(documentId: number): Promise<number[]> {
    const removed: number[] = [];
    for (;;) {
      const ids = await this.write(async (q) =>
        (
          await q.rows<{ id: number }>(
            'DELETE FROM chunks WHERE id IN (SELECT id FROM chunks WHERE document_id = $1 ORDER BY id LIMIT $2) RETURNING id',
            [documentId, DOC_TX_MAX_CHUNKS],
          )
        ).map((r) => r.id),
      );
      removed.push(...ids.sort((a, b) => a - b));
      if (ids.length < DOC_TX_MAX_CHUNKS) return removed;
      await yieldToEventLoop();
    }
  }

  async liveDocuments(collection: string): Promise<Array<{ id: number; sourceUri: string }>> {
    return this.c.rows('SELECT id, source_uri AS "sourceUri" FROM documents WHERE collection = $1 AND deleted_at IS NULL ORDER BY id', [collection]);
  }

  async deleteDocument(documentId: number): Promise<number[]> {
    // Tombstone first (one short transaction: readers stop seeing it at once), then the chunks.
    await this.write((q) => q.run('UPDATE documents SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL', [nowIso(), documentId]));
    return this.deleteChunksBounded(documentId);
  }

  async cleanupInterrupted(): Promise<number[]> {
    const leftovers = await this.c.rows<{ id: number; source_uri: string }>(
      `SELECT d.id, d.source_uri FROM documents d
       WHERE d.deleted_at IS NOT NULL AND (d.source_uri LIKE '${STAGING_PREFIX}%' OR EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id))
       ORDER BY d.id`,
    );
    const removed: number[] = [];
    for (const d of leftovers) {
      removed.push(...(await this.deleteChunksBounded(d.id)));
      if (d.source_uri.startsWith(STAGING_PREFIX)) await this.write((q) => q.run('DELETE FROM documents WHERE id = $1', [d.id]));
    }
    return removed;
  }

  async chunkSources(collection: string): Promise<Array<{ id: number; sourceUri: string }>> {
    return this.c.rows(
      'SELECT c.id AS id, d.source_uri AS "sourceUri" FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = $1 AND d.deleted_at IS NULL ORDER BY c.id',
      [collection],
    );
  }

  async startIngestRun(): Promise<number> {
    return (await this.c.one<{ id: number }>('INSERT INTO ingest_runs (started_at) VALUES ($1) RETURNING id', [nowIso()]))!.id;
  }

  async finishIngestRun(id: number, summary: unknown): Promise<void> {
    const now = nowIso();
    await this.c.tx(async (q) => {
      await q.run('UPDATE ingest_runs SET finished_at = $1, summary_json = $2::jsonb WHERE id = $3', [now, JSON.stringify(summary ?? null), id]);
      await q.run('UPDATE corpus_state SET last_ingest_at = $1 WHERE id = 1', [now]);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // embeddings

  async chunksMissingEmbedding(modelId: string, afterId: number, limit: number): Promise<ChunkText[]> {
    return this.c.rows(
      `SELECT c.id AS id, c.text AS text, c.heading_path AS "headingPath" FROM chunks c
       WHERE c.id > $1 AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = $2)
       ORDER BY c.id LIMIT $3`,
      [afterId, modelId, limit],
    );
  }

  async addEmbeddings(modelId: string, rows: Array<[number, Float32Array]>): Promise<number> {
    if (rows.length === 0) return 0;
    const sorted = [...rows].sort((a, b) => a[0] - b[0]);
    // A chunk replaced meanwhile by another writer is simply skipped (the join finds no chunk).
    return this.write((q) =>
      q.run(
        `INSERT INTO embeddings (chunk_id, model_id, vector)
         SELECT c.id, $1, u.v::vector FROM unnest($2::bigint[], $3::text[]) AS u(id, v) JOIN chunks c ON c.id = u.id
         ON CONFLICT (chunk_id, model_id) DO NOTHING`,
        [modelId, sorted.map(([id]) => id), sorted.map(([, v]) => vectorToPg(v))],
      ),
    );
  }

  async embeddingCount(modelId: string): Promise<number> {
    return (await this.c.one<{ n: number }>('SELECT count(*) AS n FROM embeddings WHERE model_id = $1', [modelId]))?.n ?? 0;
  }

  async embeddingsPage(modelId: string, afterId: number, limit: number): Promise<Array<[number, Float32Array]>> {
    const rows = await this.c.rows<{ chunk_id: number; vector: string }>(
      'SELECT chunk_id, vector::text AS vector FROM embeddings WHERE model_id = $1 AND chunk_id > $2 ORDER BY chunk_id LIMIT $3',
      [modelId, afterId, limit],
    );
    return rows.map((r) => [r.chunk_id, pgToVector(r.vector)]);
  }

  async embeddedChunkIds(modelId: string): Promise<Set<number>> {
    const rows = await this.c.rows<{ id: number }>('SELECT chunk_id AS id FROM embeddings WHERE model_id = $1', [modelId]);
    return new Set(rows.map((r) => r.id));
  }

  async vectorsOf(modelId: string, chunkIds: readonly number[]): Promise<Map<number, Float32Array>> {
    if (chunkIds.length === 0) return new Map();
    const rows = await this.c.rows<{ id: number; vector: string }>(
      'SELECT chunk_id AS id, vector::text AS vector FROM embeddings WHERE model_id = $1 AND chunk_id = ANY($2::bigint[])',
      [modelId, chunkIds],
    );
    return new Map(rows.map((r) => [r.id, pgToVector(r.vector)]));
  }

  // ---------------------------------------------------------------------------------------------
  // index generations

  async activeGeneration(): Promise<IndexGeneration | null> {
    const r = await this.c.one<GenerationRow>("SELECT * FROM index_meta WHERE status = 'active'");
    return r ? toGeneration(r) : null;
  }

  async buildingGeneration(modelId: string): Promise<IndexGeneration | null> {
    const r = await this.c.one<GenerationRow>("SELECT * FROM index_meta WHERE status = 'building' AND model_id = $1 ORDER BY generation DESC LIMIT 1", [modelId]);
    return r ? toGeneration(r) : null;
  }

  async generations(status: IndexGeneration['status']): Promise<IndexGeneration[]> {
    return (await this.c.rows<GenerationRow>('SELECT * FROM index_meta WHERE status = $1 ORDER BY generation', [status])).map(toGeneration);
  }

  /**
   * Records the generation and creates its model's HNSW index (cosine; `m`, `ef_construction` from
   * `g`) unless the model has one already. Building it locks embeddings against writes meanwhile:
   * instant for a new model (no vectors yet), proportional to its vectors otherwise.
   * @throws pgvector's error when `g.hnswM`/`g.hnswEfConstruction` are outside its limits
   */
  async createGeneration(g: NewGeneration, status: 'building' | 'active'): Promise<IndexGeneration> {
    return this.write(async (q) => {
      const now = nowIso();
      const r = await q.one<{ generation: number }>(
        `INSERT INTO index_meta (model_id, dimension, pooling, normalized, max_tokens, space, hnsw_m, hnsw_ef_construction,
           hnsw_ef_search, file, status, created_at, activated_at)
         VALUES ($1, $2, $3, $4, $5, 'cosine', $6, $7, $8, '', $9, $10, $11) RETURNING generation`,
        [g.modelId, g.dimension, g.pooling, g.normalized, g.maxTokens, g.hnswM, g.hnswEfConstruction, g.hnswEfSearch, status, now, status === 'active' ? now : null],
      );
      const gen = r!.generation;
      const row = await q.one<GenerationRow>('UPDATE index_meta SET file = $1 WHERE generation = $2 RETURNING *', [path.join('index', `hnsw-g${gen}.bin`), gen]);
      await this.createModelIndex(q, g);
      this.models.set(g.modelId, { dimension: g.dimension, efSearch: g.hnswEfSearch, atMs: Date.now() });
      return toGeneration(row!);
    });
  }

  private async createModelIndex(q: PgTx, g: NewGeneration): Promise<void> {
    if (!Number.isInteger(g.dimension) || g.dimension < 1 || g.dimension > PGVECTOR_HNSW_MAX_DIMENSIONS) return;
    const m = Math.trunc(g.hnswM);
    const efc = Math.trunc(g.hnswEfConstruction);
    await q.exec(
      `CREATE INDEX IF NOT EXISTS ${pg.escapeIdentifier(hnswIndexName(g.modelId, g.dimension))} ON embeddings
       USING hnsw ((vector::vector(${g.dimension})) vector_cosine_ops) WITH (m = ${m}, ef_construction = ${efc})
       WHERE model_id = ${pg.escapeLiteral(g.modelId)}`,
    );
  }

  async activateGeneration(generation: number): Promise<IndexGeneration | null> {
    return this.write(async (q) => {
      const old = await q.one<GenerationRow>("SELECT * FROM index_meta WHERE status = 'active'");
      const next = await q.one<GenerationRow>('SELECT * FROM index_meta WHERE generation = $1', [generation]);
      if (old) {
        await q.run("UPDATE index_meta SET status = 'retired' WHERE generation = $1", [old.generation]);
        if (next && old.model_id !== next.model_id) {
          await q.run('DELETE FROM embeddings WHERE model_id = $1', [old.model_id]);
          await q.exec(`DROP INDEX IF EXISTS ${pg.escapeIdentifier(hnswIndexName(old.model_id, old.dimension))}`);
        }
      }
      await q.run("UPDATE index_meta SET status = 'active', activated_at = $1 WHERE generation = $2", [nowIso(), generation]);
      return old ? toGeneration(old) : null;
    });
  }

  async recordIndexSaved(generation: number, feedSeq: number): Promise<void> {
    await this.c.run('UPDATE index_meta SET saved_feed_seq = $1 WHERE generation = $2', [feedSeq, generation]);
  }

  /**
   * ANALYZE of the corpus tables (GIN indexes need no merge: autovacuum flushes their pending lists).
   * Without statistics for a bulk load's rows, the planner guesses a few hundred embeddings per model
   * and sorts them all by distance instead of walking the HNSW index: exact, and at 100k vectors
   * ~40× slower than the index (bench/README.md, "pgvector's ef calibrated"). Autovacuum analyzes
   * eventually, when it is on; an ingest should not wait for it.
   */
  async optimizeFullText(): Promise<void> {
    await this.c.run('ANALYZE documents, chunks, embeddings');
  }

  async recordCalibration(generation: number, k: EfCalibration): Promise<void> {
    await this.c.run('UPDATE index_meta SET calibrated_ef = $1, calibrated_recall = $2, calibrated_at = $3, calibrated_vectors = $4 WHERE generation = $5', [
      k.ef,
      k.recall,
      k.at,
      k.vectors,
      generation,
    ]);
    // searchVector's default ef follows the calibration from the next query on.
    this.models.clear();
  }

  async vectorWorkPending(configuredModel: string | null): Promise<boolean> {
    if (configuredModel === null) return false;
    const meta = await this.activeGeneration();
    if (!meta) return (await this.c.one<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM chunks) AS any'))?.any ?? false;
    // No index file to lag behind: pgvector's index is part of the database.
    if (meta.modelId !== configuredModel) return true;
    const r = await this.c.one<{ any: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = $1)) AS any',
      [meta.modelId],
    );
    return r?.any ?? false;
  }

  // ---------------------------------------------------------------------------------------------
  // retrieval

  /**
   * Full text over live chunks, best first: the query's terms OR-ed (as on SQLite: see
   * sqlite/fts-query.ts), each a phrase for compounds such as "e-417"; score = Okapi BM25 (see
   * bm25Sql: BM25_K1, BM25_B, weights title 0.5, heading 0.5, text 1.0). [] when nothing searchable remains (punctuation only, or only stopwords).
   */
  async searchText(query: string, opts: SearchScope & { limit: number }): Promise<ScoredChunkRef[]> {
    const terms = await this.searchTerms(query);
    const match = termsToFtsQuery(terms);
    if (match === null) return [];
    const rows = await this.c.rows<ScoredRow>(SQL_SEARCH_TEXT, [match, opts.limit, opts.collection ?? null, terms.join(' '), excludeArray(opts.excludeCollections)]);
    return rows.map((r) => ({ chunkId: r.id, score: r.score }));
  }

  /**
   * The query's terms after document-frequency pruning (fts-query.ts pruneTerms, as the SQLite
   * engine prunes): a term's df is the smallest df of its lexemes in term_stats (a phrase occurs in
   * no more chunks than its rarest word; 0 = unknown, kept); the chunk count from corpus_stats.
   */
  private async searchTerms(query: string): Promise<string[]> {
    const terms = ftsTerms(query);
    if (terms.length <= 1) return terms;
    const rows = await this.c.rows<{ df: number; total: number }>(SQL_TERM_DF, [terms]);
    const df = rows.map((r) => Number(r.df));
    const total = Number(rows[0]?.total ?? 0);
    // A term in more than half of the chunks (FTS5 gives it idf 1e-6: nothing) is dropped while a
    // rarer term remains (pruneTerms, PRUNE_ZERO_IDF_SHARE): scoring its postings scans most of the
    // corpus (4.3 s for "notes lirilex" at 100k). When all are such terms, the rarest one is searched.
    return pruneTerms(terms, df, total).terms;
  }

  async searchDocuments(query: string, opts: SearchScope & { limit: number }): Promise<Array<{ documentId: number; score: number }>> {
    const terms = await this.searchTerms(query);
    const match = termsToFtsQuery(terms);
    if (match === null) return [];
    const rows = await this.c.rows<ScoredRow>(SQL_SEARCH_DOCUMENTS, [match, opts.limit, opts.collection ?? null, terms.join(' '), excludeArray(opts.excludeCollections)]);
    return rows.map((r) => ({ documentId: r.id, score: r.score }));
  }

  async bestChunks(query: string, documentIds: readonly number[]): Promise<Map<number, number>> {
    const terms = await this.searchTerms(query);
    const match = termsToFtsQuery(terms);
    if (match === null || documentIds.length === 0) return new Map();
    const rows = await this.c.rows<{ documentId: number; chunkId: number }>(SQL_BEST_CHUNKS, [match, documentIds, null, terms.join(' ')]);
    return new Map(rows.map((r) => [r.documentId, r.chunkId]));
  }

  /**
   * Dense search with pgvector: cosine over `modelId`'s vectors through its HNSW index (exact when
   * the model has no index), best first, score = cosine similarity. `hnsw.iterative_scan =
   * relaxed_order` lets a collection-filtered (or tombstone-filtered) search keep scanning until
   * `limit` rows pass the filter; the rows are re-sorted by exact distance.
   * @param opts.efSearch HNSW candidate list (default: the model's generation's hnswEfSearch), raised
   * to `limit` and capped at PGVECTOR_MAX_EF_SEARCH
   */
  async searchVector(modelId: string, vector: Float32Array, opts: SearchScope & { limit: number; efSearch?: number | undefined }): Promise<ScoredChunkRef[]> {
    if (opts.limit <= 0 || vector.length === 0) return [];
    const gen = await this.modelGeneration(modelId);
    const dim = gen?.dimension ?? vector.length;
    if (vector.length !== dim) return [];
    const ef = Math.min(PGVECTOR_MAX_EF_SEARCH, Math.max(opts.limit, Math.trunc(opts.efSearch ?? gen?.efSearch ?? opts.limit)));
    // The model id is a literal (not a parameter) so the planner can match the partial index.
    const vec = `(e.vector::vector(${dim}))`;
    const sql = `WITH r AS MATERIALIZED (
        SELECT e.chunk_id AS id, ${vec} <=> $1::vector(${dim}) AS distance
        FROM embeddings e JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id
        WHERE e.model_id = ${pg.escapeLiteral(modelId)} AND d.deleted_at IS NULL AND ($3::text IS NULL OR d.collection = $3::text)
          AND ($4::text[] IS NULL OR d.collection <> ALL($4::text[]))
        ORDER BY ${vec} <=> $1::vector(${dim}) LIMIT $2)
      SELECT id, 1 - distance AS score FROM r ORDER BY distance, id`;
    return this.c.tx(async (q) => {
      await q.one("SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)", [String(ef)]);
      const rows = await q.dynamic<ScoredRow>(sql, [vectorToPg(vector), opts.limit, opts.collection ?? null, excludeArray(opts.excludeCollections)]);
      return rows.map((r) => ({ chunkId: r.id, score: r.score }));
    });
  }

  /** Dimension and default ef_search of `modelId` (cached), null when it has no generation. */
  private async modelGeneration(modelId: string): Promise<{ dimension: number; efSearch: number } | null> {
    const known = this.models.get(modelId);
    if (known && Date.now() - known.atMs < MODEL_GENERATION_TTL_MS) return known;
    const r = await this.c.one<{ dimension: number; ef: number }>(
      'SELECT dimension, COALESCE(calibrated_ef, hnsw_ef_search) AS ef FROM index_meta WHERE model_id = $1 ORDER BY generation DESC LIMIT 1',
      [modelId],
    );
    if (!r) return null;
    const found = { dimension: r.dimension, efSearch: r.ef, atMs: Date.now() };
    this.models.set(modelId, found);
    return found;
  }

  async lexicalCandidates(query: string, opts: SearchScope & { limit: number; documentLimit: number }): Promise<LexicalCandidates> {
    return composeLexicalCandidates(this, query, opts);
  }

  async chunkMeta(ids: readonly number[]): Promise<ChunkMeta[]> {
    if (ids.length === 0) return [];
    return this.c.rows(
      `SELECT c.id AS "chunkId", c.document_id AS "documentId", d.collection AS collection, d.weight AS weight
       FROM chunks c JOIN documents d ON d.id = c.document_id
       WHERE c.id = ANY($1::bigint[]) AND d.deleted_at IS NULL`,
      [ids],
    );
  }

  async chunkRecords(ids: readonly number[]): Promise<ChunkRecord[]> {
    if (ids.length === 0) return [];
    return this.c.rows(
      `SELECT c.id AS "chunkId", c.document_id AS "documentId", d.collection AS collection, d.source_uri AS source, d.title AS title,
              c.heading_path AS "headingPath", c.text AS text, c.content_sha256 AS "contentSha256"
       FROM chunks c JOIN documents d ON d.id = c.document_id
       WHERE c.id = ANY($1::bigint[]) AND d.deleted_at IS NULL`,
      [ids],
    );
  }

  async chunkIdsOfCollection(collection: string): Promise<number[]> {
    const rows = await this.c.rows<{ id: number }>(
      'SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = $1 AND d.deleted_at IS NULL',
      [collection],
    );
    return rows.map((r) => r.id);
  }

  async collections(): Promise<CollectionSummary[]> {
    const rows = await this.c.rows<{ name: string; documents: string | number; chunks: string | number }>(
      `SELECT d.collection AS name, COUNT(DISTINCT d.id) AS documents, COUNT(c.id) AS chunks
         FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
        WHERE d.deleted_at IS NULL GROUP BY d.collection ORDER BY d.collection COLLATE "C"`,
    );
    return rows.map((r) => ({ name: r.name, documents: Number(r.documents), chunks: Number(r.chunks) }));
  }

  async listDocuments(query: DocumentListQuery): Promise<DocumentListItem[]> {
    const q = query.q?.trim() ?? '';
    // Full text: every term must occur (websearch_to_tsquery ANDs plain words), unlike retrieval's OR query.
    const terms = q === '' ? [] : ftsTerms(q);
    const params = [
      query.collection ?? null, query.beforeId ?? null, query.limit, q === '' ? null : likePattern(q), terms.length === 0 ? null : terms.join(' '),
      excludeArray(query.excludeCollections),
    ];
    return (await this.c.rows<DocumentListItem>(SQL_LIST_DOCUMENTS, params)).map(documentItem);
  }

  async getDocument(id: number): Promise<DocumentListItem | null> {
    const r = await this.c.one<DocumentListItem>(`${SQL_DOCUMENT_ITEM} WHERE d.id = $1 AND d.deleted_at IS NULL`, [id]);
    return r ? documentItem(r) : null;
  }

  // ---------------------------------------------------------------------------------------------
  // change feed

  /**
   * head = the highest committed sequence, kept across truncation (corpus_state.feed_floor). Not
   * the sequence's last_value: nextval() is not transactional, so last_value may name a change
   * still uncommitted (or rolled back); a reader taking it as "applied up to" would skip that change
   * once it commits. Under the corpus lock, sequences are assigned in commit order, so every
   * sequence below the committed maximum is committed or was rolled back (a harmless gap).
   */
  async feedBounds(): Promise<FeedBounds> {
    const r = await this.c.one<{ head: number; first: number | null }>(
      `SELECT greatest((SELECT max(seq) FROM corpus_changes), (SELECT feed_floor FROM corpus_state WHERE id = 1), 0) AS head,
              (SELECT min(seq) FROM corpus_changes) AS first`,
    );
    return { head: r?.head ?? 0, first: r?.first ?? null };
  }

  async changesSince(afterSeq: number, limit: number): Promise<CorpusChange[]> {
    return this.c.rows(
      'SELECT seq, op, chunk_id AS "chunkId", model_id AS "modelId", collection FROM corpus_changes WHERE seq > $1 ORDER BY seq LIMIT $2',
      [afterSeq, limit],
    );
  }

  async truncateFeed(uptoSeq: number): Promise<number> {
    return this.write(async (q) => {
      const r = await q.one<{ n: number; top: number | null }>(
        'WITH gone AS (DELETE FROM corpus_changes WHERE seq <= $1 RETURNING seq) SELECT count(*) AS n, max(seq) AS top FROM gone',
        [uptoSeq],
      );
      if (r?.top) await q.run('UPDATE corpus_state SET feed_floor = greatest(feed_floor, $1) WHERE id = 1', [r.top]);
      return r?.n ?? 0;
    });
  }

  // ---------------------------------------------------------------------------------------------
  // checks

  /** Counts in one snapshot. `integrity` is ['ok'] (PostgreSQL checks its pages itself); FKs are enforced. */
  async counts(): Promise<CorpusCounts> {
    return this.c.tx(async (q) => {
      await q.exec('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      return this.countsIn(q);
    });
  }

  private async countsIn(q: PgQueries): Promise<CorpusCounts> {
    const r = await q.one<Omit<CorpusCounts, 'integrity' | 'foreignKeyViolations' | 'embeddings'>>(
      `SELECT
        (SELECT count(*) FROM documents WHERE deleted_at IS NULL) AS documents,
        (SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL AND source_uri NOT LIKE '${STAGING_PREFIX}%') AS "documentsDeleted",
        (SELECT count(*) FROM documents WHERE source_uri LIKE '${STAGING_PREFIX}%') AS "stagingDocuments",
        (SELECT count(*) FROM chunks) AS chunks,
        (SELECT count(*) FROM chunks WHERE tsv IS NOT NULL) AS "ftsRows",
        (SELECT count(*) FROM chunks WHERE tsv IS NULL) AS "chunksNotInFts",
        (SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.deleted_at IS NOT NULL) AS "chunksOfDeletedDocuments",
        (SELECT count(*) FROM documents d WHERE deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM chunks WHERE document_id = d.id)) AS "liveDocumentsWithoutChunks",
        (SELECT count(*) FROM (SELECT 1 FROM chunks GROUP BY document_id, ord HAVING count(*) > 1) x) AS "duplicateOrds"`,
    );
    const embeddings = await q.rows<{ modelId: string; count: number }>(
      'SELECT model_id AS "modelId", count(*) AS count FROM embeddings GROUP BY model_id ORDER BY model_id',
    );
    return { ...r!, integrity: ['ok'], foreignKeyViolations: 0, embeddings };
  }

  async engineReport(active: IndexGeneration | null): Promise<EngineReport> {
    const v = await this.c.one<{ server: string; vector: string | null }>(
      "SELECT current_setting('server_version') AS server, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector",
    );
    const facts: Record<string, string> = { engine: 'postgres', server_version: v?.server ?? '?', pgvector: v?.vector ?? 'missing' };
    const problems: string[] = [];
    if (!v?.vector) problems.push('the pgvector extension is not installed in this database (CREATE EXTENSION vector)');
    if (active) {
      const name = hnswIndexName(active.modelId, active.dimension);
      const ix = await this.c.one<{ n: number }>('SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = $1', [name]);
      facts.vector_index = name;
      if (!ix?.n) problems.push(`the HNSW index ${name} for the active model ${active.modelId} is missing (run \`mneme reindex\`)`);
    }
    return { facts, problems };
  }

  /** Embeddings of `modelId` whose dimension is not `dimension`. */
  async wrongSizeEmbeddings(modelId: string, dimension: number): Promise<number> {
    return (await this.c.one<{ n: number }>('SELECT count(*) AS n FROM embeddings WHERE model_id = $1 AND vector_dims(vector) <> $2', [modelId, dimension]))?.n ?? 0;
  }
}

/** count(*) arrives as bigint (number through the connection's parser); make sure of numbers. */
function documentItem(r: DocumentListItem): DocumentListItem {
  return { ...r, id: Number(r.id), bytes: Number(r.bytes), chunks: Number(r.chunks) };
}
