/**
 * Hybrid retrieval: BM25 over FTS5 + dense search over the HNSW index, fused with reciprocal rank
 * fusion, near-duplicates removed, re-ranked by the user's personalization signals.
 *
 * Pipeline of one `retrieve`:
 *   embed query (worker thread) → BM25 top BM25_CANDIDATES ∥ dense top DENSE_CANDIDATES
 *   → RRF → metadata + live/collection check → personalization → near-duplicate removal → top_k.
 *
 * The store is the truth: every candidate is re-checked (live document, requested collection)
 * before it is returned, so a chunk pruned by another process is never served even while the
 * in-memory index still holds its vector. The index follows the store through the change feed
 * (src/core/index-sync.ts), in the background.
 */
import type { LoadedIndex } from '../core/deps.ts';
import type { Embedder } from '../core/embedder.ts';
import { EmbedderUnavailableError } from '../core/embedder.ts';
import { ValidationError } from '../core/errors.ts';
import { FEED_POLL_INTERVAL_MS, IndexSyncer } from '../core/index-sync.ts';
import type { SyncLogger } from '../core/index-sync.ts';
import type { ChunkMeta, ChunkRecord } from '../core/store/corpus.ts';
import type { Store } from '../core/store/index.ts';
import { CollectionOrdinals, exactTopK } from './collection-ordinals.ts';
import { stemWord, wordsOf } from '../features/personalize.ts';
import type { FusionSettings, PersonalizationSignals, RetrieveRequest, RetrieveResult, RetrievedChunk, Retriever } from './types.ts';

/**
 * RRF constant: score = Σ 1/(k + rank). 60 is the value of the original RRF paper (Cormack et al.
 * 2009) and the de-facto default (Elasticsearch, OpenSearch): it damps the top ranks so that one
 * list cannot dominate, while rank differences deep in a list still count.
 */
export const RRF_K = 60;
/** Chunks taken from the BM25 list before fusion. */
export const BM25_CANDIDATES = 100;
/** Chunks taken from the dense list before fusion. */
export const DENSE_CANDIDATES = 100;
/**
 * Documents taken from the document-level full-text list (title + whole text, so terms spread over
 * several chunks of one document count together) before fusion; each maps to its best-matching
 * chunk and enters RRF as a third list. 0 disables it.
 */
export const DOCUMENT_CANDIDATES = 30;
/** RRF weight of the document-level list (the chunk lists weigh 1 each unless a release's fusion setting says otherwise). */
export const DOCUMENT_LIST_WEIGHT = 1;
/** Largest `topK` a request may ask for. */
export const MAX_TOP_K = 50;
/**
 * Word-3-shingle Jaccard at or above which two chunks count as near-duplicates (default 0.9).
 * One changed word in a 100-word chunk changes ~3 of ~98 shingles (J ≈ 0.94), so re-saved copies,
 * a file ingested twice with a new footer, or mirrored docs are caught; two genuinely different
 * sections that merely share boilerplate stay well below 0.9.
 */
export const NEAR_DUPLICATE_JACCARD = 0.9;
/** Words per shingle for the near-duplicate test. */
export const SHINGLE_WORDS = 3;
/**
 * A scoped dense search (access control, a requested collection) that admits at most this many
 * live chunks, and at most DENSE_EXACT_SCAN_MAX_SHARE of the index, scans their stored vectors
 * exactly instead of a filtered HNSW search. The graph search visits ever more of the graph as the
 * admitted share shrinks (100k vectors, p50: 10 ms at 10 %, 115 ms at 1 %, 194 ms at 0.2 %), the
 * exact scan costs ~0.06 ms per admitted vector read from the store (60 ms for 1 000, 10 ms for
 * 200; recall 1 against the graph's 0.95 at 1 %); bench/README.md. 0 disables the exact path.
 */
export const DENSE_EXACT_SCAN_MAX = 1000;
/** See DENSE_EXACT_SCAN_MAX: in a small index a scope of a few hundred chunks is a large share, and the graph search is cheap there. */
export const DENSE_EXACT_SCAN_MAX_SHARE = 0.01;
/** Texts are fetched in windows of at least this many candidates while removing near-duplicates. */
export const HYDRATE_WINDOW = 20;

/**
 * Personalization boosts, in "RRF units" (the score of a rank-1 hit in one list, 1/(RRF_K+1)),
 * multiplied by `weight`. At the default weight 0.3 an engaged document's chunk gains 0.15 units,
 * which moves a chunk ranked ~30th in both lists to ~20th: a nudge, never a takeover of relevance.
 */
export const PERSONAL_ENGAGED_BOOST = 0.5;
export const PERSONAL_COLLECTION_BOOST = 0.25;
/** A chunk cited by an answer the user rated down, at the moment of the rating (then fading, see FEEDBACK_HALF_LIFE_DAYS). */
export const PERSONAL_DISLIKED_PENALTY = 1.0;
/** A chunk whose text contains every key term of a correction, at the moment of the correction (partial matches: pro rata). */
export const PERSONAL_CORRECTION_BOOST = 1.0;
/** Multiplies cosine(interestVector, chunk vector) ∈ [-1, 1]. */
export const PERSONAL_INTEREST_BOOST = 0.5;
/**
 * Bounds of one chunk's total personalization adjustment, in RRF units (before `weight`): whatever
 * the signals, a chunk moves by at most this much (at weight 0.3: ±0.45 units, i.e. a rank-1 hit of
 * one list falls at worst to about rank 50 of that list; the pinning below keeps it in top_k anyway).
 */
export const PERSONAL_MAX_DEMOTION = 1.5;
export const PERSONAL_MAX_PROMOTION = 1.5;
/** Feedback signals (thumbs-down, corrections) halve in effect every this many days after they were given. */
export const FEEDBACK_HALF_LIFE_DAYS = 14;
const DAY_MS = 86_400_000;
/** A correction counts for a chunk only when the chunk contains at least this many of its key terms (or all, when it has fewer). */
export const CORRECTION_MIN_MATCHED_TERMS = 2;
/**
 * Documents flagged at ingest as navigation (indexes, tables of contents, release notes) carry a
 * weight < 1 (documents.weight, set by `mneme ingest`); the fused score is multiplied by it, clamped
 * to [MIN_DOCUMENT_WEIGHT, 1]. At 0.5 a page that is rank 1 in both lists scores like a rank-1 hit in
 * one list: demoted below real content, still reachable.
 */
export const MIN_DOCUMENT_WEIGHT = 0.1;

export type RetrievalMode = 'hybrid' | 'bm25' | 'dense';

export interface ScoredChunk {
  chunkId: number;
  /** BM25: -bm25 (higher is better). Dense: cosine similarity. */
  score: number;
}

export interface FusedCandidate {
  chunkId: number;
  /** RRF score, higher is better. */
  score: number;
  bm25Rank: number | null;
  denseRank: number | null;
}

/** A fused candidate with its document (live when fetched), collection and document weight applied to `score`. */
export interface WeightedCandidate extends FusedCandidate {
  documentId: number;
  collection: string;
  /** The document's ranking weight (documents.weight, clamped to [MIN_DOCUMENT_WEIGHT, 1]). */
  weight: number;
}

/** Stage times in ms. The stages overlap: bm25_ms runs from the start to the lexical call's end, so it includes dense_ms (and any wait for the query vector). */
export interface CandidateTimings {
  /** Until the full-text searches and their chunks' metadata were back. */
  bm25_ms: number;
  /** The graph search and the start (SQLite: all) of its hits' metadata read. */
  dense_ms: number;
  /** Fusion, document weights, then (retrieveWithVector) personalization, hydration and near-duplicate removal. */
  fuse_ms: number;
}

// ---------------------------------------------------------------------------------------------
// Pure functions

/**
 * Reciprocal rank fusion of ranked id lists (best first). Returns id → Σ 1/(k + rank) with 1-based
 * ranks; an id repeated within one list counts once (its best rank). Map order = first appearance
 * scanning the lists in order, which {@link rankFused} uses as a tie-break.
 */
export function fuseRrf(lists: number[][], k = RRF_K, weights: readonly number[] = []): Map<number, number> {
  const scores = new Map<number, number>();
  for (const [li, list] of lists.entries()) {
    const seen = new Set<number>();
    const w = weights[li] ?? 1;
    list.forEach((id, i) => {
      if (seen.has(id)) return;
      seen.add(id);
      scores.set(id, (scores.get(id) ?? 0) + w / (k + i + 1));
    });
  }
  return scores;
}

/**
 * Fuses a BM25 and a dense list into candidates sorted by RRF score (ties: the better best-rank,
 * then the smaller chunk id, so the order is deterministic).
 */
export function rankFused(
  bm25: readonly number[],
  dense: readonly number[],
  k = RRF_K,
  weights: readonly [number, number] = [1, 1],
  documents: readonly number[] = [],
): FusedCandidate[] {
  const bm25Rank = firstRanks(bm25);
  const denseRank = firstRanks(dense);
  const scores = fuseRrf([bm25 as number[], dense as number[], documents as number[]], k, [...weights, DOCUMENT_LIST_WEIGHT]);
  const out: FusedCandidate[] = [];
  for (const [chunkId, score] of scores) {
    out.push({ chunkId, score, bm25Rank: bm25Rank.get(chunkId) ?? null, denseRank: denseRank.get(chunkId) ?? null });
  }
  const best = (c: FusedCandidate) => Math.min(c.bm25Rank ?? Infinity, c.denseRank ?? Infinity);
  out.sort((a, b) => b.score - a.score || best(a) - best(b) || a.chunkId - b.chunkId);
  return out;
}

function firstRanks(list: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  list.forEach((id, i) => {
    if (!m.has(id)) m.set(id, i + 1);
  });
  return m;
}

/** Lower-cased words of `text` (letters/digits runs), NFKC-normalized: the unit of duplicate tests. */
function normalizedWords(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/**
 * Incremental near-duplicate filter: `accept` returns false for a text that is an exact duplicate
 * (same normalized words) or a near-duplicate (word-shingle Jaccard ≥ threshold) of one accepted
 * before. Feed items best-first so the better-ranked copy is the one kept.
 */
export class NearDuplicateFilter {
  private readonly exact = new Set<string>();
  private readonly kept: Array<Set<number>> = [];
  /** Word → small integer, so shingles are hashed numbers rather than concatenated strings. */
  private readonly wordIds = new Map<string, number>();

  constructor(private readonly threshold = NEAR_DUPLICATE_JACCARD, private readonly shingleWords = SHINGLE_WORDS) {}

  accept(text: string): boolean {
    const words = normalizedWords(text);
    const key = words.join(' ');
    if (this.exact.has(key)) return false;
    const shingles = this.shingles(words);
    for (const other of this.kept) {
      // |A∩B|/|A∪B| ≤ min/max: skip pairs whose sizes alone rule a match out.
      const small = Math.min(shingles.size, other.size);
      const large = Math.max(shingles.size, other.size);
      if (large === 0 || small / large < this.threshold) continue;
      if (jaccardAtLeast(shingles, other, this.threshold)) return false;
    }
    this.exact.add(key);
    this.kept.push(shingles);
    return true;
  }

  /**
   * Hashed word-n-gram set (32-bit FNV-1a over word ids). A collision can only merge two of the
   * ~10^2 shingles of a chunk among 2^32 values: negligible next to the threshold's own tolerance.
   * Fewer words than n: one shingle of all of them.
   */
  private shingles(words: string[]): Set<number> {
    const ids = words.map((w) => {
      let id = this.wordIds.get(w);
      if (id === undefined) this.wordIds.set(w, (id = this.wordIds.size + 1));
      return id;
    });
    const s = new Set<number>();
    const n = Math.min(this.shingleWords, ids.length);
    if (n === 0) return s;
    for (let i = 0; i + n <= ids.length; i++) {
      let h = 0x811c9dc5;
      for (let j = 0; j < n; j++) h = Math.imul(h ^ ids[i + j]!, 0x01000193);
      s.add(h >>> 0);
    }
    return s;
  }
}

/**
 * Jaccard(a, b) ≥ threshold, same result as computing it, but it stops as soon as the shingles left
 * cannot reach the intersection the threshold needs (|A∩B| ≥ t·(|A|+|B|)/(1+t)): unrelated chunks,
 * the common case, are ruled out after a handful of lookups instead of all of them.
 */
function jaccardAtLeast(a: Set<number>, b: Set<number>, threshold: number): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  const needed = (threshold * (a.size + b.size)) / (1 + threshold) - 1e-9;
  let inter = 0;
  let left = small.size;
  for (const x of small) {
    if (large.has(x)) inter++;
    left--;
    if (inter + left < needed) return false;
  }
  const union = a.size + b.size - inter;
  return union === 0 || inter / union >= threshold;
}

/**
 * Removes exact (normalized text) and near-duplicate items (word-3-shingle Jaccard ≥
 * NEAR_DUPLICATE_JACCARD), keeping the first (better-ranked) of each group. Order is preserved.
 */
export function dedupeNearDuplicates<T extends { text: string }>(items: T[], threshold = NEAR_DUPLICATE_JACCARD): T[] {
  const filter = new NearDuplicateFilter(threshold);
  return items.filter((item) => filter.accept(item.text));
}

export interface PersonalizableItem {
  chunkId: number;
  documentId: number;
  collection: string;
  score: number;
  /** The chunk's stored embedding; needed only for the interest-vector term. */
  vector?: Float32Array | null | undefined;
  /** The chunk's text; needed only for correction matching. */
  text?: string | undefined;
}

/** 2^(−age / FEEDBACK_HALF_LIFE_DAYS): 1 for feedback given now (or in the future), ½ after one half-life. */
export function feedbackDecay(ageMs: number): number {
  return 2 ** (-Math.max(0, ageMs) / (FEEDBACK_HALF_LIFE_DAYS * DAY_MS));
}

/**
 * Share of a correction's key terms a chunk contains, 0 below CORRECTION_MIN_MATCHED_TERMS (or below
 * all of them for a shorter correction). `words`: the chunk's stemmed words.
 */
export function correctionMatch(terms: readonly string[], words: ReadonlySet<string>): number {
  if (terms.length === 0) return 0;
  const matched = terms.filter((t) => words.has(t)).length;
  return matched >= Math.min(CORRECTION_MIN_MATCHED_TERMS, terms.length) ? matched / terms.length : 0;
}

interface BoostContext {
  engaged: Set<number>;
  collections: Set<string>;
  interestNorm: number;
  nowMs: number;
}

/** The personalization adjustment of one item, in RRF units before `weight`, clamped to the bounds. */
function personalBoost(item: PersonalizableItem, signals: PersonalizationSignals, ctx: BoostContext): number {
  let boost = 0;
  if (ctx.engaged.has(item.documentId)) boost += PERSONAL_ENGAGED_BOOST;
  if (ctx.collections.has(item.collection)) boost += PERSONAL_COLLECTION_BOOST;
  const dislikedAt = signals.dislikedChunks.get(item.chunkId);
  if (dislikedAt !== undefined) boost -= PERSONAL_DISLIKED_PENALTY * feedbackDecay(ctx.nowMs - dislikedAt);
  if (signals.corrections.length > 0 && item.text) {
    const words = new Set(wordsOf(item.text).map(stemWord));
    let best = 0;
    for (const c of signals.corrections) best = Math.max(best, correctionMatch(c.terms, words) * feedbackDecay(ctx.nowMs - c.atMs));
    boost += PERSONAL_CORRECTION_BOOST * best;
  }
  const interest = signals.interestVector;
  const v = item.vector;
  // A vector of another model (dimension mismatch) says nothing about this user's interest.
  if (interest && ctx.interestNorm > 0 && v && v.length === interest.length) {
    const vn = l2(v);
    if (vn > 0) boost += PERSONAL_INTEREST_BOOST * (dot(interest, v) / (ctx.interestNorm * vn));
  }
  return Math.min(PERSONAL_MAX_PROMOTION, Math.max(-PERSONAL_MAX_DEMOTION, boost));
}

/**
 * Re-ranks `items` (best-first, by `score`) with the user's signals and returns new objects with the
 * adjusted score, sorted best-first (stable: equal scores keep their input order). Only re-orders:
 * no item is added or removed.
 *
 * adjusted = score + weight·unit·clamp( PERSONAL_ENGAGED_BOOST·[engaged doc]
 *                                      + PERSONAL_COLLECTION_BOOST·[top collection]
 *                                      − PERSONAL_DISLIKED_PENALTY·decay(age of the thumbs-down)·[chunk cited by a disliked answer]
 *                                      + PERSONAL_CORRECTION_BOOST·max over corrections of decay·share of its terms in the chunk
 *                                      + PERSONAL_INTEREST_BOOST·cos(interestVector, vector),
 *                                      −PERSONAL_MAX_DEMOTION, PERSONAL_MAX_PROMOTION )
 *
 * With no signals, or a weight that is not > 0 (0, negative, NaN), the input order and scores are
 * returned unchanged (same objects, a new array): personalization off means exactly off.
 * @param unit score scale of one boost unit; default 1/(RRF_K+1), the RRF score of a rank-1 hit.
 * @param nowMs the clock feedback ages against (epoch ms); default now.
 */
export function personalizeScores<T extends PersonalizableItem>(
  items: readonly T[],
  signals: PersonalizationSignals | null | undefined,
  unit = 1 / (RRF_K + 1),
  nowMs = Date.now(),
): T[] {
  if (!signals || !(signals.weight > 0) || !Number.isFinite(signals.weight)) return [...items];
  const interest = signals.interestVector;
  const ctx: BoostContext = { engaged: new Set(signals.engagedDocuments), collections: new Set(signals.topCollections), interestNorm: interest ? l2(interest) : 0, nowMs };
  const scale = signals.weight * unit;
  const adjusted = items.map((item, i) => ({ item: { ...item, score: item.score + scale * personalBoost(item, signals, ctx) }, i }));
  adjusted.sort((a, b) => b.item.score - a.item.score || a.i - b.i);
  return adjusted.map((a) => a.item);
}

/**
 * Moves the `pinned` items (by chunk id; at most topK of them, first ones first) that sit at or
 * beyond position topK into the last slots of the top topK, keeping every other item's relative
 * order: whatever re-ranking did, a pinned item is returned within the first topK. Pure.
 */
export function pinWithinTopK<T extends { chunkId: number }>(items: readonly T[], pinned: readonly number[], topK: number): T[] {
  const pins = new Set([...new Set(pinned)].slice(0, Math.max(0, topK)));
  const late = items.slice(topK).filter((x) => pins.has(x.chunkId));
  if (late.length === 0) return [...items];
  const lateSet = new Set(late);
  let freeSlots = topK - late.length - items.slice(0, topK).filter((x) => pins.has(x.chunkId)).length;
  const head: T[] = [];
  const tail: T[] = [];
  for (const x of items) {
    if (lateSet.has(x)) continue;
    if (pins.has(x.chunkId)) head.push(x);
    else if (freeSlots > 0) {
      head.push(x);
      freeSlots--;
    } else tail.push(x);
  }
  return [...head, ...late, ...tail];
}

/**
 * The chunks retrieval always keeps within top_k: the best BM25 hit and the best dense hit among
 * full-weight documents (a navigation page, weight < 1, is passed over; when a list has no
 * full-weight document, its best hit). BM25's first.
 */
export function protectedChunks(candidates: readonly WeightedCandidate[]): number[] {
  const best = (rank: (c: WeightedCandidate) => number | null): number | null => {
    let top: { id: number; r: number } | null = null;
    let topFull: { id: number; r: number } | null = null;
    for (const c of candidates) {
      const r = rank(c);
      if (r === null) continue;
      if (!top || r < top.r) top = { id: c.chunkId, r };
      if (c.weight >= 1 && (!topFull || r < topFull.r)) topFull = { id: c.chunkId, r };
    }
    return (topFull ?? top)?.id ?? null;
  };
  return [best((c) => c.bm25Rank), best((c) => c.denseRank)].filter((id): id is number => id !== null);
}

/**
 * Multiplies each candidate's score by its document's weight (clamped to [MIN_DOCUMENT_WEIGHT, 1];
 * a missing weight is 1) and re-sorts (ties: the input order). Candidates without a live document
 * (absent from `metas`) are dropped. Pure.
 */
export function applyDocumentWeights(candidates: readonly FusedCandidate[], metas: ReadonlyMap<number, ChunkMeta>): WeightedCandidate[] {
  const out: Array<{ c: WeightedCandidate; i: number }> = [];
  candidates.forEach((c, i) => {
    const m = metas.get(c.chunkId);
    if (!m) return;
    const raw = m.weight ?? 1;
    const w = Number.isFinite(raw) ? Math.min(1, Math.max(MIN_DOCUMENT_WEIGHT, raw)) : 1;
    // An object literal, not `{ ...c, documentId, … }`: V8 adds new properties to a spread copy through
    // a slow path (≈ 1 µs each: 1 ms per request for 200 candidates, measured on Node 20).
    const weighted: WeightedCandidate = { chunkId: c.chunkId, score: c.score * w, bm25Rank: c.bm25Rank, denseRank: c.denseRank, documentId: m.documentId, collection: m.collection, weight: w };
    out.push({ c: weighted, i });
  });
  out.sort((a, b) => b.c.score - a.c.score || a.i - b.i);
  return out.map((o) => o.c);
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function l2(v: Float32Array): number {
  return Math.sqrt(dot(v, v));
}

// ---------------------------------------------------------------------------------------------
// The retriever

export interface HybridRetrieverOptions {
  store: Store;
  /** null: BM25 only (no model could be loaded). */
  embedder: Embedder | null;
  /** The active index generation (from openVectorStack, up to date at its feedSeq); null: BM25 only. */
  index: LoadedIndex | null;
  /**
   * How the index follows the corpus: 0 = apply pending changes before every search (tests, eval:
   * always exact); > 0 = `startSync()` polls the change feed every this many ms and applies it in
   * the background, never on the request path. Default FEED_POLL_INTERVAL_MS.
   */
  syncIntervalMs?: number;
  /** True while the server answers requests: background index work then rests between slices (IndexSyncer `busy`). */
  syncBusy?: (() => boolean) | undefined;
  logger?: SyncLogger | undefined;
  /** Clock feedback signals age against (epoch ms). Default Date.now. */
  now?: (() => number) | undefined;
  /** Documents taken from the document-level full-text list (0: no such list). Default DOCUMENT_CANDIDATES. */
  documentCandidates?: number | undefined;
  /** Apply the documents' ranking weights (navigation pages < 1). Default true; false for ablations. */
  documentWeights?: boolean | undefined;
  /** Scoped dense searches admitting at most this many chunks scan exactly (0: never). Default DENSE_EXACT_SCAN_MAX. */
  denseExactScanMax?: number | undefined;
  /** ... and at most this share of the index's vectors (1: any share). Default DENSE_EXACT_SCAN_MAX_SHARE. */
  denseExactScanMaxShare?: number | undefined;
}

export interface CandidateOptions {
  /** What to run; 'hybrid' and 'dense' need a query vector (or they fall back to BM25 only). */
  mode: RetrievalMode;
  collection?: string | undefined;
  /** Collections whose chunks are never candidates (the user's unreadable ones); absent or []: none. */
  excludeCollections?: readonly string[] | undefined;
  /** Candidates from the BM25 list. Default BM25_CANDIDATES. */
  bm25Limit?: number;
  /** Candidates from the dense list. Default DENSE_CANDIDATES. */
  denseLimit?: number;
  /** Documents from the document-level full-text list (0: none). Default: the retriever's documentCandidates. */
  documentLimit?: number;
  /** RRF constant and list weights; default RRF_K, 1, 1. */
  fusion?: FusionSettings | undefined;
}

const elapsed = (t0: number) => performance.now() - t0;

/**
 * The product retriever. One instance per process, used from one JS thread: the HNSW index is only
 * mutated by its IndexSyncer on this thread, between searches, so a search never sees a
 * half-updated index.
 *
 * Corpus changes by other processes (a `mneme ingest` while the server runs) reach it through the
 * change feed: BM25 sees new chunks at once (it runs in the store), dense search catches up as the
 * syncer applies the feed in small slices. The store is the truth: every candidate is re-checked
 * (live document, requested collection) before it is returned, so a chunk pruned since the last
 * applied change is never served. If the data dir had no index when this retriever was built (no
 * embedding model), it stays BM25-only until restart.
 */
export class HybridRetriever implements Retriever {
  private readonly store: Store;
  private readonly embedder: Embedder | null;
  /** Set to null when `reindex --model` activates another generation: its model is not loaded here. */
  private index: LoadedIndex | null;
  private readonly syncEveryRequest: boolean;
  private readonly now: () => number;
  private readonly documentCandidates: number;
  private readonly documentWeights: boolean;
  readonly syncer: IndexSyncer;
  /** chunk id → collection ordinal for the dense filter, loaded at the first scoped search, patched from the feed. */
  private readonly ordinals = new CollectionOrdinals();
  private ordinalsLoading: Promise<void> | null = null;
  private readonly denseExactScanMax: number;
  private readonly denseExactScanMaxShare: number;

  constructor(opts: HybridRetrieverOptions) {
    this.store = opts.store;
    this.embedder = opts.embedder;
    // Kept even without an embedder: retrieveWithVector can still search it with a given vector.
    this.index = opts.index;
    const interval = opts.syncIntervalMs ?? FEED_POLL_INTERVAL_MS;
    this.syncEveryRequest = interval === 0;
    this.now = opts.now ?? Date.now;
    this.documentCandidates = opts.documentCandidates ?? DOCUMENT_CANDIDATES;
    this.documentWeights = opts.documentWeights ?? true;
    this.denseExactScanMax = opts.denseExactScanMax ?? DENSE_EXACT_SCAN_MAX;
    this.denseExactScanMaxShare = opts.denseExactScanMaxShare ?? DENSE_EXACT_SCAN_MAX_SHARE;
    this.syncer = new IndexSyncer({
      store: opts.store,
      index: opts.index?.hnsw ? { meta: opts.index.meta, hnsw: opts.index.hnsw } : null,
      efSearchOverride: opts.index?.efSearchOverride ?? null,
      appliedSeq: opts.index?.feedSeq ?? 0,
      pollIntervalMs: interval > 0 ? interval : FEED_POLL_INTERVAL_MS,
      busy: opts.syncBusy,
      logger: opts.logger,
      onChunkChange: (op, chunkId, collection) => this.patchCollection(op, chunkId, collection),
      onReset: () => this.resetOrdinals(),
      onGenerationChange: () => {
        this.index = null;
        this.resetOrdinals();
      },
    });
  }

  /** What `retrieve` runs: 'hybrid' with an embedder and index, else 'bm25'. */
  get mode(): 'hybrid' | 'bm25' {
    return this.embedder && this.index ? 'hybrid' : 'bm25';
  }

  /** Starts applying the change feed in the background (servers). */
  startSync(): void {
    this.syncer.start();
  }

  /** Stops the background sync. */
  close(): void {
    this.syncer.stop();
  }

  /** Changes in the feed not yet applied to the in-memory index. */
  indexLag(): number {
    return this.syncer.lag();
  }

  /** Live vectors in the loaded index, null without one. */
  vectorCount(): number | null {
    if (!this.index) return null;
    // The engine's own index (pgvector) is counted by the store, not here.
    return this.index.hnsw ? this.index.hnsw.size() : null;
  }

  /** Applies every pending change now (start-up, tests). */
  async sync(): Promise<void> {
    await this.syncer.catchUp();
  }

  private patchCollection(op: 'added' | 'removed', chunkId: number, collection: string | null): void {
    // Before the first scoped search nothing is recorded: the load reads the store then.
    if (collection === null || (!this.ordinals.loaded && this.ordinalsLoading === null)) return;
    if (op === 'added') this.ordinals.add(chunkId, collection);
    else this.ordinals.remove(chunkId, collection);
  }

  private resetOrdinals(): void {
    this.ordinals.reset();
    this.ordinalsLoading = null;
  }

  /**
   * Loads every collection's live chunk ids into the ordinal array once (one query per collection);
   * concurrent callers share the load. Feed patches that arrive meanwhile are applied too (adds
   * are idempotent; a chunk deleted meanwhile may stay recorded, and is dropped by the store
   * re-check of every candidate).
   */
  private async loadOrdinals(): Promise<void> {
    if (this.ordinals.loaded) return;
    if (!this.ordinalsLoading) {
      const run = async () => {
        for (const c of await this.store.corpus.collections()) {
          for (const id of await this.store.corpus.chunkIdsOfCollection(c.name)) this.ordinals.add(id, c.name);
        }
        this.ordinals.markLoaded();
      };
      const p = run().finally(() => {
        if (this.ordinalsLoading === p) this.ordinalsLoading = null;
      });
      this.ordinalsLoading = p;
    }
    await this.ordinalsLoading;
  }

  /**
   * BM25 search: live chunks matching any term of `query`, best first.
   * @param collection only chunks of this collection
   * @param excludeCollections never chunks of these (filtered in the engine, before the limit)
   * @returns [] when the query has no searchable term.
   */
  async searchBm25(query: string, limit: number, collection?: string, excludeCollections?: readonly string[]): Promise<ScoredChunk[]> {
    checkLimit(limit);
    return this.store.corpus.searchText(query, { limit, collection, excludeCollections });
  }

  /**
   * Dense search over the HNSW index (empty without an index), best first. Labels are chunk ids;
   * a collection filter restricts the graph search itself, so `limit` hits of that collection come back.
   * Excluded collections (access control) are filtered the same way: their chunks are never visited
   * as results, so `limit` readable hits come back. The filter is O(1) per visited label (one
   * chunk id → collection ordinal array, src/chat/collection-ordinals.ts); when the scope admits at
   * most `denseExactScanMax` chunks (and `denseExactScanMaxShare` of the index), their stored
   * vectors are scanned exactly instead.
   */
  async searchDense(vector: Float32Array, limit: number, collection?: string, excludeCollections?: readonly string[]): Promise<ScoredChunk[]> {
    checkLimit(limit);
    if (!this.index) return [];
    const exclude = excludeCollections ?? [];
    // The store's own index (pgvector) searches at its generation's calibrated ef unless configuration forces one.
    if (!this.index.hnsw) return this.store.corpus.searchVector(this.index.meta.modelId, vector, { limit, collection, excludeCollections, efSearch: this.index.efSearchOverride ?? undefined });
    if (collection === undefined && exclude.length === 0) return this.index.hnsw.search(vector, limit).map((h) => ({ chunkId: h.label, score: h.score }));
    if (collection !== undefined && exclude.includes(collection)) return [];
    await this.loadOrdinals();
    const index = this.index;
    if (!index?.hnsw) return [];
    const scope = this.ordinals.scope(collection ?? null, exclude);
    if (scope.admitted === 0) return [];
    if (scope.admitted <= this.denseExactScanMax && scope.admitted <= this.denseExactScanMaxShare * index.hnsw.size()) {
      // Few admitted chunks: their stored vectors, scanned exactly (exact recall, no graph walk).
      const vectors = await this.store.corpus.vectorsOf(index.meta.modelId, this.ordinals.labels(scope));
      return exactTopK(vector, vectors, limit).map((h) => ({ chunkId: h.label, score: h.score }));
    }
    return index.hnsw.search(vector, limit, this.ordinals.filter(scope)).map((h) => ({ chunkId: h.label, score: h.score }));
  }

  /**
   * BM25 and/or dense candidates fused with RRF (no hydration, no personalization). Used by
   * `retrieve` and by the evaluation, which needs deeper lists than MAX_TOP_K.
   * 'hybrid'/'dense' without a query vector or index degrade to what can run; `mode` says what ran.
   */
  async candidates(
    query: string,
    vectorIn: Float32Array | null | Promise<Float32Array | null>,
    opts: CandidateOptions,
  ): Promise<{ candidates: WeightedCandidate[]; mode: RetrievalMode; timings: CandidateTimings }> {
    const bm25Limit = opts.bm25Limit ?? BM25_CANDIDATES;
    const denseLimit = opts.denseLimit ?? DENSE_CANDIDATES;
    let t0 = performance.now();
    // The full-text searches and their chunks' metadata (one call: on the reader thread of a server)
    // run while the query is still being embedded (in an embedding worker) and while the graph
    // search runs here; a dense-only request, which falls back to them without a vector, waits for
    // the vector first.
    const searchLexical = () =>
      this.store.corpus.lexicalCandidates(query, {
        limit: bm25Limit,
        documentLimit: opts.documentLimit ?? this.documentCandidates,
        collection: opts.collection,
        excludeCollections: opts.excludeCollections,
      });
    let lexicalDone = false;
    const early = opts.mode === 'dense' ? null : searchLexical().finally(() => (lexicalDone = true));
    // Settled even when the vector fails, so no rejection is left unhandled while it is awaited.
    void early?.catch(() => undefined);
    const queryVector = await vectorIn;
    const canDense = this.index !== null && queryVector !== null;
    const mode: RetrievalMode = !canDense ? 'bm25' : opts.mode;
    const tDense = performance.now();
    const dense = mode === 'bm25' || !queryVector ? [] : (await this.searchDense(queryVector, denseLimit, opts.collection, opts.excludeCollections)).map((h) => h.chunkId);
    // The dense hits' metadata too, while the lexical call is still running (else only what it lacks, below).
    const denseMeta = dense.length > 0 && !lexicalDone ? this.store.corpus.chunkMeta(dense) : null;
    void denseMeta?.catch(() => undefined);
    const dense_ms = elapsed(tDense);
    const lexical = mode === 'dense' ? { chunks: [], documentChunks: [], meta: [] } : await (early ?? searchLexical());
    const bm25_ms = elapsed(t0);
    t0 = performance.now();
    const bm25 = lexical.chunks.map((h) => h.chunkId);
    const f = opts.fusion;
    const fused = rankFused(bm25, dense, f?.k ?? RRF_K, f ? [f.bm25Weight, f.denseWeight] : [1, 1], lexical.documentChunks);
    // Document weights (navigation pages < 1) and the live check: stale ids (deleted since the last
    // applied change) drop out here.
    const metas = new Map<number, ChunkMeta>();
    const keep = (m: ChunkMeta) => metas.set(m.chunkId, this.documentWeights ? m : { ...m, weight: 1 });
    for (const m of lexical.meta) keep(m);
    if (denseMeta) for (const m of await denseMeta) keep(m);
    else {
      const missing = dense.filter((id) => !metas.has(id));
      if (missing.length > 0) for (const m of await this.store.corpus.chunkMeta(missing)) keep(m);
    }
    const candidates = applyDocumentWeights(fused, metas);
    return { candidates, mode, timings: { bm25_ms, dense_ms, fuse_ms: elapsed(t0) } };
  }

  /**
   * Retrieves `topK` chunks for `req.query`: embeds the query (when a model is loaded), then
   * {@link retrieveWithVector}.
   * @throws ValidationError for an empty query or topK outside 1..MAX_TOP_K.
   * @throws Error when the embedding worker fails.
   */
  async retrieve(req: RetrieveRequest): Promise<RetrieveResult> {
    validateRequest(req);
    let queryVector: Promise<Float32Array | null> | null = null;
    let embed_ms = 0;
    let fallback = false;
    if (this.embedder && this.index && req.mode !== 'bm25') {
      const t0 = performance.now();
      queryVector = this.embedder.embed([req.query]).then(
        (vectors) => vectors[0] ?? null,
        (err: unknown) => {
          // A crashed embedding worker is being respawned: answer from BM25 meanwhile.
          if (!(err instanceof EmbedderUnavailableError)) throw err;
          fallback = true;
          return null;
        },
      );
      void queryVector.then(() => (embed_ms = elapsed(t0)), () => undefined);
    }
    const result = await this.retrieveWithVector(req, queryVector);
    result.timings.embed_ms = embed_ms;
    if (fallback) result.mode = 'bm25_fallback';
    return result;
  }

  /**
   * `retrieve` with the query vector given (already embedded by the caller, or null for BM25
   * only). `timings.fuse_ms` covers fusion, the live/collection check, personalization,
   * near-duplicate removal and loading the returned chunks.
   * @throws ValidationError for an empty query or topK outside 1..MAX_TOP_K.
   */
  async retrieveWithVector(req: RetrieveRequest, vectorIn: Float32Array | null | Promise<Float32Array | null>): Promise<RetrieveResult> {
    validateRequest(req);
    const checked = (v: Float32Array | null): Float32Array | null => {
      if (v && this.index && v.length !== this.index.meta.dimension) {
        throw new ValidationError(`query vector has ${v.length} dimensions, the index has ${this.index.meta.dimension}`);
      }
      return v;
    };
    const queryVector = vectorIn instanceof Promise ? vectorIn.then(checked) : checked(vectorIn);
    if (this.syncEveryRequest) await this.syncer.catchUp();
    const { candidates, mode, timings } = await this.candidates(req.query, queryVector, {
      mode: req.mode ?? 'hybrid', collection: req.collection, excludeCollections: req.excludeCollections, fusion: req.fusion,
    });
    const hidden = new Set(req.excludeCollections ?? []);
    const t0 = performance.now();
    // Feedback and personalization re-order the candidates, but the best BM25 and dense hits stay in top_k.
    const items = pinWithinTopK(await this.personalize(candidates, req.personalization), protectedChunks(candidates), req.topK);

    // Load texts window by window, best first, until topK distinct chunks are kept.
    const dedupe = new NearDuplicateFilter();
    const chunks: RetrievedChunk[] = [];
    const window = Math.max(HYDRATE_WINDOW, req.topK * 2);
    for (let start = 0; start < items.length && chunks.length < req.topK; start += window) {
      const slice = items.slice(start, start + window);
      const rows = new Map<number, ChunkRecord>();
      for (const r of await this.store.corpus.chunkRecords(slice.map((i) => i.chunkId))) rows.set(r.chunkId, r);
      for (const it of slice) {
        const r = rows.get(it.chunkId);
        // Missing: deleted since the last applied change. The collection (and its readability) is
        // re-checked against the store too, since the index may lag.
        if (!r || (req.collection !== undefined && r.collection !== req.collection) || hidden.has(r.collection) || !dedupe.accept(r.text)) continue;
        chunks.push({
          chunkId: r.chunkId, documentId: r.documentId, collection: r.collection, source: r.source, title: r.title, headingPath: r.headingPath, text: r.text,
          contentSha256: r.contentSha256, score: it.score, bm25Rank: it.bm25Rank, denseRank: it.denseRank,
        });
        if (chunks.length >= req.topK) break;
      }
    }
    timings.fuse_ms += elapsed(t0);
    return {
      chunks,
      mode,
      // Settled by now: candidates() awaited it.
      queryVector: await queryVector,
      timings: { embed_ms: 0, bm25_ms: timings.bm25_ms, dense_ms: timings.dense_ms, fuse_ms: timings.fuse_ms },
    };
  }

  /**
   * Re-ranks candidates with the user's signals; loads each candidate's vector (interest term) and
   * text (correction matching) only when those signals are present.
   */
  private async personalize(candidates: WeightedCandidate[], p: PersonalizationSignals | undefined): Promise<WeightedCandidate[]> {
    if (!p || !(p.weight > 0) || candidates.length === 0) return candidates;
    const ids = candidates.map((c) => c.chunkId);
    const vectors = p.interestVector && this.index ? await this.store.corpus.vectorsOf(this.index.meta.modelId, ids) : new Map<number, Float32Array>();
    const texts = new Map<number, string>();
    if (p.corrections.length > 0) for (const r of await this.store.corpus.chunkRecords(ids)) texts.set(r.chunkId, `${r.headingPath}\n${r.text}`);
    const items = candidates.map((c) => ({
      chunkId: c.chunkId, score: c.score, bm25Rank: c.bm25Rank, denseRank: c.denseRank, documentId: c.documentId, collection: c.collection, weight: c.weight,
      vector: vectors.get(c.chunkId) ?? null, text: texts.get(c.chunkId),
    }));
    return personalizeScores(items, p, undefined, this.now());
  }
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new ValidationError(`limit must be a positive integer, got ${limit}`);
}

function validateRequest(req: RetrieveRequest): void {
  if (typeof req.query !== 'string' || req.query.trim() === '') throw new ValidationError('query must be a non-empty string');
  if (!Number.isInteger(req.topK) || req.topK < 1 || req.topK > MAX_TOP_K) {
    throw new ValidationError(`top_k must be an integer from 1 to ${MAX_TOP_K}, got ${String(req.topK)}`);
  }
  if (req.collection !== undefined && (typeof req.collection !== 'string' || req.collection === '')) {
    throw new ValidationError('collection must be a non-empty string');
  }
}
