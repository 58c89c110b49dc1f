/** Shapes shared by retrieval, answering and the HTTP layer. */
import type { PersonalizationSignals } from '../features/types.ts';

export interface RetrievedChunk {
  chunkId: number;
  documentId: number;
  collection: string;
  /** The document's source path (absolute file path). */
  source: string;
  title: string;
  headingPath: string;
  text: string;
  /** sha256 of the chunk text, logged so an answer can be checked against the corpus later. */
  contentSha256: string;
  /** Fused score (reciprocal rank fusion, after personalization re-rank), higher is better. */
  score: number;
  /** 1-based rank in the BM25 list, null when absent from it. */
  bm25Rank: number | null;
  /** 1-based rank in the dense list, null when absent from it (or no embedder). */
  denseRank: number | null;
}

/** What personalization knows about the asking user (defined by the features pipeline). */
export type { PersonalizationSignals } from '../features/types.ts';

export interface RetrieveRequest {
  query: string;
  /** Number of chunks to return (1..50). */
  topK: number;
  collection?: string | undefined;
  /**
   * Collections the asking user may not read (issue 14, access control: CollectionScope.hidden):
   * their chunks are filtered out of every candidate list before ranking. Absent or []: none.
   */
  excludeCollections?: readonly string[] | undefined;
  personalization?: PersonalizationSignals | undefined;
  /** What to run (a release's retrieval setting); default 'hybrid'. 'bm25' does not embed the query. */
  mode?: 'hybrid' | 'bm25' | 'dense' | undefined;
  /** RRF constant and per-list weights (a release's fusion setting); default RRF_K and 1, 1. */
  fusion?: FusionSettings | undefined;
}

/** Weighted reciprocal rank fusion: score = Σ weight/(k + rank). */
export interface FusionSettings {
  k: number;
  bm25Weight: number;
  denseWeight: number;
}

export interface RetrieveResult {
  chunks: RetrievedChunk[];
  /**
   * What actually ran: hybrid when vectors were available, bm25 otherwise; bm25_fallback when an
   * embedder is configured but was down for this query (a worker crashed and is respawning).
   */
  mode: 'hybrid' | 'bm25' | 'dense' | 'bm25_fallback';
  /** The query embedding, when one was computed (features use it for the interest vector). */
  queryVector: Float32Array | null;
  timings: { embed_ms: number; bm25_ms: number; dense_ms: number; fuse_ms: number };
}

export interface Retriever {
  /** @throws ValidationError for an empty query or a topK out of range. */
  retrieve(req: RetrieveRequest): Promise<RetrieveResult>;
}
