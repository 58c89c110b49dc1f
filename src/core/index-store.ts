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
import type { IndexGeneration } from './store/corpus.ts';
import type { Store } from './store/index.ts';
import { HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, HnswVectorIndex } from './vector-index.ts';

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

/** HNSW options of a generation. */
export function indexOptions(meta: IndexGeneration): { dimension: number; m: number; efConstruction: number; efSearch: number } {
  return { dimension: meta.dimension, m: meta.hnswM, efConstruction: meta.hnswEfConstruction, efSearch: meta.hnswEfSearch };
}

/** Loads a generation's file, or starts an empty index when the file is missing or unreadable. */
export function loadIndex(dataDir: string, meta: IndexGeneration): { index: HnswVectorIndex; loadedFromFile: boolean; problem: string | null } {
  const file = indexFile(dataDir, meta);
  const opts = indexOptions(meta);
  if (fs.existsSync(file)) {
    try {
      return { index: HnswVectorIndex.load(file, opts), loadedFromFile: true, problem: null };
    } catch (err) {
      return { index: HnswVectorIndex.create(opts), loadedFromFile: false, problem: `cannot read ${file}: ${(err as Error).message}` };
    }
  }
  return { index: HnswVectorIndex.create(opts), loadedFromFile: false, problem: null };
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
export async function reconcile(store: Store, index: HnswVectorIndex, modelId: string): Promise<ReconcileResult> {
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
 * Saves the index file atomically and records which feed position it reflects.
 * @param feedSeq the feed position the index holds; default: the current head (right for the single
 * corpus writer holding the ingest lock, whose index holds exactly what it wrote).
 */
export async function saveIndex(store: Store, dataDir: string, meta: IndexGeneration, index: HnswVectorIndex, feedSeq?: number): Promise<void> {
  const seq = feedSeq ?? (await store.corpus.feedBounds()).head;
  index.save(indexFile(dataDir, meta));
  await store.corpus.recordIndexSaved(meta.generation, seq);
}
