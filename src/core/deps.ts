/**
 * The one wiring point: builds the long-lived components (store, embedder, vector index, chat
 * model...) from a Config. Commands and the server call these; nothing else constructs them.
 */
import type { Config } from './config.ts';
import type { Embedder } from './embedder.ts';
import { loadEmbedder } from './embedder.ts';
import type { IndexGeneration } from './index-store.ts';
import { ensureActiveGeneration, loadIndex, reconcile } from './index-store.ts';
import { IndexSyncer } from './index-sync.ts';
import type { Store } from './store/index.ts';
import { openPostgresStore } from './store/postgres/index.ts';
import { openSqliteStore } from './store/sqlite/index.ts';
import type { ShardedHnswIndex } from './sharded-index.ts';
import type { HnswVectorIndex, TunableVectorIndex } from './vector-index.ts';

export interface LoadedIndex {
  meta: IndexGeneration;
  /** The in-process HNSW index (sharded; a bare HnswVectorIndex in benches and tests); null when the store searches vectors itself (`nativeVectorSearch`). */
  hnsw: ShardedHnswIndex | HnswVectorIndex | null;
  /** Change-feed position the in-memory index reflects. */
  feedSeq: number;
  /** ef_search forced by MNEME_HNSW_EF_SEARCH (null/absent: the generation's calibrated ef, followed when it is recalibrated). */
  efSearchOverride?: number | null;
}

export interface VectorStack {
  embedder: Embedder | null;
  index: LoadedIndex | null;
  /** Why there is no embedder / what was repaired, for the user. */
  warnings: string[];
}

/**
 * Loads the embedder and the active index generation, brought up to date with the store: from the
 * change feed when the file records the feed position it was saved at (cost ∝ changes since), else
 * by one full reconcile. Without a model the stack is BM25-only (embedder and index null, a warning
 * says why).
 * @throws ConflictError when the configured model differs from the data dir's index model.
 */
export async function openVectorStack(store: Store, config: Config): Promise<VectorStack> {
  const loaded = await loadEmbedder(config);
  if (!loaded.embedder) return { embedder: null, index: null, warnings: [loaded.warning] };
  const embedder = loaded.embedder;
  try {
    const meta = await ensureActiveGeneration(store, embedder.info);
    // The engine's own vector index (pgvector) is always current: nothing to load or bring up to date.
    if (store.corpus.nativeVectorSearch) return { embedder, index: { meta, hnsw: null, feedSeq: (await store.corpus.feedBounds()).head, efSearchOverride: config.hnsw.efSearch }, warnings: [] };
    const { index, problem, loadedFromFile } = loadIndex(config.dataDir, meta, config.hnsw.efSearch);
    const warnings: string[] = [];
    if (problem) warnings.push(`${problem}; rebuilding it from the stored embeddings`);
    const feedSeq = await bringUpToDate(store, meta, index, loadedFromFile, warnings, problem === null);
    return { embedder, index: { meta, hnsw: index, feedSeq, efSearchOverride: config.hnsw.efSearch }, warnings };
  } catch (err) {
    await embedder.close();
    throw err;
  }
}

async function bringUpToDate(store: Store, meta: IndexGeneration, hnsw: TunableVectorIndex, fromFile: boolean, warnings: string[], report: boolean): Promise<number> {
  const bounds = await store.corpus.feedBounds();
  const saved = fromFile ? meta.savedFeedSeq : null;
  const feedReaches = saved !== null && (bounds.first === null ? bounds.head === saved : bounds.first <= saved + 1);
  if (feedReaches && saved !== null) {
    const syncer = new IndexSyncer({ store, index: { meta, hnsw }, appliedSeq: saved, sliceMs: Number.POSITIVE_INFINITY });
    await syncer.catchUp();
    return syncer.appliedSeq;
  }
  const r = await reconcile(store, hnsw, meta.modelId);
  if (report && r.added + r.removed > 0 && fromFile) {
    warnings.push(`vector index was behind the database (${r.added} added, ${r.removed} removed); repaired`);
  }
  return r.feedSeq;
}

/**
 * Opens the configured store: PostgreSQL when MNEME_DATABASE_URL is set, else the embedded SQLite
 * file of the data dir. Migrates it.
 * @throws ConfigError when it cannot be opened or a migration was edited after being applied.
 */
export async function openStore(config: Config): Promise<Store> {
  if (config.databaseUrl) return openPostgresStore(config.databaseUrl);
  return openSqliteStore(config.dbFile, { ftsNative: config.ftsNative });
}

/**
 * Runs `fn` on the configured store (see openStore), closing it afterwards whatever `fn` does.
 * @throws what openStore or `fn` throws.
 */
export async function withStore<T>(config: Config, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

