/**
 * Documents, chunks, embeddings, index generations, corpus state and the change feed.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/corpus.ts.
 *
 * Visibility rule every search and read obeys: a chunk is served only while its document is live
 * (not tombstoned, not a staging copy of a large document still being written).
 */

/** The terms full-text search looks for (one tokenizer for both engines), re-exported for the pipelines. */
export { ftsTerms, STOPWORDS as FTS_STOPWORDS } from './sqlite/fts-query.ts';

/** A collection with live documents, as listed to users (unknown `collection` errors, GET /v1/collections-style lists). */
export interface CollectionSummary {
  name: string;
  /** Live (not tombstoned, not staging) documents. */
  documents: number;
  /** Their chunks. */
  chunks: number;
}

/** A live document as browsed by people (GET /v1/documents). */
export interface DocumentListItem {
  id: number;
  collection: string;
  title: string;
  /** The stored source (absolute path, URL or `upload:NAME`); routes show displaySource() of it. */
  sourceUri: string;
  kind: string;
  /** Size of the raw file, in bytes. */
  bytes: number;
  /** Live chunks. */
  chunks: number;
  ingestedAt: string;
  /** Last content change (ISO-8601 UTC). */
  updatedAt: string;
}

/** Filters of `listDocuments`: one keyset page, newest document id first. */
export interface DocumentListQuery {
  collection?: string | undefined;
  /** Collections left out (those the caller may not read: CollectionAccess.hidden). */
  excludeCollections?: readonly string[] | undefined;
  /**
   * Case-insensitive substring of the title or the source, or a full-text match of the document
   * (title + text); absent or blank: every document.
   */
  q?: string | undefined;
  /** Keyset cursor: only documents with an id below this one (the last id of the previous page). */
  beforeId?: number | undefined;
  /** Page size (rows). */
  limit: number;
}

/** Which collections a search covers: one (`collection`), and never those in `excludeCollections`. */
export interface SearchScope {
  collection?: string | undefined;
  /** Collections whose chunks are never candidates (a user's unreadable ones); absent or []: none. */
  excludeCollections?: readonly string[] | undefined;
}

/** `excludeCollections` as the engines' JSON-array parameter, or null when nothing is excluded (pure). */
export function excludeParam(exclude: readonly string[] | undefined): string | null {
  return exclude === undefined || exclude.length === 0 ? null : JSON.stringify(exclude);
}

export interface DocumentRef {
  id: number;
  contentSha256: string;
  /** Tombstone time (pruned or deleted), null while live. */
  deletedAt: string | null;
}

export interface NewDocument {
  collection: string;
  /** Absolute path (or URL) of the source. */
  sourceUri: string;
  /** sha256 hex of the raw bytes. */
  contentSha256: string;
  title: string;
  kind: string;
  bytes: number;
  /**
   * Ranking weight in (0, 1] (default 1): < 1 for navigation pages (indexes, tables of contents,
   * release notes) recognized at ingest; the retriever multiplies the fused score by it.
   */
  weight?: number | undefined;
}

export interface NewChunk {
  ord: number;
  text: string;
  headingPath: string;
  tokenCount: number;
  /** sha256 of exactly what was embedded (heading path line + text). */
  contentSha256: string;
  /** Its vector for `modelId` of the replace call; absent = stored unembedded (BM25 only). */
  vector?: Float32Array | undefined;
}

export interface ReplaceDocumentResult {
  documentId: number;
  chunksAdded: number;
  chunksDeleted: number;
  /** Chunk ids whose vectors were stored, with the vectors (for the caller's in-memory index). */
  vectorsAdded: Array<[number, Float32Array]>;
  /** Chunk ids removed (their labels leave the index). */
  chunkIdsRemoved: number[];
}

export interface ChunkText {
  id: number;
  text: string;
  headingPath: string;
}

/** One vector-index generation (one embedding model's HNSW file). */
export interface IndexGeneration {
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
  /** Relative to the data dir. */
  file: string;
  status: 'building' | 'active' | 'retired';
  createdAt: string;
  activatedAt: string | null;
  /** Change-feed position the saved file reflects; null = unknown (reconcile in full). */
  savedFeedSeq: number | null;
  /** Last ef_search calibration (src/core/index-store.ts calibrateGeneration); all null until calibrated. */
  calibration: EfCalibration | null;
}

/** The smallest ef of a ladder whose recall@10 against exact search reached the target. */
export interface EfCalibration {
  ef: number;
  /** recall@10 measured at `ef`, in [0, 1] (below the target when no ef of the ladder reached it). */
  recall: number;
  /** ISO-8601. */
  at: string;
  /** Vectors in the index when it was measured. */
  vectors: number;
}

export interface NewGeneration {
  modelId: string;
  dimension: number;
  pooling: string;
  normalized: boolean;
  maxTokens: number;
  hnswM: number;
  hnswEfConstruction: number;
  hnswEfSearch: number;
}

/** A BM25 or dense hit: higher score is better; scores compare only within one result list. */
export interface ScoredChunkRef {
  chunkId: number;
  score: number;
}

export interface ChunkMeta {
  chunkId: number;
  documentId: number;
  collection: string;
  /**
   * The document's ranking weight (documents.weight: 1 for content, < 1 for navigation pages such as
   * indexes, tables of contents and release notes); returned by `chunkMeta`, absent elsewhere.
   */
  weight?: number;
}

/** The lexical side of a hybrid retrieval, from one `lexicalCandidates` call. */
export interface LexicalCandidates {
  /** `searchText` hits, best first. */
  chunks: ScoredChunkRef[];
  /** The document-level list: each `searchDocuments` hit (best first) as its `bestChunks` chunk; documents without one left out. */
  documentChunks: number[];
  /** `chunkMeta` of every chunk in either list. */
  meta: ChunkMeta[];
}

export interface ChunkRecord extends ChunkMeta {
  source: string;
  title: string;
  headingPath: string;
  text: string;
  contentSha256: string;
}

export type ChangeOp = 'chunk+' | 'chunk-' | 'vector+' | 'vector-';

export interface CorpusChange {
  seq: number;
  op: ChangeOp;
  chunkId: number;
  /** Vector changes: the embedding model. */
  modelId: string | null;
  /** Chunk changes: the collection of the chunk's document. */
  collection: string | null;
}

export interface FeedBounds {
  /** Highest sequence ever assigned (0 = none yet). */
  head: number;
  /** Lowest sequence still stored, null when the feed is empty (truncated or never written). */
  first: number | null;
}

/** Raw counts doctor interprets (no judgement here). */
export interface CorpusCounts {
  documents: number;
  documentsDeleted: number;
  chunks: number;
  ftsRows: number;
  chunksNotInFts: number;
  chunksOfDeletedDocuments: number;
  liveDocumentsWithoutChunks: number;
  duplicateOrds: number;
  stagingDocuments: number;
  integrity: string[];
  foreignKeyViolations: number;
  /** Per embedding model: how many vectors, and how many have the wrong byte length for `dimension`. */
  embeddings: Array<{ modelId: string; count: number }>;
}

export interface EngineReport {
  facts: Record<string, string>;
  problems: string[];
}

export interface CorpusStore {
  /**
   * True when the engine searches vectors itself (`searchVector`: PostgreSQL + pgvector); false when
   * dense search is the process's own HNSW index following the change feed (SQLite).
   */
  readonly nativeVectorSearch: boolean;
  // --- documents (ingestion) ---
  findDocument(collection: string, sourceUri: string): Promise<DocumentRef | null>;
  /** Vectors of `documentId`'s current chunks for `modelId`, by chunk content hash (for reuse on edits). */
  vectorsByContentHash(documentId: number, modelId: string): Promise<Map<string, Float32Array>>;
  /**
   * Atomically replaces a document's chunks (old chunks, FTS rows and vectors go; new ones come;
   * the change feed records each). Readers see the old version or the new one, never a mix. A
   * document of more than the engine's bounded-transaction size is written under a staging copy in
   * several short transactions and made visible in one final short one (its id then changes).
   * @param existing the document's current row, if any (from findDocument)
   * @param modelId the model of the given vectors (null: none given)
   */
  replaceDocument(doc: NewDocument, chunks: NewChunk[], existing: DocumentRef | null, modelId: string | null): Promise<ReplaceDocumentResult>;
  /** Live documents of a collection (id, source) — for pruning. */
  liveDocuments(collection: string): Promise<Array<{ id: number; sourceUri: string }>>;
  /** Tombstones a document and deletes its chunks (bounded transactions). Returns the removed chunk ids. */
  deleteDocument(documentId: number): Promise<number[]>;
  /** Removes what a killed run left: staging copies and chunks of tombstoned documents. Returns chunk ids removed. */
  cleanupInterrupted(): Promise<number[]>;
  /** Live chunk ids and sources of a collection (evaluation maps sources to BEIR doc ids). */
  chunkSources(collection: string): Promise<Array<{ id: number; sourceUri: string }>>;
  startIngestRun(): Promise<number>;
  finishIngestRun(id: number, summary: unknown): Promise<void>;

  // --- embeddings ---
  /** Chunks without a `modelId` vector, id > afterId, ascending, at most `limit`. */
  chunksMissingEmbedding(modelId: string, afterId: number, limit: number): Promise<ChunkText[]>;
  /** Stores vectors (ignores chunks deleted meanwhile and vectors already present). Returns how many were stored. */
  addEmbeddings(modelId: string, rows: Array<[number, Float32Array]>): Promise<number>;
  embeddingCount(modelId: string): Promise<number>;
  /** A page of stored vectors, chunk id > afterId ascending. */
  embeddingsPage(modelId: string, afterId: number, limit: number): Promise<Array<[number, Float32Array]>>;
  embeddedChunkIds(modelId: string): Promise<Set<number>>;
  /** Stored vectors of the given chunks (missing ones absent from the map). */
  vectorsOf(modelId: string, chunkIds: readonly number[]): Promise<Map<number, Float32Array>>;

  /**
   * After a bulk ingest, what the engine needs to search at full speed (SQLite: chunks_fts and
   * documents_fts merged into one FTS5 segment each, in bounded write transactions; PostgreSQL:
   * ANALYZE of the corpus tables, so the planner walks the HNSW index rather than scanning). Cost ∝
   * the index size (SQLite) or a fixed sample (PostgreSQL); results unchanged.
   */
  optimizeFullText(): Promise<void>;

  // --- index generations ---
  activeGeneration(): Promise<IndexGeneration | null>;
  buildingGeneration(modelId: string): Promise<IndexGeneration | null>;
  generations(status: IndexGeneration['status']): Promise<IndexGeneration[]>;
  createGeneration(g: NewGeneration, status: 'building' | 'active'): Promise<IndexGeneration>;
  /** Makes `generation` active, retires the previous one and deletes its vectors when its model differs. */
  activateGeneration(generation: number): Promise<IndexGeneration | null>;
  /** Records that `generation`'s file was saved reflecting the feed up to `feedSeq`. */
  recordIndexSaved(generation: number, feedSeq: number): Promise<void>;
  /** Records `generation`'s ef_search calibration (replacing the previous one). */
  recordCalibration(generation: number, calibration: EfCalibration): Promise<void>;
  /**
   * Cheap check of whether an ingest must load the vector stack although no file changed: the saved
   * index lags the feed, chunks lack vectors, or the configured model differs.
   */
  vectorWorkPending(configuredModel: string | null): Promise<boolean>;

  // --- retrieval ---
  // Every search takes `excludeCollections` (issue 14, access control): chunks of those collections
  // are filtered out before ranking and the limit, inside the engine, so they are never candidates.
  /** Full-text search over live chunks, best first (BM25 on SQLite). [] when the query has no searchable term. */
  searchText(query: string, opts: SearchScope & { limit: number }): Promise<ScoredChunkRef[]>;
  /**
   * Full-text search over whole live documents (title + all chunk texts: SQLite FTS5 `documents_fts`,
   * PostgreSQL `documents.tsv`), best first, so terms spread over several chunks of one document
   * still count together. [] when the query has no searchable term.
   */
  searchDocuments(query: string, opts: SearchScope & { limit: number }): Promise<Array<{ documentId: number; score: number }>>;
  /**
   * For each of `documentIds`, its live chunk that ranks best for `query` in full-text search
   * (documents none of whose chunks matches are absent). documentId → chunkId.
   */
  bestChunks(query: string, documentIds: readonly number[]): Promise<Map<number, number>>;
  /**
   * Dense search: live chunks whose `modelId` vector is nearest to `vector` by cosine, best first;
   * score = cosine similarity (higher is better). With `collection`, still up to `limit` rows of that
   * collection. Engines with a native vector index (PostgreSQL + pgvector HNSW) answer here; the
   * SQLite engine returns [] (its dense search is the in-process HnswVectorIndex the retriever holds).
   * @param opts.efSearch HNSW candidate-list size; default the model's generation's hnswEfSearch
   */
  searchVector(
    modelId: string,
    vector: Float32Array,
    opts: SearchScope & { limit: number; efSearch?: number | undefined },
  ): Promise<ScoredChunkRef[]>;
  /**
   * searchText, the document-level list (searchDocuments → bestChunks; skipped when `documentLimit`
   * is 0) and the chunkMeta of their chunks, as {@link composeLexicalCandidates} defines them. One
   * call so an engine can run it in one place: SQLite servers on their reader thread, in one round
   * trip, while the caller runs the dense search.
   */
  lexicalCandidates(query: string, opts: SearchScope & { limit: number; documentLimit: number }): Promise<LexicalCandidates>;
  /** Document and collection of live chunks among `ids` (stale ids absent). */
  chunkMeta(ids: readonly number[]): Promise<ChunkMeta[]>;
  /** Texts and metadata of live chunks among `ids` (stale ids absent). */
  chunkRecords(ids: readonly number[]): Promise<ChunkRecord[]>;
  /** Ids of the live chunks of a collection. */
  chunkIdsOfCollection(collection: string): Promise<number[]>;
  /** Collections with at least one live document, by name (byte order), with their live document and chunk counts. */
  collections(): Promise<CollectionSummary[]>;
  /** One keyset page of live documents, id descending (see DocumentListQuery). */
  listDocuments(query: DocumentListQuery): Promise<DocumentListItem[]>;
  /** A live document (null: unknown, deleted, or a staging copy). */
  getDocument(id: number): Promise<DocumentListItem | null>;

  // --- change feed ---
  feedBounds(): Promise<FeedBounds>;
  /** Changes with seq > afterSeq, ascending, at most `limit`. */
  changesSince(afterSeq: number, limit: number): Promise<CorpusChange[]>;
  /** Deletes feed rows with seq ≤ uptoSeq (the oldest history; the head is kept). */
  truncateFeed(uptoSeq: number): Promise<number>;

  // --- checks ---
  counts(): Promise<CorpusCounts>;
  /**
   * What `doctor` reports about the engine itself: facts (versions, settings) and problems (a missing
   * extension, a missing vector index for the active generation).
   */
  engineReport(active: IndexGeneration | null): Promise<EngineReport>;
  /** Embeddings of `modelId` whose stored size is not `dimension` float32 values. */
  wrongSizeEmbeddings(modelId: string, dimension: number): Promise<number>;
}

/**
 * {@link CorpusStore.lexicalCandidates} from the store's own searches, its definition: the chunk and
 * document searches at once, then the best chunk of each listed document, then the metadata of every
 * chunk in either list. PostgreSQL runs it as is; SQLite runs the same steps without an await between
 * them (the contract suite checks both against the separate calls).
 */
export async function composeLexicalCandidates(
  corpus: Pick<CorpusStore, 'searchText' | 'searchDocuments' | 'bestChunks' | 'chunkMeta'>,
  query: string,
  opts: SearchScope & { limit: number; documentLimit: number },
): Promise<LexicalCandidates> {
  const scope: SearchScope = { collection: opts.collection, excludeCollections: opts.excludeCollections };
  const documentList = async (): Promise<number[]> => {
    if (opts.documentLimit <= 0) return [];
    const docs = await corpus.searchDocuments(query, { ...scope, limit: opts.documentLimit });
    if (docs.length === 0) return [];
    const best = await corpus.bestChunks(query, docs.map((d) => d.documentId));
    return docs.map((d) => best.get(d.documentId)).filter((id): id is number => id !== undefined);
  };
  const [chunks, documentChunks] = await Promise.all([corpus.searchText(query, { ...scope, limit: opts.limit }), documentList()]);
  const ids = [...new Set([...chunks.map((c) => c.chunkId), ...documentChunks])];
  const meta = ids.length === 0 ? [] : await corpus.chunkMeta(ids);
  return { chunks, documentChunks, meta };
}
