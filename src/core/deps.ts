/**
 * The one wiring point: builds the long-lived components (database, embedder, vector index, chat
 * model...) from a Config. Commands and the server call these; nothing else constructs them.
 */
import type { Config } from './config.ts';
import type { Db } from './db.ts';
import { openDb } from './db.ts';
import type { Embedder } from './embedder.ts';
import { loadEmbedder } from './embedder.ts';
import type { IndexMeta } from './index-store.ts';
import { ensureActiveGeneration, loadIndex, reconcile } from './index-store.ts';
import type { HnswVectorIndex } from './vector-index.ts';

export interface VectorStack {
  embedder: Embedder | null;
  index: { meta: IndexMeta; hnsw: HnswVectorIndex } | null;
  /** Why there is no embedder / what was repaired, for the user. */
  warnings: string[];
}

/**
 * Loads the embedder and the active index generation, reconciled with SQLite. Without a model the
 * stack is BM25-only (embedder and index null, a warning says why).
 * @throws ConflictError when the configured model differs from the data dir's index model.
 */
export async function openVectorStack(db: Db, config: Config): Promise<VectorStack> {
  const loaded = await loadEmbedder(config);
  if (!loaded.embedder) return { embedder: null, index: null, warnings: [loaded.warning] };
  const embedder = loaded.embedder;
  try {
    const meta = ensureActiveGeneration(db, embedder.info);
    const { index, problem } = loadIndex(config.dataDir, meta);
    const warnings: string[] = [];
    if (problem) warnings.push(`${problem}; rebuilding it from the stored embeddings`);
    const r = reconcile(db, index, meta.model_id);
    if (r.added + r.removed > 0 && !problem) {
      warnings.push(`vector index was behind SQLite (${r.added} added, ${r.removed} removed); repaired`);
    }
    return { embedder, index: { meta, hnsw: index }, warnings };
  } catch (err) {
    await embedder.close();
    throw err;
  }
}

export function openDatabase(config: Config): Db {
  return openDb(config.dbFile);
}
