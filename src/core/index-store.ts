/**
 * Ties the HNSW file to the store. The active index generation names the model, dimension, HNSW
 * parameters and file. The store's embeddings are the truth; the file is a cache brought up to date
 * by `reconcile` (missing labels added from stored vectors, stale ones removed) or, cheaper, by
 * applying the change feed from the position the file was saved at (index-sync.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { EmbedderInfo } from './embedder.ts';
import { ConflictError } from './errors.ts';
import { nowIso } from './clock.ts';
import type { EfCalibration, IndexGeneration } from './store/corpus.ts';
import type { Store } from './store/index.ts';
import { indexExists, ShardedHnswIndex } from './sharded-index.ts';
import type { HnswVectorIndex, TunableVectorIndex, VectorIndex } from './vector-index.ts';
import { ExactTopK, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, recallAgainst, recallOfHits } from './vector-index.ts';

export type { IndexGeneration } from './store/corpus.ts';

/** Vectors fetched per page while reconciling (bounds memory and the time of one read). */
export const RECONCILE_PAGE_VECTORS = 2048;

/** Absolute path of a generation's file. */
export function indexFile(dataDir: string, meta: Pick<IndexGeneration, 'file'>): string {
  return path.join(dataDir, meta.file);
}

/** Inserts a new generation for `info` with the given status and returns it. */
export function createGeneration(store: Store, info: EmbedderInfo, status: 'building' | 'active'): Promise<IndexGeneration> {
  return store.corpus.createGeneration(
    {
      modelId: info.modelId,
      dimension: info.dimension,
      pooling: info.pooling,
      normalized: info.normalized,
      maxTokens: info.maxTokens,
      hnswM: HNSW_M,
      hnswEfConstruction: HNSW_EF_CONSTRUCTION,
      hnswEfSearch: HNSW_EF_SEARCH,
    },
    status,
  );
}

/**
 * The active generation for `info`, created when the data dir has none yet.
 * @throws ConflictError when the data dir's index was built with another model or dimension: a
 * different model never mixes into an existing index (`mneme reindex --model X` switches).
 */
export async function ensureActiveGeneration(store: Store, info: EmbedderInfo): Promise<IndexGeneration> {
  const active = await store.corpus.activeGeneration();
  if (!active) return createGeneration(store, info, 'active');
  if (active.modelId !== info.modelId || active.dimension !== info.dimension) {
    throw new ConflictError(
      `this data dir's vector index uses embedding model ${active.modelId} (${active.dimension}-d, generation ${active.generation}), ` +
        `but ${info.modelId} (${info.dimension}-d) is configured. Set MNEME_EMBED_MODEL=${active.modelId}, or run ` +
        `\`mneme reindex --model ${info.modelId}\` to switch the index to the new model.`,
    );
  }
  return active;
}

/**
 * The ef_search queries use: `override` (MNEME_HNSW_EF_SEARCH) when set, else the generation's
 * calibrated ef, else its hnswEfSearch (HNSW_EF_SEARCH when it was created).
 */
export function effectiveEfSearch(meta: IndexGeneration, override?: number | null): number {
  return override ?? meta.calibration?.ef ?? meta.hnswEfSearch;
}

/** HNSW options of a generation; efSearch as {@link effectiveEfSearch}. */
export function indexOptions(meta: IndexGeneration, efOverride?: number | null): { dimension: number; m: number; efConstruction: number; efSearch: number } {
  return { dimension: meta.dimension, m: meta.hnswM, efConstruction: meta.hnswEfConstruction, efSearch: effectiveEfSearch(meta, efOverride) };
}

/**
 * Loads a generation's index (sharded layout, or the legacy single file as one shard), or starts an
 * empty one-shard index when there is none or it is unreadable (`problem` says why).
 * @param efOverride ef_search forced by configuration (MNEME_HNSW_EF_SEARCH); default: the calibrated ef.
 */
export function loadIndex(dataDir: string, meta: IndexGeneration, efOverride?: number | null): { index: ShardedHnswIndex; loadedFromFile: boolean; problem: string | null } {
  const file = indexFile(dataDir, meta);
  const opts = indexOptions(meta, efOverride);
  if (indexExists(file)) {
    try {
      return { index: ShardedHnswIndex.load(file, opts), loadedFromFile: true, problem: null };
    } catch (err) {
      return { index: ShardedHnswIndex.create(opts), loadedFromFile: false, problem: `cannot read ${file}: ${(err as Error).message}` };
    }
  }
  return { index: ShardedHnswIndex.create(opts), loadedFromFile: false, problem: null };
}

export interface ReconcileResult {
  added: number;
  removed: number;
  /** Feed position the index reflects afterwards (read before the embeddings were). */
  feedSeq: number;
}

/**
 * Makes the index hold exactly the vectors the store has for `modelId`. Full cost (reads every
 * chunk id): for start-up, the CLI and the fallback when the change feed has a gap.
 */
export async function reconcile(store: Store, index: VectorIndex, modelId: string): Promise<ReconcileResult> {
  // Read the feed head first: a write landing after this read is re-applied from the feed later
  // (applying a change twice is harmless), so nothing is ever missed.
  const feedSeq = (await store.corpus.feedBounds()).head;
  const expected = await store.corpus.embeddedChunkIds(modelId);
  let removed = 0;
  for (const label of index.labels()) {
    if (!expected.has(label)) {
      index.remove(label);
      removed++;
    }
  }
  const missing: number[] = [];
  for (const id of expected) if (!index.has(id)) missing.push(id);
  for (let i = 0; i < missing.length; i += RECONCILE_PAGE_VECTORS) {
    const vectors = await store.corpus.vectorsOf(modelId, missing.slice(i, i + RECONCILE_PAGE_VECTORS));
    for (const [id, v] of vectors) index.upsert(id, v);
  }
  return { added: missing.length, removed, feedSeq };
}

/**
 * Saves the index atomically in the sharded layout (a single HnswVectorIndex as one shard) and
 * records which feed position it reflects.
 * @param feedSeq the feed position the index holds; default: the current head (right for the single
 * corpus writer holding the ingest lock, whose index holds exactly what it wrote).
 */
export async function saveIndex(store: Store, dataDir: string, meta: IndexGeneration, index: ShardedHnswIndex | HnswVectorIndex, feedSeq?: number): Promise<void> {
  const seq = feedSeq ?? (await store.corpus.feedBounds()).head;
  (index instanceof ShardedHnswIndex ? index : ShardedHnswIndex.of([index])).save(indexFile(dataDir, meta));
  await store.corpus.recordIndexSaved(meta.generation, seq);
}

/** recall@10 the calibration aims for by default (MNEME_HNSW_RECALL_TARGET overrides). */
export const CALIBRATION_RECALL_TARGET = 0.99;
/** Neighbours per query the recall is measured on. */
export const CALIBRATION_K = 10;
/** Stored vectors used as queries (fewer when the index is smaller or the scan would exceed the budget). */
export const CALIBRATION_QUERIES = 300;
/** Fewest queries kept when the time budget cuts the sample (below, the estimate is too noisy). */
export const CALIBRATION_MIN_QUERIES = 50;
/** Wall time allowed for the exact scan, in ms: the query sample shrinks to fit it. */
export const CALIBRATION_BUDGET_MS = 20_000;
/** Indexes smaller than this are not calibrated: with ef ≥ 64 the search is as good as exhaustive. */
export const CALIBRATION_MIN_VECTORS = 1_000;
/** ef values tried, smallest first; the first one reaching the target is recorded. */
export const CALIBRATION_EF_LADDER: readonly number[] = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1000];
/**
 * One-sided z of the calibration's safety margin: an ef is accepted when the lower confidence bound
 * of its measured recall@10 (queries × k binomial trials) reaches the target, not the point
 * estimate, so queries unlike the sample still get the target (at 100k the point estimate stopped at
 * recall 0.990 on stored vectors, which gave 0.983 on the bench's queries). 1.645: 95 %.
 */
export const CALIBRATION_CONFIDENCE_Z = 1.645;
/** An ingest recalibrates when the index grew by this factor since the last calibration… */
export const CALIBRATION_GROWTH_FACTOR = 1.5;
/** …or by this many vectors. */
export const CALIBRATION_GROWTH_VECTORS = 50_000;
/** Vectors read per page during the exact scan. */
const CALIBRATION_PAGE_VECTORS = 4096;

export interface CalibrationOptions {
  /** recall@10 to reach; default CALIBRATION_RECALL_TARGET. */
  target?: number;
  queries?: number;
  budgetMs?: number;
  ladder?: readonly number[];
  /** Seed of the query sample (deterministic by default). */
  seed?: number;
}

/** A deterministic sample of `n` distinct labels (partial Fisher–Yates with a small LCG). */
function sampleLabels(labels: number[], n: number, seed: number): number[] {
  const a = [...labels].sort((x, y) => x - y);
  let s = seed >>> 0 || 1;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
  const m = Math.min(n, a.length);
  for (let i = 0; i < m; i++) {
    const j = i + Math.floor(next() * (a.length - i));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, m);
}

/**
 * Exact top-k of `sample` over every stored vector of `modelId`, in one paged scan. When the first
 * page shows the full scan would exceed `budgetMs`, the sample is cut (never below
 * CALIBRATION_MIN_QUERIES) to fit.
 */
async function exactNeighbours(store: Store, modelId: string, sample: Array<{ self: number; vector: Float32Array }>, total: number, budgetMs: number): Promise<number[][]> {
  const exact = new ExactTopK(sample, CALIBRATION_K);
  const t0 = performance.now();
  let after = 0;
  let seen = 0;
  let checked = false;
  for (;;) {
    const page = await store.corpus.embeddingsPage(modelId, after, CALIBRATION_PAGE_VECTORS);
    if (page.length === 0) break;
    for (const [id, v] of page) exact.add(id, v);
    after = page[page.length - 1]![0];
    seen += page.length;
    if (!checked) {
      checked = true;
      const perQueryVectorMs = (performance.now() - t0) / (seen * exact.size);
      const fit = Math.floor(budgetMs / (perQueryVectorMs * Math.max(total, seen)));
      if (fit < exact.size) exact.truncate(Math.max(CALIBRATION_MIN_QUERIES, fit));
    }
  }
  return exact.results();
}

/** Lower one-sided confidence bound (z = CALIBRATION_CONFIDENCE_Z, normal approximation) of a recall measured on `trials` neighbours. */
export function recallLowerBound(recall: number, trials: number): number {
  if (trials <= 0) return 0;
  return recall - CALIBRATION_CONFIDENCE_Z * Math.sqrt((recall * (1 - recall)) / trials);
}

/** A calibration query: a stored vector, its own label (never counted as a neighbour) and its exact neighbours. */
type CalibrationQuery = { self: number; vector: Float32Array; truth: number[] };

/**
 * Measures recall@10 of `index` against exact search on a sample of stored vectors used as queries
 * (each one's own label excluded) and records the smallest ef of the ladder whose recall reaches the
 * target with a margin ({@link recallLowerBound}) in the generation's metadata; when none does, the largest ef and its recall are recorded. The index's
 * ef is left as it was. Time: one exact scan bounded by `budgetMs` plus ladder × queries searches.
 * @returns the calibration recorded, or null when the index has fewer than CALIBRATION_MIN_VECTORS vectors.
 */
export async function calibrateGeneration(store: Store, meta: IndexGeneration, index: TunableVectorIndex, opts: CalibrationOptions = {}): Promise<EfCalibration | null> {
  const size = index.size();
  if (size < CALIBRATION_MIN_VECTORS) return null;
  const total = await store.corpus.embeddingCount(meta.modelId);
  const previous = index.efSearch;
  try {
    return await calibrate(store, meta, { size, total, labels: index.labels() }, opts, async (ef, queries) => {
      index.setEfSearch(ef);
      return recallAgainst(index, queries, CALIBRATION_K);
    });
  } finally {
    index.setEfSearch(previous);
  }
}

/**
 * {@link calibrateGeneration} for a store that searches vectors itself (PostgreSQL: pgvector's HNSW
 * index, whose recall falls as it grows exactly like hnswlib's): the same sample and exact truth,
 * each ef of the ladder given to `store.corpus.searchVector`, which then takes the recorded ef as its
 * default (`hnsw.ef_search`). Time at 100k × 384-d: see bench/README.md, "pgvector's ef calibrated".
 * @returns the calibration recorded, or null below CALIBRATION_MIN_VECTORS stored vectors.
 */
export async function calibrateStoreSearch(store: Store, meta: IndexGeneration, opts: CalibrationOptions = {}): Promise<EfCalibration | null> {
  const size = await store.corpus.embeddingCount(meta.modelId);
  if (size < CALIBRATION_MIN_VECTORS) return null;
  const labels = [...(await store.corpus.embeddedChunkIds(meta.modelId))];
  return calibrate(store, meta, { size, total: size, labels }, opts, async (ef, queries) => {
    const hits: number[][] = [];
    for (const q of queries) {
      const found = await store.corpus.searchVector(meta.modelId, q.vector, { limit: CALIBRATION_K + 1, efSearch: ef });
      hits.push(found.map((h) => h.chunkId));
    }
    return recallOfHits(queries, hits, CALIBRATION_K);
  });
}

/**
 * The shared steps: sample, exact truth, then the ladder until `recallAt` clears the target with its
 * margin. `vectors.size`: the index's vectors (recorded); `total`: the model's stored vectors (the
 * exact scan's length); `labels`: what the sample is drawn from.
 */
async function calibrate(
  store: Store,
  meta: IndexGeneration,
  vectors: { size: number; total: number; labels: number[] },
  opts: CalibrationOptions,
  recallAt: (ef: number, queries: CalibrationQuery[]) => Promise<number>,
): Promise<EfCalibration | null> {
  const target = opts.target ?? CALIBRATION_RECALL_TARGET;
  const ladder = opts.ladder ?? CALIBRATION_EF_LADDER;
  const sampled = sampleLabels(vectors.labels, opts.queries ?? CALIBRATION_QUERIES, opts.seed ?? 1);
  const stored = await store.corpus.vectorsOf(meta.modelId, sampled);
  const sample = sampled.flatMap((self) => {
    const vector = stored.get(self);
    return vector ? [{ self, vector }] : [];
  });
  if (sample.length === 0) return null;
  const truth = await exactNeighbours(store, meta.modelId, sample, vectors.total, opts.budgetMs ?? CALIBRATION_BUDGET_MS);
  const queries = truth.map((t, i) => ({ ...sample[i]!, truth: t }));
  let result: EfCalibration | null = null;
  for (const ef of ladder) {
    const recall = await recallAt(ef, queries);
    result = { ef, recall: Math.round(recall * 10_000) / 10_000, at: nowIso(), vectors: vectors.size };
    if (recallLowerBound(recall, queries.length * CALIBRATION_K) >= target) break;
  }
  if (result) await store.corpus.recordCalibration(meta.generation, result);
  return result;
}

/** True when `size` vectors warrant a new calibration of `meta` (never calibrated, or grown enough since). */
export function calibrationDue(meta: IndexGeneration, size: number): boolean {
  if (size < CALIBRATION_MIN_VECTORS) return false;
  const last = meta.calibration?.vectors;
  if (last === undefined) return true;
  return size >= last * CALIBRATION_GROWTH_FACTOR || size >= last + CALIBRATION_GROWTH_VECTORS;
}

/**
 * Calibrates `meta` when {@link calibrationDue} (end of an ingest that added vectors). Re-reads the
 * generation first, so a calibration recorded by another run is seen.
 */
export async function recalibrateIfGrown(store: Store, meta: IndexGeneration, index: TunableVectorIndex, opts: CalibrationOptions = {}): Promise<EfCalibration | null> {
  const current = await reread(store, meta);
  if (!calibrationDue(current, index.size())) return null;
  return calibrateGeneration(store, current, index, opts);
}

/** {@link recalibrateIfGrown} for a store that searches vectors itself ({@link calibrateStoreSearch}). */
export async function recalibrateStoreIfGrown(store: Store, meta: IndexGeneration, opts: CalibrationOptions = {}): Promise<EfCalibration | null> {
  const current = await reread(store, meta);
  if (!calibrationDue(current, await store.corpus.embeddingCount(meta.modelId))) return null;
  return calibrateStoreSearch(store, current, opts);
}

/** `meta` as the store has it now (a calibration recorded by another run included). */
async function reread(store: Store, meta: IndexGeneration): Promise<IndexGeneration> {
  return (await store.corpus.generations(meta.status)).find((g) => g.generation === meta.generation) ?? meta;
}
