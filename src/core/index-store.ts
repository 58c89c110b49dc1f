/**
 * Ties the HNSW file to SQLite. `index_meta` names the active generation (model, dimension, HNSW
 * parameters, file). SQLite's `embeddings` table is the truth; the file is a cache brought up to date
 * by `reconcile` (missing labels added from stored vectors, stale ones removed), so a killed writer or
 * a lagging checkpoint never loses or duplicates anything.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Db } from './db.ts';
import { blobToVector, corpusVersion, nowIso } from './db.ts';
import type { EmbedderInfo } from './embedder.ts';
import { ConflictError } from './errors.ts';
import { HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M, HnswVectorIndex } from './vector-index.ts';

export interface IndexMeta {
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
  /** corpus_state.version when the file was last saved; differs = the file lags SQLite. */
  saved_corpus_version: number | null;
}

export function activeIndexMeta(db: Db): IndexMeta | undefined {
  return db.prepare("SELECT * FROM index_meta WHERE status = 'active'").get() as IndexMeta | undefined;
}

/** Absolute path of a generation's file. */
export function indexFile(dataDir: string, meta: Pick<IndexMeta, 'file'>): string {
  return path.join(dataDir, meta.file);
}

/** Inserts a new generation row for `info` with the given status and returns it. */
export function createGeneration(db: Db, info: EmbedderInfo, status: 'building' | 'active'): IndexMeta {
  const tx = db.transaction(() => {
    const res = db
      .prepare(
        `INSERT INTO index_meta (model_id, dimension, pooling, normalized, max_tokens, space, hnsw_m, hnsw_ef_construction,
           hnsw_ef_search, file, status, created_at, activated_at)
         VALUES (?, ?, ?, ?, ?, 'cosine', ?, ?, ?, '', ?, ?, ?)`,
      )
      .run(info.modelId, info.dimension, info.pooling, info.normalized ? 1 : 0, info.maxTokens, HNSW_M, HNSW_EF_CONSTRUCTION,
        HNSW_EF_SEARCH, status, nowIso(), status === 'active' ? nowIso() : null);
    const gen = Number(res.lastInsertRowid);
    db.prepare('UPDATE index_meta SET file = ? WHERE generation = ?').run(path.join('index', `hnsw-g${gen}.bin`), gen);
    return db.prepare('SELECT * FROM index_meta WHERE generation = ?').get(gen) as IndexMeta;
  });
  return tx.immediate();
}

/**
 * The active generation for `info`, created when the data dir has none yet.
 * @throws ConflictError when the data dir's index was built with another model or dimension: a
 * different model never mixes into an existing index (`mneme reindex --model X` switches).
 */
export function ensureActiveGeneration(db: Db, info: EmbedderInfo): IndexMeta {
  const active = activeIndexMeta(db);
  if (!active) return createGeneration(db, info, 'active');
  if (active.model_id !== info.modelId || active.dimension !== info.dimension) {
    throw new ConflictError(
      `this data dir's vector index uses embedding model ${active.model_id} (${active.dimension}-d, generation ${active.generation}), ` +
        `but ${info.modelId} (${info.dimension}-d) is configured. Set MNEME_EMBED_MODEL=${active.model_id}, or run ` +
        `\`mneme reindex --model ${info.modelId}\` to switch the index to the new model.`,
    );
  }
  return active;
}

/** Loads a generation's file, or starts an empty index when the file is missing or unreadable. */
export function loadIndex(dataDir: string, meta: IndexMeta): { index: HnswVectorIndex; loadedFromFile: boolean; problem: string | null } {
  const file = indexFile(dataDir, meta);
  const opts = { dimension: meta.dimension, m: meta.hnsw_m, efConstruction: meta.hnsw_ef_construction, efSearch: meta.hnsw_ef_search };
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
}

/** Chunk ids that have a vector for `modelId` in SQLite. */
export function embeddedChunkIds(db: Db, modelId: string): Set<number> {
  const ids = db.prepare('SELECT chunk_id FROM embeddings WHERE model_id = ?').pluck().all(modelId) as number[];
  return new Set(ids);
}

/** Makes the index hold exactly the vectors SQLite has for `modelId`. */
export function reconcile(db: Db, index: HnswVectorIndex, modelId: string): ReconcileResult {
  const expected = embeddedChunkIds(db, modelId);
  let removed = 0;
  for (const label of index.labels()) {
    if (!expected.has(label)) {
      index.remove(label);
      removed++;
    }
  }
  const missing: number[] = [];
  for (const id of expected) if (!index.has(id)) missing.push(id);
  const get = db.prepare<[number, string], { vector: Buffer }>('SELECT vector FROM embeddings WHERE chunk_id = ? AND model_id = ?');
  for (const id of missing) {
    const row = get.get(id, modelId);
    if (row) index.upsert(id, blobToVector(row.vector));
  }
  return { added: missing.length, removed };
}

/** Saves the index file atomically and records which corpus version it reflects. */
export function saveIndex(db: Db, dataDir: string, meta: IndexMeta, index: HnswVectorIndex): void {
  // Read first: this process is the only writer (ingest lock), so the index holds exactly this version.
  const version = corpusVersion(db);
  index.save(indexFile(dataDir, meta));
  db.prepare('UPDATE index_meta SET saved_corpus_version = ? WHERE generation = ?').run(version, meta.generation);
}

/**
 * Cheap check (no model, no index file) of whether a run must load the vector stack even when no
 * file changed: the saved index lags SQLite, chunks lack vectors, or the configured model differs
 * from the index's (loading then reports the conflict).
 */
export function vectorWorkPending(db: Db, configuredModel: string | null): boolean {
  if (configuredModel === null) return false;
  const meta = activeIndexMeta(db);
  const chunks = db.prepare('SELECT count(*) FROM chunks').pluck().get() as number;
  if (!meta) return chunks > 0;
  if (meta.model_id !== configuredModel || meta.saved_corpus_version !== corpusVersion(db)) return true;
  const unembedded = db
    .prepare('SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = ?)')
    .pluck()
    .get(meta.model_id) as number;
  return unembedded > 0;
}
