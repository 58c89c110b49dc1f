/**
 * SQLite implementation of {@link CorpusStore} (every statement of this aggregate lives here).
 *
 * FTS5 `chunks_fts` is contentless and kept in step by triggers (001_core.sql); the change feed
 * `corpus_changes` too (030_change_feed.sql). Large documents are written in bounded transactions
 * under a staging copy (source_uri `staging:<nonce>:<uri>`, tombstoned so nothing serves it) and
 * made visible in one short transaction, so an ingest never holds the write lock for seconds.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
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
  EngineReport,
  DocumentRef,
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
import { excludeParam } from '../corpus.ts';
import { blobToVector, idList, vectorToBlob } from './codec.ts';
import type { SqliteConnection } from './connection.ts';
import type { SqliteReader } from './reader.ts';
import type { PrunedQuery } from './fts-query.ts';
import { DOC_FTS_MAX_CHUNKS, FTS_TOKENIZER, ftsTerms, pruneTerms, termsToFtsQuery } from './fts-query.ts';
import { matchPhrases } from './fts-native.ts';
import { COVER_MIN_ROWS, SPLIT_MIN_OPTIONAL_ROWS, coverPlan, mergeBest, mergeSplit, splitSettled, splitTerms } from './bm25-split.ts';
import type { CoverPlan, LexicalSplit, LexicalTerm, ScoredRow } from './bm25-split.ts';

/**
 * Most chunks written (or deleted) in one transaction (default 200). A document with more is
 * staged. better-sqlite3 runs a transaction synchronously, so in a server (an upload's ingest) the
 * event loop waits for it: 1,000 chunks of 800 characters held it 300–700 ms on a loaded machine.
 */
export const DOC_TX_MAX_CHUNKS = 200;
/** A staged document's transaction also ends once it has run this long (ms), however few chunks it wrote. */
export const DOC_TX_BUDGET_MS = 40;
/**
 * FTS5 bm25() column weights (text, heading_path, title). The heading path and title are short
 * and repeated in every chunk of a section/document: they help (a query naming the document finds
 * it) but must not outweigh the passage text itself.
 */
export const BM25_WEIGHT_TEXT = 1.0;
export const BM25_WEIGHT_HEADING = 0.5;
export const BM25_WEIGHT_TITLE = 0.5;
/**
 * With a collection filter, the FTS subquery fetches this many times the wanted count before the
 * filter (applied outside the MATCH subquery) drops other collections; when too few survive, the
 * query is re-run without an inner limit, so a small collection is never starved.
 */
export const BM25_FILTER_OVERFETCH = 4;
/** Query-term → FTS5 token cache entries per connection (cleared when full). */
const STEM_CACHE_MAX = 10_000;
/**
 * A cached document frequency is re-read when the chunk count moved by more than this share, and it
 * is older than DF_CACHE_MIN_AGE_MS… (While a 250k-chunk file was being ingested the count moved by
 * 1 % about ten times a second, and re-walking "valve"'s posting list each time (~20 ms) queued every
 * search behind it on the reader thread: chat requests over 2 s.)
 */
const DF_CACHE_DRIFT = 0.1;
const DF_CACHE_MIN_AGE_MS = 5_000;
/** …or when it is older than this (ms). */
const DF_CACHE_TTL_MS = 300_000;
/** The score of an unranked match: FTS5's clamped IDF (1e-6), as BM25 would score a term in most chunks. */
const UNRANKED_SCORE = 1e-6;

/**
 * optimizeFullText's work per write transaction, in FTS5 pages (~4 KB each; about 40 ms a step here),
 * so an ingest's final merge (~5 s at 1M chunks) never holds the write lock for long.
 */
export const FTS_MERGE_STEP_PAGES = 1_000;
/** …and a bound on its steps (a 1M-chunk index takes a few hundred). */
const FTS_MERGE_MAX_STEPS = 100_000;

const STAGING_PREFIX = 'staging:';
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const REPLACED_PREFIX = 'replaced:';

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
    normalized: r.normalized === 1,
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

/**
 * `chunks c` for statements that need a chunk's document or position by its id and nothing else: read
 * through the chunks_owner index (migration 100) rather than the table, whose leaf pages hold the
 * chunks' text (1M chunks: ~600 MB of pages mostly outside the page cache, against ~20 MB).
 * INDEXED BY because the planner takes the rowid for `c.id = ?` by itself.
 */
const CHUNK_OWNER = 'chunks c INDEXED BY chunks_owner';

/** Chunk ranking by FTS5's bm25(), columns (text, heading_path, title) weighted. */
const BM25_RANK = `bm25(chunks_fts, ${BM25_WEIGHT_TEXT}, ${BM25_WEIGHT_HEADING}, ${BM25_WEIGHT_TITLE})`;
/**
 * The same scores with the phrases' document frequencies given (@dfs) and the rows' sizes kept in
 * memory once read (native/mneme_fts.c; sound here because a chunks_fts row is written once per
 * chunk id and chunk ids are AUTOINCREMENT, never reused).
 */
const NATIVE_RANK = `mneme_bm25(chunks_fts, ${BM25_WEIGHT_TEXT}, ${BM25_WEIGHT_HEADING}, ${BM25_WEIGHT_TITLE}, @dfs, 'chunks_fts')`;

/** The ranked chunk statements with `rank` as their ranking expression (BM25_RANK or NATIVE_RANK). */
function chunkStatements(rank: string) {
  // The MATCH runs alone in its subquery; filters and joins stay outside it, so the planner can never
  // turn the query into a scan of documents. Ordered by the rank in SQLite's own sorter, which keeps
  // only the best @inner rows: `ORDER BY rank` (FTS5's sorted cursor) sorts every match, 1.3–1.7×
  // slower at 1M chunks (bench/README.md, "Issue 17 at 1M: BM25 split").
  const inner = `SELECT rowid AS id, ${rank} AS rank FROM chunks_fts WHERE chunks_fts MATCH @match ORDER BY rank LIMIT @inner`;
  const ranked = (filter: string) => `SELECT f.id AS id, f.rank AS rank FROM (${inner}) f
  JOIN ${CHUNK_OWNER} ON c.id = f.id JOIN documents d ON d.id = c.document_id
  WHERE d.deleted_at IS NULL${filter} ORDER BY f.rank LIMIT @limit`;
  // The same with the inner list whole and a `keep` flag for the filter, so a caller can tell a list
  // the filter emptied (re-run without the inner limit) from one FTS5 ended early (done).
  const keep = (filter: string) => `SELECT f.id AS id, f.rank AS rank, (d.id IS NOT NULL AND d.deleted_at IS NULL${filter}) AS keep
  FROM (${inner}) f LEFT JOIN ${CHUNK_OWNER} ON c.id = f.id LEFT JOIN documents d ON d.id = c.document_id ORDER BY f.rank`;
  const collection = ' AND d.collection = @collection';
  // Access control (issue 14): a collection and/or excluded collections (@exclude: a JSON array).
  const scoped = ' AND (@collection IS NULL OR d.collection = @collection) AND d.collection NOT IN (SELECT value FROM json_each(@exclude))';
  return {
    inner,
    bm25: ranked(''),
    collection: ranked(collection),
    scoped: ranked(scoped),
    keep: keep(''),
    collectionKeep: keep(collection),
    scopedKeep: keep(scoped),
    // A document's best chunk: the MATCH over the rowid range of its first DOC_FTS_MAX_CHUNKS chunks
    // (a document's chunks are written together, so the range is tight; rows of other documents
    // inside it are dropped by the join). FTS5 seeks each term's postings to the range, so the cost
    // is the matches in the range. (Was: `rowid IN (the chunk ids)`, which FTS5 evaluates as one
    // MATCH per id: 20–28 ms for 30 pages of the manual, the reader thread's largest cost under
    // load.) CROSS JOIN keeps FTS5 the outer loop.
    bestChunkInRange: `SELECT f.rowid AS chunkId FROM chunks_fts f CROSS JOIN ${CHUNK_OWNER} ON c.id = f.rowid
  WHERE chunks_fts MATCH @match AND f.rowid BETWEEN @lo AND @hi AND c.document_id = @doc AND c.ord < ${DOC_FTS_MAX_CHUNKS}
  ORDER BY ${rank}, f.rowid LIMIT 1`,
  };
}
type ChunkStatements = ReturnType<typeof chunkStatements>;
const CHUNK_SQL = chunkStatements(BM25_RANK);
const CHUNK_SQL_NATIVE = chunkStatements(NATIVE_RANK);
// How many of the chunks / documents in a JSON list of ids are live (the pair cover's one check).
const SQL_LIVE_CHUNK_COUNT = `SELECT count(*) FROM ${CHUNK_OWNER} JOIN documents d ON d.id = c.document_id
  WHERE c.id IN (SELECT value FROM json_each(?)) AND d.deleted_at IS NULL`;
const SQL_LIVE_DOCUMENT_COUNT = 'SELECT count(*) FROM documents WHERE id IN (SELECT value FROM json_each(?)) AND deleted_at IS NULL';
// Documents: bm25() with columns (title, text) weighted like the chunk table's title and text.
const DOC_FTS_INNER = `SELECT rowid AS id, bm25(documents_fts, ${BM25_WEIGHT_TITLE}, ${BM25_WEIGHT_TEXT}) AS rank FROM documents_fts WHERE documents_fts MATCH @match ORDER BY rank LIMIT @inner`;
const SQL_DOCUMENTS = `SELECT f.id AS id, f.rank AS rank FROM (${DOC_FTS_INNER}) f JOIN documents d ON d.id = f.id
  WHERE d.deleted_at IS NULL AND (@collection IS NULL OR d.collection = @collection)
    AND (@exclude IS NULL OR d.collection NOT IN (SELECT value FROM json_each(@exclude))) ORDER BY f.rank LIMIT @limit`;
const SQL_DOCUMENTS_KEEP = `SELECT f.id AS id, f.rank AS rank,
    (d.id IS NOT NULL AND d.deleted_at IS NULL AND (@collection IS NULL OR d.collection = @collection)
      AND (@exclude IS NULL OR d.collection NOT IN (SELECT value FROM json_each(@exclude)))) AS keep
  FROM (${DOC_FTS_INNER}) f LEFT JOIN documents d ON d.id = f.id ORDER BY f.rank`;
// The change feed's head: AUTOINCREMENT's high-water mark, kept when the feed is truncated.
const SQL_FEED_HEAD = "SELECT seq FROM sqlite_sequence WHERE name = 'corpus_changes'";
// The rowid range of each document's first DOC_FTS_MAX_CHUNKS chunks (chunkStatements' bestChunkInRange).
const SQL_DOC_CHUNK_RANGES = `SELECT document_id AS documentId, min(id) AS lo, max(id) AS hi FROM chunks
  WHERE document_id IN (SELECT value FROM json_each(?)) AND ord < ${DOC_FTS_MAX_CHUNKS} GROUP BY document_id`;
// Terms whose IDF is 0 (fts-query.ts PrunedQuery.unranked): the newest matches, unscored.
const SQL_UNRANKED = `SELECT f.id AS id FROM (SELECT rowid AS id FROM chunks_fts WHERE chunks_fts MATCH @match ORDER BY rowid DESC LIMIT @inner) f
  JOIN ${CHUNK_OWNER} ON c.id = f.id JOIN documents d ON d.id = c.document_id
  WHERE d.deleted_at IS NULL AND (@collection IS NULL OR d.collection = @collection)
    AND (@exclude IS NULL OR d.collection NOT IN (SELECT value FROM json_each(@exclude))) ORDER BY f.id DESC LIMIT @limit`;
const SQL_DOC_FTS_DELETE = 'DELETE FROM documents_fts WHERE rowid = ?';
const SQL_DOC_FTS_INSERT = `INSERT INTO documents_fts (rowid, title, text)
  SELECT d.id, d.title, (SELECT group_concat(t, char(10)) FROM (SELECT c.heading_path || char(10) || c.text AS t FROM chunks c WHERE c.document_id = d.id AND c.ord < ${DOC_FTS_MAX_CHUNKS} ORDER BY c.ord))
  FROM documents d WHERE d.id = ? AND EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id)`;
/**
 * A page of one model's vectors in chunk id order, walking the table's primary key (chunk_id,
 * model_id) from `chunk_id > ?`; rows of another model (a switch in progress) are skipped there.
 * Through the embeddings_model index instead, each row cost a descent of the primary key too: 49 µs
 * a vector at 1M chunks against 9 (calibration, `reindex`, the bench's exact scan).
 */
export const SQL_EMBEDDINGS_PAGE = 'SELECT chunk_id, vector FROM embeddings WHERE +model_id = ? AND chunk_id > ? ORDER BY chunk_id LIMIT ?';
const SQL_INSERT_CHUNK = 'INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (?, ?, ?, ?, ?, ?)';
const SQL_INSERT_VECTOR = 'INSERT OR REPLACE INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)';
const SQL_DOCUMENT_ITEM = `SELECT d.id AS id, d.collection AS collection, d.title AS title, d.source_uri AS sourceUri, d.kind AS kind,
    d.bytes AS bytes, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) AS chunks, d.ingested_at AS ingestedAt, d.updated_at AS updatedAt
  FROM documents d`;
/** listDocuments: the substring test (LIKE is case-insensitive for ASCII here), optionally OR a full-text match. */
const SQL_LIST_SUBSTRING = "(d.title LIKE @like ESCAPE '\\' OR d.source_uri LIKE @like ESCAPE '\\')";
const SQL_LIST_FTS = 'd.id IN (SELECT rowid FROM documents_fts WHERE documents_fts MATCH @match)';

const SEARCH_PATHS = ['plain', 'settled', 'unsettled', 'cover', 'coverSingles', 'coverPlain', 'coverRescoped'] as const;
/**
 * How ranked BM25 searches ran: `plain` one query; `settled` / `unsettled` the optional-term split
 * without / with its Q3; `cover` the pair cover (its single-term queries counted in
 * `coverSingles`); `coverPlain` a pair cover that found fewer than k rows and ran the plain query;
 * `coverRescoped` a pair cover whose unscoped result held a row not live (deleted meanwhile), run
 * again in scope.
 */
export type SearchPaths = Record<(typeof SEARCH_PATHS)[number], number>;

const emptyPaths = (): SearchPaths => Object.fromEntries(SEARCH_PATHS.map((k) => [k, 0])) as SearchPaths;
const addPaths = (a: SearchPaths, b: SearchPaths): SearchPaths => Object.fromEntries(SEARCH_PATHS.map((k) => [k, a[k] + b[k]])) as SearchPaths;

/** The pair cover's queries without the scope join, and the check of their result (rankedSearch). */
interface Unfiltered {
  topK: (match: string) => ScoredRow[];
  allLive: (ids: readonly number[]) => boolean;
}

/** The first `limit` rows of a keep-flagged list that pass (rank: lower is better → score). */
function keptRows(listed: ReadonlyArray<{ id: number; rank: number; keep: number }>, limit: number): ScoredRow[] {
  const out: ScoredRow[] = [];
  for (const r of listed) {
    if (out.length === limit) break;
    if (r.keep === 1) out.push({ id: r.id, score: -r.rank });
  }
  return out;
}

/** `%text%` for LIKE with its wildcards escaped (escape character backslash). */
export function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export class SqliteCorpusStore implements CorpusStore {
  readonly nativeVectorSearch = false;
  /** True once this connection has its temp fts5vocab table over chunks_fts (document frequencies). */
  private vocabReady = false;
  /** True once this connection has its temp fts5vocab table over documents_fts. */
  private docVocabReady = false;
  /** True once this connection has its temp tokenizer table (see stemsOf). */
  private stemReady = false;
  /** Query term → the tokens FTS5 indexes for it (porter stems), per connection. */
  private readonly stemCache = new Map<string, string[]>();
  /** FTS5 token → its document frequency when read (see tokenDf). */
  private readonly dfCache = new Map<string, { df: number; total: number; atMs: number }>();
  /** The ranked chunk statements: mneme_bm25 when the connection loaded it (fts-native.ts), else bm25(). */
  private readonly chunkSql: ChunkStatements;
  /**
   * Phrase → the chunks_fts rows holding it, counted as bm25() counts them, exact while the change
   * feed's head is `exactDfHead` (every chunk insert or delete moves it, in the same transaction as
   * chunks_fts: 030_change_feed.sql). mneme_bm25 is given these (see phraseDfs).
   */
  private readonly exactDf = new Map<string, number>();
  private exactDfHead = -1;

  /** Set by a server (SqliteStore.startReader): the heavy full-text searches run on its thread. */
  private reader: SqliteReader | null = null;

  /**
   * The smallest number of rows of optional terms for which a BM25 search is split (bm25-split.ts,
   * default SPLIT_MIN_OPTIONAL_ROWS); null: every search runs as one plain FTS5 query. Benchmarks
   * and the test comparing both paths set it.
   */
  bm25SplitMinRows: number | null = SPLIT_MIN_OPTIONAL_ROWS;
  /**
   * The smallest number of rows (all terms) for which a BM25 search of 2 to COVER_MAX_TERMS terms
   * runs as a pair cover (bm25-split.ts coverPlan; default COVER_MIN_ROWS); null: never. Ignored
   * when bm25SplitMinRows is null (plain searches only).
   */
  bm25CoverMinRows: number | null = COVER_MIN_ROWS;
  /**
   * Query terms pruned by document frequency (fts-query.ts pruneTerms; default true). false: every
   * term is searched and scored, plain BM25 — the baseline of the pruning's quality gate
   * (bench/beir-gate.ts); this connection only (not a reader thread's).
   */
  pruneQueryTerms = true;
  /** optimizeFullText's pages per write transaction (default FTS_MERGE_STEP_PAGES; tests take many small steps). */
  ftsMergeStepPages = FTS_MERGE_STEP_PAGES;
  /** How this connection's ranked BM25 chunk searches ran (see SearchPaths). */
  readonly bm25Paths: SearchPaths = emptyPaths();
  /** The same for document searches (searchDocuments). */
  readonly bm25DocumentPaths: SearchPaths = emptyPaths();

  /** The path counters of every search this store ran, the reader thread's included (benchmarks). */
  async searchPaths(): Promise<{ chunks: SearchPaths; documents: SearchPaths }> {
    const here = { chunks: { ...this.bm25Paths }, documents: { ...this.bm25DocumentPaths } };
    if (!this.reader?.usable) return here;
    const there = await this.reader.call<typeof here>('searchPaths', []);
    return { chunks: addPaths(here.chunks, there.chunks), documents: addPaths(here.documents, there.documents) };
  }

  constructor(private readonly c: SqliteConnection) {
    this.chunkSql = c.fts.loaded ? CHUNK_SQL_NATIVE : CHUNK_SQL;
  }

  /**
   * Forgets the exact phrase frequencies when the corpus changed since they were counted. Called once
   * by each search entry point on this connection (searchText, bestChunks, lexicalCandidates).
   */
  private syncExactDf(): void {
    if (!this.c.fts.loaded) return;
    const head = this.c.stmt<[], number>(SQL_FEED_HEAD).pluck().get() ?? 0;
    if (head !== this.exactDfHead || this.exactDf.size >= STEM_CACHE_MAX) {
      this.exactDf.clear();
      this.exactDfHead = head;
    }
  }

  /**
   * mneme_bm25's @dfs for a chunks_fts MATCH expression: each phrase's row count in the order FTS5
   * numbers the phrases, comma-separated (null on a connection ranking with bm25()). A one-token
   * term whose frequency searchTerms read afresh is known already; other phrases not counted since
   * the corpus last changed are counted now, all in one statement
   * (mneme_phrase_rows: one walk of each posting list, what bm25() does in every statement).
   */
  private phraseDfs(match: string): string | null {
    if (!this.c.fts.loaded) return null;
    const phrases = matchPhrases(match);
    const missing = [...new Set(phrases.filter((p) => !this.exactDf.has(p)))];
    if (missing.length > 0) {
      const counted = this.c
        .stmt<[string], string>('SELECT mneme_phrase_rows(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT 1')
        .pluck()
        .get(missing.map((p) => `"${p.replace(/"/g, '""')}"`).join(' OR '));
      // No row matches any of them: each is in 0 rows.
      const counts = counted === undefined ? missing.map(() => 0) : counted.split(',').map(Number);
      missing.forEach((p, i) => this.exactDf.set(p, counts[i] ?? 0));
    }
    return phrases.map((p) => this.exactDf.get(p)!).join(',');
  }

  /**
   * Reads every chunk's size into mneme_bm25's in-memory cache (one scan of chunks_fts' %_docsize,
   * 0.19 s at 1M chunks) so the first searches after a start do not look each row's size up.
   * The reader thread does it before it takes searches. Returns the rows cached (0 without the extension).
   */
  warmFullText(): number {
    if (!this.c.fts.loaded) return 0;
    return this.c.stmt<[], number>("SELECT mneme_warm_sizes('chunks_fts', 'chunks_fts')").pluck().get() ?? 0;
  }

  /** Sends searchText / searchDocuments / bestChunks / lexicalCandidates to `reader` (null: back to this connection). */
  useReader(reader: SqliteReader | null): void {
    this.reader = reader;
  }

  /**
   * The query's terms after document-frequency pruning (fts-query.ts pruneTerms). Frequencies are
   * read from a per-connection fts5vocab table (see tokenDf); a term's stemmed frequency is that of
   * its rarest FTS5 token (stems as the tokenizer makes them, see stemsOf). The chunk count is
   * max(chunk id), an upper bound.
   */
  private searchTerms(query: string): PrunedQuery & { lexical: LexicalTerm[]; total: number } {
    const terms = ftsTerms(query);
    if (terms.length === 0) return { terms, unranked: false, lexical: [], total: 0 };
    if (!this.vocabReady) {
      this.c.db.exec("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_fts_vocab USING fts5vocab(main, chunks_fts, 'row')");
      this.vocabReady = true;
    }
    const total = this.c.stmt<[], { n: number | null }>('SELECT max(id) AS n FROM chunks').get()?.n ?? 0;
    // Two frequencies: the term as typed (0 when the tokenizer stems it to another form) drives the
    // PRUNE_MIN_DF rule, whose quality was measured that way (with stems it also prunes "index",
    // "create"…: manual hit@1 0.735 → 0.676); its stems' (what FTS5 really scans) drive the IDF-0 rule.
    // A token counted afresh here is counted exactly: a one-token term's phrase count for mneme_bm25
    // is that count (fts5vocab and a phrase query walk the same posting list, deletes applied), so
    // phraseDfs need not walk it again.
    const counted = new Map<string, number>();
    const typed = terms.map((t) => this.tokenDf(t, total, 'chunks', counted));
    const stems = this.stemsOf(terms);
    const stemmed = stems.map((tokens) => (tokens.length === 0 ? 0 : Math.min(...tokens.map((t) => this.tokenDf(t, total, 'chunks', counted)))));
    if (this.c.fts.loaded) {
      terms.forEach((term, i) => {
        const only = stems[i]?.length === 1 ? counted.get(stems[i]![0]!) : undefined;
        if (only !== undefined) this.exactDf.set(term, only);
      });
    }
    const pruned = this.pruneQueryTerms ? pruneTerms(terms, typed, total, stemmed) : { terms, unranked: false };
    const lexical = pruned.terms.map((term) => {
      const i = terms.indexOf(term);
      return { term, df: stemmed[i] ?? 0, singleToken: stems[i]?.length === 1 };
    });
    return { ...pruned, lexical, total };
  }

  /**
   * Chunks holding `token`. fts5vocab counts them by walking the token's posting list (~20 ms for a
   * token in 250k chunks), so counts are cached until the corpus grows or shrinks by more than
   * DF_CACHE_DRIFT (and DF_CACHE_MIN_AGE_MS passed) or DF_CACHE_TTL_MS passes: pruning needs the
   * order of magnitude, not the count.
   * @param counted receives `token` → its count when it was read now (exact), not taken from the cache.
   */
  private tokenDf(token: string, total: number, table: 'chunks' | 'documents' = 'chunks', counted?: Map<string, number>): number {
    const now = Date.now();
    const key = table === 'chunks' ? token : `documents\u0000${token}`;
    const hit = this.dfCache.get(key);
    const age = hit ? now - hit.atMs : Infinity;
    if (hit && age < DF_CACHE_TTL_MS && (age < DF_CACHE_MIN_AGE_MS || Math.abs(total - hit.total) <= hit.total * DF_CACHE_DRIFT)) return hit.df;
    const sql = table === 'chunks' ? 'SELECT doc FROM temp.chunks_fts_vocab WHERE term = ?' : 'SELECT doc FROM temp.documents_fts_vocab WHERE term = ?';
    const df = this.c.stmt<[string], { doc: number }>(sql).get(token)?.doc ?? 0;
    counted?.set(token, df);
    if (this.dfCache.size >= STEM_CACHE_MAX) this.dfCache.clear();
    this.dfCache.set(key, { df, total, atMs: now });
    return df;
  }

  /**
   * The pruned terms of a chunk search with their document-level frequencies (rows of
   * documents_fts, whose total is max(document id)), for splitting a document search.
   */
  private documentTerms(pruned: { lexical: LexicalTerm[] }): { lexical: LexicalTerm[]; total: number } {
    if (!this.docVocabReady) {
      this.c.db.exec("CREATE VIRTUAL TABLE IF NOT EXISTS temp.documents_fts_vocab USING fts5vocab(main, documents_fts, 'row')");
      this.docVocabReady = true;
    }
    const total = this.c.stmt<[], { n: number | null }>('SELECT max(id) AS n FROM documents').get()?.n ?? 0;
    const stems = this.stemsOf(pruned.lexical.map((t) => t.term));
    const lexical = pruned.lexical.map((t, i) => {
      const tokens = stems[i] ?? [];
      return { ...t, df: tokens.length === 0 ? 0 : Math.min(...tokens.map((k) => this.tokenDf(k, total, 'documents'))) };
    });
    return { lexical, total };
  }

  /**
   * The tokens FTS5 indexes for each term ("reading" → ["read"], "e-417" → ["e", "417"]), made by
   * the same tokenizer as chunks_fts through a temp table of this connection; cached.
   */
  private stemsOf(terms: readonly string[]): string[][] {
    const missing = [...new Set(terms.filter((t) => !this.stemCache.has(t)))];
    if (missing.length > 0) {
      if (!this.stemReady) {
        this.c.db.exec(`CREATE VIRTUAL TABLE IF NOT EXISTS temp.mneme_stem USING fts5(t, tokenize = '${FTS_TOKENIZER}');
          CREATE VIRTUAL TABLE IF NOT EXISTS temp.mneme_stem_vocab USING fts5vocab(temp, mneme_stem, 'instance');`);
        this.stemReady = true;
      }
      const clear = this.c.stmt('DELETE FROM temp.mneme_stem');
      const insert = this.c.stmt<[number, string]>('INSERT INTO temp.mneme_stem (rowid, t) VALUES (?, ?)');
      clear.run();
      missing.forEach((t, i) => insert.run(i + 1, t));
      const rows = this.c.stmt<[], { term: string; doc: number }>('SELECT term, doc FROM temp.mneme_stem_vocab ORDER BY doc, offset').all();
      clear.run();
      if (this.stemCache.size + missing.length > STEM_CACHE_MAX) this.stemCache.clear();
      const byRow = new Map<number, string[]>();
      for (const r of rows) byRow.set(r.doc, [...(byRow.get(r.doc) ?? []), r.term]);
      missing.forEach((t, i) => this.stemCache.set(t, byRow.get(i + 1) ?? []));
    }
    return terms.map((t) => this.stemCache.get(t) ?? []);
  }

  // ---------------------------------------------------------------------------------------------
  // documents

  async findDocument(collection: string, sourceUri: string): Promise<DocumentRef | null> {
    const r = this.c
      .stmt<[string, string], { id: number; content_sha256: string; deleted_at: string | null }>(
        'SELECT id, content_sha256, deleted_at FROM documents WHERE collection = ? AND source_uri = ?',
      )
      .get(collection, sourceUri);
    return r ? { id: r.id, contentSha256: r.content_sha256, deletedAt: r.deleted_at } : null;
  }

  async vectorsByContentHash(documentId: number, modelId: string): Promise<Map<string, Float32Array>> {
    const rows = this.c
      .stmt<[string, number], { h: string; vector: Buffer }>(
        'SELECT c.content_sha256 AS h, e.vector AS vector FROM chunks c JOIN embeddings e ON e.chunk_id = c.id AND e.model_id = ? WHERE c.document_id = ?',
      )
      .all(modelId, documentId);
    return new Map(rows.map((r) => [r.h, blobToVector(r.vector)]));
  }

  async replaceDocument(doc: NewDocument, chunks: NewChunk[], existing: DocumentRef | null, modelId: string | null): Promise<ReplaceDocumentResult> {
    if (chunks.length <= DOC_TX_MAX_CHUNKS) {
      return this.c.write(() => {
        const removed = existing ? this.chunkIdsOfDocument(existing.id) : [];
        let documentId: number;
        let chunksDeleted = 0;
        if (existing) {
          documentId = existing.id;
          chunksDeleted = this.c.stmt<[number]>('DELETE FROM chunks WHERE document_id = ?').run(documentId).changes;
          this.c
            .stmt('UPDATE documents SET content_sha256 = ?, title = ?, kind = ?, bytes = ?, weight = ?, updated_at = ?, deleted_at = NULL WHERE id = ?')
            .run(doc.contentSha256, doc.title, doc.kind, doc.bytes, doc.weight ?? 1, nowIso(), documentId);
        } else {
          documentId = this.insertDocument(doc, doc.sourceUri, null);
        }
        const vectorsAdded = this.insertChunks(documentId, chunks, modelId);
        this.refreshDocumentFts(documentId);
        return { documentId, chunksAdded: chunks.length, chunksDeleted, vectorsAdded, chunkIdsRemoved: removed };
      });
    }
    return this.replaceStaged(doc, chunks, existing, modelId);
  }

  /** Large document: staging copy written in bounded transactions, then one short visibility flip. */
  private async replaceStaged(doc: NewDocument, chunks: NewChunk[], existing: DocumentRef | null, modelId: string | null): Promise<ReplaceDocumentResult> {
    const stagingUri = `${STAGING_PREFIX}${randomUUID()}:${doc.sourceUri}`;
    const documentId = await this.c.write(() => this.insertDocument(doc, stagingUri, nowIso()));
    const vectorsAdded: Array<[number, Float32Array]> = [];
    for (let i = 0; i < chunks.length; ) {
      const from = i;
      const step = await this.c.write(() => {
        const t0 = performance.now();
        const added: Array<[number, Float32Array]> = [];
        let next = from;
        while (next < chunks.length && next - from < DOC_TX_MAX_CHUNKS) {
          added.push(...this.insertChunks(documentId, chunks.slice(next, next + 1), modelId));
          next++;
          if (performance.now() - t0 >= DOC_TX_BUDGET_MS) break;
        }
        return { added, next };
      });
      vectorsAdded.push(...step.added);
      i = step.next;
      // Between two bounded transactions the event loop (and other writers) get their turn.
      await yieldToEventLoop();
    }
    await this.c.write(() => {
      if (existing) {
        // The old row keeps its id for old logs, under a name that frees (collection, source_uri).
        this.c
          .stmt('UPDATE documents SET source_uri = ?, deleted_at = ? WHERE id = ?')
          .run(`${REPLACED_PREFIX}${existing.id}:${doc.sourceUri}`, nowIso(), existing.id);
      }
      this.c.stmt('UPDATE documents SET source_uri = ?, deleted_at = NULL WHERE id = ?').run(doc.sourceUri, documentId);
      if (existing) this.c.stmt<[number]>(SQL_DOC_FTS_DELETE).run(existing.id);
      this.refreshDocumentFts(documentId);
    });
    const chunkIdsRemoved = existing ? await this.deleteChunksBounded(existing.id) : [];
    return { documentId, chunksAdded: chunks.length, chunksDeleted: chunkIdsRemoved.length, vectorsAdded, chunkIdsRemoved };
  }

  private insertDocument(doc: NewDocument, sourceUri: string, deletedAt: string | null): number {
    const now = nowIso();
    return Number(
      this.c
        .stmt(
          `INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, weight, ingested_at, updated_at, deleted_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(doc.collection, sourceUri, doc.contentSha256, doc.title, doc.kind, doc.bytes, doc.weight ?? 1, now, now, deletedAt).lastInsertRowid,
    );
  }

  /** Inside a write transaction: rebuilds the document's documents_fts row from its current chunks (none: no row). */
  private refreshDocumentFts(documentId: number): void {
    this.c.stmt<[number]>(SQL_DOC_FTS_DELETE).run(documentId);
    this.c.stmt<[number]>(SQL_DOC_FTS_INSERT).run(documentId);
  }

  /** Inside a write transaction. */
  private insertChunks(documentId: number, chunks: NewChunk[], modelId: string | null): Array<[number, Float32Array]> {
    const insertChunk = this.c.stmt(SQL_INSERT_CHUNK);
    const insertVector = this.c.stmt(SQL_INSERT_VECTOR);
    const added: Array<[number, Float32Array]> = [];
    for (const ch of chunks) {
      const id = Number(insertChunk.run(documentId, ch.ord, ch.text, ch.headingPath, ch.tokenCount, ch.contentSha256).lastInsertRowid);
      if (ch.vector && modelId) {
        insertVector.run(id, modelId, vectorToBlob(ch.vector));
        added.push([id, ch.vector]);
      }
    }
    return added;
  }

  private chunkIdsOfDocument(documentId: number): number[] {
    return this.c.stmt<[number], number>('SELECT id FROM chunks WHERE document_id = ?').pluck().all(documentId);
  }

  /** Deletes a document's chunks DOC_TX_MAX_CHUNKS per transaction; returns their ids. */
  private async deleteChunksBounded(documentId: number): Promise<number[]> {
    const removed: number[] = [];
    for (;;) {
      const ids = await this.c.write(() => {
        const batch = this.c
          .stmt<[number, number], number>('SELECT id FROM chunks WHERE document_id = ? ORDER BY id LIMIT ?')
          .pluck()
          .all(documentId, DOC_TX_MAX_CHUNKS);
        if (batch.length > 0) this.c.stmt<[string]>('DELETE FROM chunks WHERE id IN (SELECT value FROM json_each(?))').run(idList(batch));
        return batch;
      });
      removed.push(...ids);
      if (ids.length < DOC_TX_MAX_CHUNKS) return removed;
      await yieldToEventLoop();
    }
  }

  async liveDocuments(collection: string): Promise<Array<{ id: number; sourceUri: string }>> {
    return this.c
      .stmt<[string], { id: number; sourceUri: string }>('SELECT id, source_uri AS sourceUri FROM documents WHERE collection = ? AND deleted_at IS NULL')
      .all(collection);
  }

  async deleteDocument(documentId: number): Promise<number[]> {
    // Tombstone first (one short transaction: readers stop seeing it at once), then the chunks.
    await this.c.write(() => {
      this.c.stmt('UPDATE documents SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL').run(nowIso(), documentId);
      this.c.stmt<[number]>(SQL_DOC_FTS_DELETE).run(documentId);
    });
    return this.deleteChunksBounded(documentId);
  }

  async cleanupInterrupted(): Promise<number[]> {
    const leftovers = this.c
      .stmt<[], { id: number; source_uri: string }>(
        `SELECT d.id, d.source_uri FROM documents d
         WHERE d.deleted_at IS NOT NULL AND (d.source_uri LIKE '${STAGING_PREFIX}%' OR EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id))`,
      )
      .all();
    const removed: number[] = [];
    for (const d of leftovers) {
      removed.push(...(await this.deleteChunksBounded(d.id)));
      if (d.source_uri.startsWith(STAGING_PREFIX)) await this.c.write(() => this.c.stmt('DELETE FROM documents WHERE id = ?').run(d.id));
    }
    return removed;
  }

  async chunkSources(collection: string): Promise<Array<{ id: number; sourceUri: string }>> {
    return this.c
      .stmt<[string], { id: number; sourceUri: string }>(
        'SELECT c.id AS id, d.source_uri AS sourceUri FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = ? AND d.deleted_at IS NULL',
      )
      .all(collection);
  }

  async startIngestRun(): Promise<number> {
    return this.c.write(() => Number(this.c.stmt('INSERT INTO ingest_runs (started_at) VALUES (?)').run(nowIso()).lastInsertRowid));
  }

  async finishIngestRun(id: number, summary: unknown): Promise<void> {
    const now = nowIso();
    await this.c.write(() => {
      this.c.stmt('UPDATE ingest_runs SET finished_at = ?, summary_json = ? WHERE id = ?').run(now, JSON.stringify(summary), id);
      this.c.stmt('UPDATE corpus_state SET last_ingest_at = ? WHERE id = 1').run(now);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // embeddings

  async chunksMissingEmbedding(modelId: string, afterId: number, limit: number): Promise<ChunkText[]> {
    return this.c
      .stmt<[number, string, number], ChunkText>(
        `SELECT c.id AS id, c.text AS text, c.heading_path AS headingPath FROM chunks c
         WHERE c.id > ? AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = ?)
         ORDER BY c.id LIMIT ?`,
      )
      .all(afterId, modelId, limit);
  }

  async addEmbeddings(modelId: string, rows: Array<[number, Float32Array]>): Promise<number> {
    return this.c.write(() => {
      // A chunk replaced meanwhile by another writer is simply skipped (the join finds no chunk).
      const insert = this.c.stmt(
        'INSERT OR IGNORE INTO embeddings (chunk_id, model_id, vector) SELECT id, ?, ? FROM chunks WHERE id = ?',
      );
      let stored = 0;
      for (const [id, v] of rows) stored += insert.run(modelId, vectorToBlob(v), id).changes;
      return stored;
    });
  }

  async embeddingCount(modelId: string): Promise<number> {
    return this.c.stmt<[string], number>('SELECT count(*) FROM embeddings WHERE model_id = ?').pluck().get(modelId) ?? 0;
  }

  /** Read along the table's primary key (SQL_EMBEDDINGS_PAGE). */
  async embeddingsPage(modelId: string, afterId: number, limit: number): Promise<Array<[number, Float32Array]>> {
    return this.c
      .stmt<[string, number, number], { chunk_id: number; vector: Buffer }>(SQL_EMBEDDINGS_PAGE)
      .all(modelId, afterId, limit)
      .map((r) => [r.chunk_id, blobToVector(r.vector)]);
  }

  async embeddedChunkIds(modelId: string): Promise<Set<number>> {
    return new Set(this.c.stmt<[string], number>('SELECT chunk_id FROM embeddings WHERE model_id = ?').pluck().all(modelId));
  }

  async vectorsOf(modelId: string, chunkIds: readonly number[]): Promise<Map<number, Float32Array>> {
    const rows = this.c
      .stmt<[string, string], { chunkId: number; vector: Buffer }>(
        'SELECT chunk_id AS chunkId, vector FROM embeddings WHERE model_id = ? AND chunk_id IN (SELECT value FROM json_each(?))',
      )
      .all(modelId, idList(chunkIds));
    return new Map(rows.map((r) => [r.chunkId, blobToVector(r.vector)]));
  }

  // ---------------------------------------------------------------------------------------------
  // index generations

  async activeGeneration(): Promise<IndexGeneration | null> {
    const r = this.c.stmt<[], GenerationRow>("SELECT * FROM index_meta WHERE status = 'active'").get();
    return r ? toGeneration(r) : null;
  }

  async buildingGeneration(modelId: string): Promise<IndexGeneration | null> {
    const r = this.c.stmt<[string], GenerationRow>("SELECT * FROM index_meta WHERE status = 'building' AND model_id = ? ORDER BY generation DESC").get(modelId);
    return r ? toGeneration(r) : null;
  }

  async generations(status: IndexGeneration['status']): Promise<IndexGeneration[]> {
    return this.c.stmt<[string], GenerationRow>('SELECT * FROM index_meta WHERE status = ? ORDER BY generation').all(status).map(toGeneration);
  }

  async createGeneration(g: NewGeneration, status: 'building' | 'active'): Promise<IndexGeneration> {
    return this.c.write(() => {
      const now = nowIso();
      const res = this.c
        .stmt(
          `INSERT INTO index_meta (model_id, dimension, pooling, normalized, max_tokens, space, hnsw_m, hnsw_ef_construction,
             hnsw_ef_search, file, status, created_at, activated_at)
           VALUES (?, ?, ?, ?, ?, 'cosine', ?, ?, ?, '', ?, ?, ?)`,
        )
        .run(g.modelId, g.dimension, g.pooling, g.normalized ? 1 : 0, g.maxTokens, g.hnswM, g.hnswEfConstruction, g.hnswEfSearch,
          status, now, status === 'active' ? now : null);
      const gen = Number(res.lastInsertRowid);
      this.c.stmt('UPDATE index_meta SET file = ? WHERE generation = ?').run(path.join('index', `hnsw-g${gen}.bin`), gen);
      return toGeneration(this.c.stmt<[number], GenerationRow>('SELECT * FROM index_meta WHERE generation = ?').get(gen)!);
    });
  }

  async activateGeneration(generation: number): Promise<IndexGeneration | null> {
    return this.c.write(() => {
      const old = this.c.stmt<[], GenerationRow>("SELECT * FROM index_meta WHERE status = 'active'").get();
      const next = this.c.stmt<[number], GenerationRow>('SELECT * FROM index_meta WHERE generation = ?').get(generation);
      if (old) {
        this.c.stmt("UPDATE index_meta SET status = 'retired' WHERE generation = ?").run(old.generation);
        if (next && old.model_id !== next.model_id) this.c.stmt('DELETE FROM embeddings WHERE model_id = ?').run(old.model_id);
      }
      this.c.stmt("UPDATE index_meta SET status = 'active', activated_at = ? WHERE generation = ?").run(nowIso(), generation);
      return old ? toGeneration(old) : null;
    });
  }

  async recordIndexSaved(generation: number, feedSeq: number): Promise<void> {
    await this.c.write(() => this.c.stmt('UPDATE index_meta SET saved_feed_seq = ? WHERE generation = ?').run(feedSeq, generation));
  }

  /**
   * Merges each FTS5 table (chunks_fts, documents_fts) into one segment, in write transactions of
   * about FTS_MERGE_STEP_PAGES pages each with the event loop free between them: the first step
   * ('merge', −N) puts every segment on one level and starts merging them, the next ones ('merge', N)
   * carry that merge on, until a step does no work (SQLite's total_changes() moves by less than 2,
   * as the FTS5 manual says) or FTS_MERGE_MAX_STEPS. Same rows, same scores (contract test).
   */
  async optimizeFullText(): Promise<void> {
    for (const table of ['chunks_fts', 'documents_fts']) {
      for (let step = 0; step < FTS_MERGE_MAX_STEPS; step++) {
        const pages = step === 0 ? -this.ftsMergeStepPages : this.ftsMergeStepPages;
        const worked = await this.c.write(() => {
          const before = this.c.stmt<[], number>('SELECT total_changes()').pluck().get()!;
          this.c.stmt<[number]>(`INSERT INTO ${table}(${table}, rank) VALUES('merge', ?)`).run(pages);
          return this.c.stmt<[], number>('SELECT total_changes()').pluck().get()! - before >= 2;
        });
        if (!worked) break;
        await yieldToEventLoop();
      }
    }
  }

  async recordCalibration(generation: number, k: EfCalibration): Promise<void> {
    await this.c.write(() =>
      this.c
        .stmt('UPDATE index_meta SET calibrated_ef = ?, calibrated_recall = ?, calibrated_at = ?, calibrated_vectors = ? WHERE generation = ?')
        .run(k.ef, k.recall, k.at, k.vectors, generation),
    );
  }

  async vectorWorkPending(configuredModel: string | null): Promise<boolean> {
    if (configuredModel === null) return false;
    const meta = await this.activeGeneration();
    const chunks = this.c.stmt<[], number>('SELECT count(*) FROM chunks').pluck().get() ?? 0;
    if (!meta) return chunks > 0;
    if (meta.modelId !== configuredModel || meta.savedFeedSeq !== (await this.feedBounds()).head) return true;
    const unembedded =
      this.c
        .stmt<[string], number>('SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = ?)')
        .pluck()
        .get(meta.modelId) ?? 0;
    return unembedded > 0;
  }

  // ---------------------------------------------------------------------------------------------
  // retrieval

  async searchText(query: string, opts: SearchScope & { limit: number }): Promise<ScoredChunkRef[]> {
    if (this.reader?.usable) return this.reader.call('searchText', [query, opts]);
    this.syncExactDf();
    return this.searchTextNow(query, opts);
  }

  /**
   * @param live when given, an unscoped pair cover checks its result by reading the chunkMeta of its
   *   rows (live ones only) and leaves them here when all were live, so lexicalCandidates need not
   *   read them again; untouched otherwise.
   */
  private searchTextNow(query: string, opts: SearchScope & { limit: number }, live?: { meta: ChunkMeta[] | null }): ScoredChunkRef[] {
    const pruned = this.searchTerms(query);
    const match = termsToFtsQuery(pruned.terms);
    if (match === null) return [];
    const { limit, collection } = opts;
    const exclude = excludeParam(opts.excludeCollections);
    if (pruned.unranked) return this.unrankedMatches(match, limit, collection ?? null, exclude);
    const topK = (m: string) => this.rankedChunks(m, limit, collection ?? null, exclude);
    const unfiltered: Unfiltered | undefined =
      collection != null || exclude !== null
        ? undefined
        : {
            topK: (m) => this.ftsTopK(this.chunkSql.inner, m, limit, this.phraseDfs(m)),
            allLive: (ids) => {
              if (ids.length === 0) return true;
              if (live === undefined) return this.c.stmt<[string], number>(SQL_LIVE_CHUNK_COUNT).pluck().get(idList(ids)) === ids.length;
              const meta = this.chunkMetaNow(ids);
              if (meta.length !== ids.length) return false;
              live.meta = meta;
              return true;
            },
          };
    return this.rankedSearch(match, pruned, limit, topK, this.bm25Paths, unfiltered).map((r) => ({ chunkId: r.id, score: r.score }));
  }

  /** The best `inner` rows of an FTS5 ranking query (chunkSql.inner, DOC_FTS_INNER), live or not, out of scope or not. */
  private ftsTopK(sql: string, match: string, inner: number, dfs: string | null = null): ScoredRow[] {
    return this.c
      .stmt<{ match: string; inner: number; dfs: string | null }, { id: number; rank: number }>(sql)
      .all({ match, inner, dfs })
      .map((r) => ({ id: r.id, score: -r.rank }));
  }

  /** The best `limit` live chunks for an FTS5 MATCH expression, in scope, by bm25 (score: higher is better). */
  private rankedChunks(match: string, limit: number, collection: string | null, exclude: string | null): ScoredRow[] {
    type Row = { id: number; rank: number };
    type Params = { match: string; inner: number; dfs: string | null; collection: string | null; exclude: string | null };
    const dfs = this.phraseDfs(match);
    const run = (inner: number) => {
      const sql = exclude !== null ? this.chunkSql.scoped : collection === null ? this.chunkSql.bm25 : this.chunkSql.collection;
      return this.c.stmt<Params & { limit: number }, Row>(sql).all({ match, inner, limit, dfs, collection, exclude });
    };
    const inner = collection === null && exclude === null ? limit : limit * BM25_FILTER_OVERFETCH;
    const sql = exclude !== null ? this.chunkSql.scopedKeep : collection === null ? this.chunkSql.keep : this.chunkSql.collectionKeep;
    const listed = this.c.stmt<Params, Row & { keep: number }>(sql).all({ match, inner, dfs, collection, exclude });
    const rows = keptRows(listed, limit);
    // Too few survived the filter while the inner limit cut the list: matches past it may pass the filter.
    if (rows.length < limit && listed.length >= inner) return run(-1).map((r) => ({ id: r.id, score: -r.rank }));
    return rows;
  }

  /**
   * Matches of a query whose terms all have IDF 0 (in most chunks): BM25 cannot rank them, and
   * scoring them all costs seconds on a large corpus, so the newest `limit` live ones come back with
   * an equal, negligible score (ranking is left to the dense list and the fusion).
   */
  private unrankedMatches(match: string, limit: number, collection: string | null, exclude: string | null): ScoredChunkRef[] {
    const stmt = this.c.stmt<{ match: string; inner: number; limit: number; collection: string | null; exclude: string | null }, { id: number }>(SQL_UNRANKED);
    const filtered = collection !== null || exclude !== null;
    let rows = stmt.all({ match, inner: filtered ? limit * BM25_FILTER_OVERFETCH : limit, limit, collection, exclude });
    if (filtered && rows.length < limit) rows = stmt.all({ match, inner: -1, limit, collection, exclude });
    return rows.map((r) => ({ chunkId: r.id, score: UNRANKED_SCORE }));
  }

  async searchDocuments(query: string, opts: SearchScope & { limit: number }): Promise<Array<{ documentId: number; score: number }>> {
    if (this.reader?.usable) return this.reader.call('searchDocuments', [query, opts]);
    return this.searchDocumentsNow(query, opts);
  }

  private searchDocumentsNow(query: string, opts: SearchScope & { limit: number }): Array<{ documentId: number; score: number }> {
    const pruned = this.searchTerms(query);
    const match = termsToFtsQuery(pruned.terms);
    if (match === null) return [];
    const collection = opts.collection ?? null;
    const exclude = excludeParam(opts.excludeCollections);
    const { limit } = opts;
    const topK = (m: string): ScoredRow[] => {
      const inner = collection !== null || exclude !== null ? limit * BM25_FILTER_OVERFETCH : limit;
      const listed = this.c
        .stmt<{ match: string; inner: number; collection: string | null; exclude: string | null }, { id: number; rank: number; keep: number }>(SQL_DOCUMENTS_KEEP)
        .all({ match: m, inner, collection, exclude });
      const rows = keptRows(listed, limit);
      if (rows.length >= limit || listed.length < inner) return rows;
      const all = this.c.stmt<{ match: string; inner: number; limit: number; collection: string | null; exclude: string | null }, { id: number; rank: number }>(SQL_DOCUMENTS);
      return all.all({ match: m, inner: -1, limit, collection, exclude }).map((r) => ({ id: r.id, score: -r.rank }));
    };
    const unfiltered: Unfiltered | undefined =
      collection !== null || exclude !== null
        ? undefined
        : {
            topK: (m) => this.ftsTopK(DOC_FTS_INNER, m, limit),
            allLive: (ids) => ids.length === 0 || this.c.stmt<[string], number>(SQL_LIVE_DOCUMENT_COUNT).pluck().get(idList(ids)) === ids.length,
          };
    const docs = this.bm25SplitMinRows === null || pruned.lexical.length < 2 ? null : this.documentTerms(pruned);
    const rows = docs === null ? topK(match) : this.rankedSearch(match, docs, limit, topK, this.bm25DocumentPaths, unfiltered);
    return rows.map((r) => ({ documentId: r.id, score: r.score }));
  }

  /**
   * The top `limit` of `match` by bm25: one plain query, the pair cover or the optional-term split
   * (bm25-split.ts). `topK` runs one query in scope; with `unfiltered` (an unscoped search) the pair
   * cover's queries skip the liveness join and the result is checked once instead: when all of it is
   * live it is the live top k too (the live rows are a subset); otherwise the cover runs again in scope.
   */
  private rankedSearch(match: string, terms: { lexical: LexicalTerm[]; total: number }, limit: number, topK: (m: string) => ScoredRow[], paths: SearchPaths, unfiltered?: Unfiltered): ScoredRow[] {
    if (this.bm25SplitMinRows === null) return this.splitSearch(match, null, limit, topK, paths);
    const cover = this.bm25CoverMinRows === null ? null : coverPlan(terms.lexical, terms.total, this.bm25CoverMinRows);
    if (cover === null) return this.splitSearch(match, splitTerms(terms.lexical, terms.total, limit, this.bm25SplitMinRows), limit, topK, paths);
    if (unfiltered !== undefined) {
      const rows = this.coverSearch(match, cover, limit, unfiltered.topK, paths);
      if (unfiltered.allLive(rows.map((r) => r.id))) return rows;
      paths.coverRescoped++;
    }
    return this.coverSearch(match, cover, limit, topK, paths);
  }

  /**
   * The top `limit` by a pair cover (bm25-split.ts): its pair queries, then single-term queries while
   * a term's bound is above the k-th best score. With fewer than `limit` rows after the pairs, the
   * single-term queries would together score every match: one plain query does that once.
   */
  private coverSearch(match: string, plan: CoverPlan, limit: number, topK: (m: string) => ScoredRow[], paths: SearchPaths): ScoredRow[] {
    let rows: ScoredRow[] = [];
    for (const m of plan.pairs) rows = mergeBest(limit, rows, topK(m));
    if (rows.length < limit) {
      paths.coverPlain++;
      return topK(match);
    }
    paths.cover++;
    for (const s of plan.singles) {
      // Bounds descend and the k-th score only rises: once a term is below it, so are the rest.
      if (rows[limit - 1]!.score >= s.bound) break;
      paths.coverSingles++;
      rows = mergeBest(limit, rows, topK(s.match));
    }
    return rows;
  }

  /**
   * The top `limit` of `match` by bm25, through `topK` (one FTS5 query → its best `limit` rows in
   * scope), split as bm25-split.ts describes when `split` is not null; counts the path taken.
   */
  private splitSearch(match: string, split: LexicalSplit | null, limit: number, topK: (m: string) => ScoredRow[], paths: SearchPaths): ScoredRow[] {
    if (split === null) {
      paths.plain++;
      return topK(match);
    }
    const essential = termsToFtsQuery(split.essential)!;
    const optional = termsToFtsQuery(split.optional)!;
    const rows = mergeSplit(limit, topK(essential), topK(`(${optional}) AND (${essential})`));
    if (splitSettled(limit, rows, split.optionalBound)) {
      paths.settled++;
      return rows;
    }
    paths.unsettled++;
    return mergeSplit(limit, rows, [], topK(`(${optional}) NOT (${essential})`));
  }

  async bestChunks(query: string, documentIds: readonly number[]): Promise<Map<number, number>> {
    if (this.reader?.usable) return this.reader.call('bestChunks', [query, [...documentIds]]);
    this.syncExactDf();
    return this.bestChunksNow(query, documentIds);
  }

  /**
   * @param ranked the same query's ranked chunk list (searchText: the exact top k by the same bm25,
   *   in scope) with each chunk's document: a document with a chunk in it has its best chunk there
   *   (any better chunk of it would be in the top k too), so only the others need a MATCH of their own.
   */
  private bestChunksNow(query: string, documentIds: readonly number[], ranked?: ReadonlyArray<{ chunkId: number; score: number; documentId: number }>): Map<number, number> {
    const match = termsToFtsQuery(this.searchTerms(query).terms);
    const best = new Map<number, number>();
    if (match === null || documentIds.length === 0) return best;
    const ranges = this.c.stmt<[string], { documentId: number; lo: number; hi: number }>(SQL_DOC_CHUNK_RANGES).all(idList(documentIds));
    // Per document, its listed chunks best first (ties: smaller id, as bestChunkInRange orders them).
    const listed = new Map<number, Array<{ chunkId: number; score: number }>>();
    for (const r of ranked ?? []) {
      const list = listed.get(r.documentId);
      if (list) list.push(r);
      else listed.set(r.documentId, [r]);
    }
    for (const list of listed.values()) list.sort((a, b) => b.score - a.score || a.chunkId - b.chunkId);
    const stmt = this.c.stmt<{ match: string; dfs: string | null; lo: number; hi: number; doc: number }, number>(this.chunkSql.bestChunkInRange).pluck();
    let dfs: string | null | undefined;
    for (const r of ranges) {
      // Chunk ids grow with ord within a document, so [lo, hi] is its first DOC_FTS_MAX_CHUNKS chunks.
      const fromList = listed.get(r.documentId)?.find((c) => c.chunkId >= r.lo && c.chunkId <= r.hi);
      if (fromList === undefined && dfs === undefined) dfs = this.phraseDfs(match);
      const chunkId = fromList?.chunkId ?? stmt.get({ match, dfs: dfs ?? null, lo: r.lo, hi: r.hi, doc: r.documentId });
      if (chunkId !== undefined) best.set(r.documentId, chunkId);
    }
    return best;
  }

  /**
   * Always [] on this engine: SQLite has no vector index. The SQLite engine's dense search is the
   * in-process HNSW index (HnswVectorIndex, kept in step by the change feed) the retriever holds.
   */
  async searchVector(_modelId: string, _vector: Float32Array, _opts: SearchScope & { limit: number; efSearch?: number | undefined }): Promise<ScoredChunkRef[]> {
    return [];
  }

  async lexicalCandidates(query: string, opts: SearchScope & { limit: number; documentLimit: number }): Promise<LexicalCandidates> {
    if (this.reader?.usable) return this.reader.call('lexicalCandidates', [query, opts]);
    return this.lexicalCandidatesNow(query, opts);
  }

  /**
   * composeLexicalCandidates on this thread without an await between the parts, so the promise of
   * lexicalCandidates is settled when it is returned: a caller overlapping other work with it (the
   * retriever's dense search) sees it done at its next await rather than several microtasks later.
   */
  private lexicalCandidatesNow(query: string, opts: SearchScope & { limit: number; documentLimit: number }): LexicalCandidates {
    this.syncExactDf();
    const scope: SearchScope = { collection: opts.collection, excludeCollections: opts.excludeCollections };
    const live: { meta: ChunkMeta[] | null } = { meta: null };
    const chunks = this.searchTextNow(query, { ...scope, limit: opts.limit }, live);
    const meta = live.meta ?? (chunks.length === 0 ? [] : this.chunkMetaNow(chunks.map((c) => c.chunkId)));
    let documentChunks: number[] = [];
    if (opts.documentLimit > 0) {
      const docs = this.searchDocumentsNow(query, { ...scope, limit: opts.documentLimit });
      // An unranked list (terms of IDF 0, UNRANKED_SCORE) says nothing about which chunk ranks best.
      const ranked = chunks.some((c) => c.score === UNRANKED_SCORE) ? undefined : withDocuments(chunks, meta);
      const best = docs.length === 0 ? new Map<number, number>() : this.bestChunksNow(query, docs.map((d) => d.documentId), ranked);
      documentChunks = docs.map((d) => best.get(d.documentId)).filter((id): id is number => id !== undefined);
      const known = new Set(meta.map((m) => m.chunkId));
      const more = documentChunks.filter((id) => !known.has(id));
      if (more.length > 0) meta.push(...this.chunkMetaNow(more));
    }
    return { chunks, documentChunks, meta };
  }

  async chunkMeta(ids: readonly number[]): Promise<ChunkMeta[]> {
    return this.chunkMetaNow(ids);
  }

  private chunkMetaNow(ids: readonly number[]): ChunkMeta[] {
    return this.c
      .stmt<[string], ChunkMeta>(
        `SELECT c.id AS chunkId, c.document_id AS documentId, d.collection AS collection, d.weight AS weight
         FROM ${CHUNK_OWNER} JOIN documents d ON d.id = c.document_id
         WHERE c.id IN (SELECT value FROM json_each(?)) AND d.deleted_at IS NULL`,
      )
      .all(idList(ids));
  }

  async chunkRecords(ids: readonly number[]): Promise<ChunkRecord[]> {
    return this.c
      .stmt<[string], ChunkRecord>(
        `SELECT c.id AS chunkId, c.document_id AS documentId, d.collection AS collection, d.source_uri AS source, d.title AS title,
                c.heading_path AS headingPath, c.text AS text, c.content_sha256 AS contentSha256
         FROM chunks c JOIN documents d ON d.id = c.document_id
         WHERE c.id IN (SELECT value FROM json_each(?)) AND d.deleted_at IS NULL`,
      )
      .all(idList(ids));
  }

  async chunkIdsOfCollection(collection: string): Promise<number[]> {
    return this.c
      .stmt<[string], number>('SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = ? AND d.deleted_at IS NULL')
      .pluck()
      .all(collection);
  }

  async collections(): Promise<CollectionSummary[]> {
    return this.c
      .stmt<[], CollectionSummary>(
        `SELECT d.collection AS name, COUNT(DISTINCT d.id) AS documents, COUNT(c.id) AS chunks
           FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
          WHERE d.deleted_at IS NULL GROUP BY d.collection ORDER BY d.collection`,
      )
      .all();
  }

  async listDocuments(query: DocumentListQuery): Promise<DocumentListItem[]> {
    const q = query.q?.trim() ?? '';
    // Full text: every term must occur (a browse filter narrows; retrieval's OR query would not).
    const terms = q === '' ? [] : ftsTerms(q);
    const match = terms.length === 0 ? null : terms.map((t) => `"${t}"`).join(' AND ');
    const where = ['d.deleted_at IS NULL', '(@collection IS NULL OR d.collection = @collection)', '(@before IS NULL OR d.id < @before)'];
    const exclude = excludeParam(query.excludeCollections);
    if (exclude !== null) where.push('d.collection NOT IN (SELECT value FROM json_each(@exclude))');
    if (q !== '') where.push(match === null ? SQL_LIST_SUBSTRING : `(${SQL_LIST_SUBSTRING} OR ${SQL_LIST_FTS})`);
    const sql = `${SQL_DOCUMENT_ITEM} WHERE ${where.join(' AND ')} ORDER BY d.id DESC LIMIT @limit`;
    const params: Record<string, unknown> = { collection: query.collection ?? null, before: query.beforeId ?? null, limit: query.limit };
    if (exclude !== null) params.exclude = exclude;
    if (q !== '') params.like = likePattern(q);
    if (match !== null) params.match = match;
    return this.c.stmt<Record<string, unknown>, DocumentListItem>(sql).all(params);
  }

  async getDocument(id: number): Promise<DocumentListItem | null> {
    return this.c.stmt<[number], DocumentListItem>(`${SQL_DOCUMENT_ITEM} WHERE d.id = ? AND d.deleted_at IS NULL`).get(id) ?? null;
  }

  // ---------------------------------------------------------------------------------------------
  // change feed

  async feedBounds(): Promise<FeedBounds> {
    return this.c.read(() => ({
      head: this.c.stmt<[], number>(SQL_FEED_HEAD).pluck().get() ?? 0,
      first: this.c.stmt<[], number | null>('SELECT min(seq) FROM corpus_changes').pluck().get() ?? null,
    }));
  }

  async changesSince(afterSeq: number, limit: number): Promise<CorpusChange[]> {
    return this.c
      .stmt<[number, number], CorpusChange>(
        'SELECT seq, op, chunk_id AS chunkId, model_id AS modelId, collection FROM corpus_changes WHERE seq > ? ORDER BY seq LIMIT ?',
      )
      .all(afterSeq, limit);
  }

  async truncateFeed(uptoSeq: number): Promise<number> {
    return this.c.write(() => this.c.stmt<[number]>('DELETE FROM corpus_changes WHERE seq <= ?').run(uptoSeq).changes);
  }

  // ---------------------------------------------------------------------------------------------
  // checks

  async counts(): Promise<CorpusCounts> {
    const one = (sql: string) => this.c.stmt<[], number>(sql).pluck().get() ?? 0;
    return this.c.read(() => ({
      integrity: this.c.stmt<[], string>('PRAGMA quick_check').pluck().all(),
      foreignKeyViolations: this.c.stmt('PRAGMA foreign_key_check').all().length,
      documents: one('SELECT count(*) FROM documents WHERE deleted_at IS NULL'),
      documentsDeleted: one(`SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL AND source_uri NOT LIKE '${STAGING_PREFIX}%'`),
      stagingDocuments: one(`SELECT count(*) FROM documents WHERE source_uri LIKE '${STAGING_PREFIX}%'`),
      chunks: one('SELECT count(*) FROM chunks'),
      ftsRows: one('SELECT count(*) FROM chunks_fts'),
      chunksNotInFts: one('SELECT count(*) FROM chunks WHERE id NOT IN (SELECT rowid FROM chunks_fts)'),
      chunksOfDeletedDocuments: one('SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.deleted_at IS NOT NULL'),
      liveDocumentsWithoutChunks: one('SELECT count(*) FROM documents d WHERE deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM chunks WHERE document_id = d.id)'),
      duplicateOrds: one('SELECT count(*) FROM (SELECT document_id, ord FROM chunks GROUP BY document_id, ord HAVING count(*) > 1)'),
      embeddings: this.c
        .stmt<[], { modelId: string; count: number }>('SELECT model_id AS modelId, count(*) AS count FROM embeddings GROUP BY model_id')
        .all(),
    }));
  }

  async engineReport(): Promise<EngineReport> {
    const facts: Record<string, string> = {
      engine: 'sqlite',
      file: this.c.file,
      sqlite_version: this.c.stmt<[], string>('SELECT sqlite_version()').pluck().get() ?? '?',
      journal_mode: String(this.c.db.pragma('journal_mode', { simple: true })),
      secure_delete: String(this.c.db.pragma('secure_delete', { simple: true })),
      // mneme_bm25 (fts-native.ts) or, and why, FTS5's bm25(): same ranking, the extension faster.
      full_text_ranking: this.c.fts.loaded ? 'mneme_bm25 (native/build/mneme_fts.so)' : `bm25() (${this.c.fts.reason})`,
    };
    const problems: string[] = [];
    if (facts.journal_mode !== 'wal') problems.push(`journal_mode is ${facts.journal_mode}, expected wal`);
    const fts = this.c.stmt<[], number>("SELECT count(*) FROM sqlite_schema WHERE name = 'chunks_fts'").pluck().get() ?? 0;
    if (fts === 0) problems.push('the FTS5 table chunks_fts is missing');
    return { facts, problems };
  }

  /** Embeddings of `modelId` whose byte length is not `dimension` float32s. */
  async wrongSizeEmbeddings(modelId: string, dimension: number): Promise<number> {
    return this.c.stmt<[string, number], number>('SELECT count(*) FROM embeddings WHERE model_id = ? AND length(vector) != ?').pluck().get(modelId, dimension * 4) ?? 0;
  }
}

/** The ranked chunks whose metadata is known (live), each with its document. */
function withDocuments(chunks: readonly ScoredChunkRef[], meta: readonly ChunkMeta[]): Array<{ chunkId: number; score: number; documentId: number }> {
  const docOf = new Map(meta.map((m) => [m.chunkId, m.documentId]));
  const out: Array<{ chunkId: number; score: number; documentId: number }> = [];
  for (const c of chunks) {
    const documentId = docOf.get(c.chunkId);
    if (documentId !== undefined) out.push({ chunkId: c.chunkId, score: c.score, documentId });
  }
  return out;
}
