/**
 * The document feature pipeline: files → chunks → embeddings → SQLite (+FTS5) and the HNSW index.
 *
 * Incremental by content hash: an unchanged file costs a read and a hash; a changed one has its
 * chunks replaced in one transaction (vectors of chunks whose text did not change are reused, not
 * re-embedded); `prune` tombstones documents whose files are gone. Each document commits atomically,
 * and the index file is a checkpointed cache reconciled with SQLite, so a killed run loses nothing
 * and a rerun finishes the job.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Db } from '../src/core/db.ts';
import { blobToVector, corpusVersion, nowIso, vectorToBlob } from '../src/core/db.ts';
import type { VectorStack } from '../src/core/deps.ts';
import type { Embedder } from '../src/core/embedder.ts';
import { LoaderError } from '../src/core/errors.ts';
import type { IndexMeta } from '../src/core/index-store.ts';
import { saveIndex, vectorWorkPending } from '../src/core/index-store.ts';
import type { HnswVectorIndex } from '../src/core/vector-index.ts';
import { chunkDocument, estimateTokens } from './chunk.ts';
import { loadDocument } from './loaders.ts';
import type { ChunkDraft, LoadedDocument, LoadFailureCode } from './types.ts';
import { isUnder, walk } from './walk.ts';

/** Chunks gathered before one embedding round; bigger windows sort better, smaller ones commit sooner. */
export const INGEST_WINDOW_CHUNKS = 512;
/** Most documents held in one window (bounds memory on corpora of tiny files). */
export const INGEST_WINDOW_DOCS = 256;
/** Save the HNSW file at least this often during a long run, in seconds. */
export const INDEX_CHECKPOINT_SECONDS = 120;

export interface IngestOptions {
  db: Db;
  dataDir: string;
  paths: string[];
  collection: string;
  prune: boolean;
  maxFileBytes: number;
  /**
   * Loads the embedder and the active index (reconciled with SQLite) on first need, so a run over
   * unchanged files never loads a model. Its embedder is null for BM25 only: chunks are then stored
   * unembedded and embedded by a later run with a model. Called at most once.
   */
  vectors: () => Promise<VectorStack>;
  /** The configured embedding model (null = embeddings disabled); decides whether vectors load up front. */
  configuredModel: string | null;
  jsonTextFields?: string[] | undefined;
  onProgress?: ((p: IngestProgress) => void) | undefined;
}

export interface IngestProgress {
  filesDone: number;
  chunksDone: number;
  currentPath: string;
}

export interface FailedDocument {
  path: string;
  reason: LoadFailureCode;
  message: string;
}

export interface IngestSummary {
  documents_seen: number;
  documents_added: number;
  documents_updated: number;
  documents_unchanged: number;
  documents_deleted: number;
  documents_failed: number;
  chunks_added: number;
  chunks_deleted: number;
  chunks_embedded: number;
  seconds: number;
  failed: FailedDocument[];
  skipped: Array<{ path: string; reason: string; message: string }>;
  embedding_model: string | null;
  warnings: string[];
}

interface PendingDoc {
  path: string;
  sha256: string;
  bytes: number;
  existing: { id: number; deleted_at: string | null } | undefined;
  loaded: LoadedDocument;
  chunks: ChunkDraft[];
}

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/**
 * What the embedding model sees for a chunk: its heading path on a first line, then its text (the
 * loaders keep headings out of chunk text, and "Install > On Linux" is strong context for a vector).
 * `chunks.content_sha256` is the hash of exactly this string, so equal hashes mean equal vectors.
 */
export function embeddingInput(c: { headingPath: string; text: string }): string {
  return c.headingPath ? `${c.headingPath}\n${c.text}` : c.text;
}

export async function runIngest(opts: IngestOptions): Promise<IngestSummary> {
  const started = process.hrtime.bigint();
  const { db } = opts;
  let stackPromise: Promise<VectorStack> | null = null;
  let stack: VectorStack | null = null;
  const vectors = async (): Promise<VectorStack> => {
    stackPromise ??= opts.vectors().then((v) => (stack = v));
    return stackPromise;
  };
  const s: IngestSummary = {
    documents_seen: 0, documents_added: 0, documents_updated: 0, documents_unchanged: 0, documents_deleted: 0,
    documents_failed: 0, chunks_added: 0, chunks_deleted: 0, chunks_embedded: 0, seconds: 0,
    failed: [], skipped: [], embedding_model: opts.configuredModel, warnings: [],
  };

  const findDoc = db.prepare<[string, string], { id: number; content_sha256: string; deleted_at: string | null }>(
    'SELECT id, content_sha256, deleted_at FROM documents WHERE collection = ? AND source_uri = ?',
  );
  const oldChunks = db.prepare<[number], { id: number; content_sha256: string }>('SELECT id, content_sha256 FROM chunks WHERE document_id = ?');
  const oldVector = db.prepare<[number, string], { vector: Buffer }>('SELECT vector FROM embeddings WHERE chunk_id = ? AND model_id = ?');
  const insertDoc = db.prepare(
    `INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const updateDoc = db.prepare(
    'UPDATE documents SET content_sha256 = ?, title = ?, kind = ?, bytes = ?, updated_at = ?, deleted_at = NULL WHERE id = ?',
  );
  const deleteChunks = db.prepare('DELETE FROM chunks WHERE document_id = ?');
  const insertChunk = db.prepare(
    'INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const insertVector = db.prepare('INSERT OR REPLACE INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)');

  let lastCheckpoint = Date.now();
  /** Saves the index when it no longer matches what its file was saved from (or on a timer). */
  const checkpoint = (force: boolean) => {
    const index = stack?.index;
    if (!index) return;
    if (!force && Date.now() - lastCheckpoint < INDEX_CHECKPOINT_SECONDS * 1000) return;
    saveIndex(db, opts.dataDir, index.meta, index.hnsw);
    lastCheckpoint = Date.now();
  };

  /** A window whose new vectors are being computed (sent to the embedding worker, not awaited). */
  interface EmbeddingWindow {
    window: PendingDoc[];
    hashes: string[][];
    modelId: string | null;
    /** Vectors by embedding-input hash: reused ones at once, fresh ones when `embedded` settles. */
    vectorsByHash: Map<string, Float32Array>;
    embedded: Promise<void>;
  }

  /**
   * Works out which chunk texts of the window need a new vector and sends them to the embedding
   * worker without waiting for the result, so the worker can start on this window while the
   * previous one is committed.
   */
  const startEmbedding = async (window: PendingDoc[]): Promise<EmbeddingWindow> => {
    const { embedder } = await vectors();
    const modelId = embedder?.info.modelId ?? null;
    // Reuse vectors of unchanged chunk texts from the previous version of each document.
    const vectorsByHash = new Map<string, Float32Array>();
    if (modelId) {
      for (const d of window) {
        if (!d.existing) continue;
        for (const c of oldChunks.all(d.existing.id)) {
          const v = oldVector.get(c.id, modelId);
          if (v) vectorsByHash.set(c.content_sha256, blobToVector(v.vector));
        }
      }
    }
    const hashes = window.map((d) => d.chunks.map((c) => sha256(embeddingInput(c))));
    const toEmbed: string[] = [];
    const toEmbedHash: string[] = [];
    if (embedder) {
      const queued = new Set<string>();
      window.forEach((d, i) =>
        d.chunks.forEach((c, j) => {
          const h = hashes[i]![j]!;
          if (!vectorsByHash.has(h) && !queued.has(h)) {
            queued.add(h);
            toEmbed.push(embeddingInput(c));
            toEmbedHash.push(h);
          }
        }),
      );
    }
    const embedded = (embedder ? embedder.embed(toEmbed) : Promise.resolve([])).then((fresh) => {
      fresh.forEach((v, i) => vectorsByHash.set(toEmbedHash[i]!, v));
      s.chunks_embedded += fresh.length;
    });
    // Awaited later (after the previous window commits); a failure must not count as unhandled meanwhile.
    embedded.catch(() => {});
    return { window, hashes, modelId, vectorsByHash, embedded };
  };

  /** Waits for the window's vectors, then commits each document in its own transaction. */
  const commitWindow = async (w: EmbeddingWindow) => {
    await w.embedded;
    const { window, hashes, modelId, vectorsByHash } = w;
    const { index } = await vectors();
    const now = nowIso();
    for (let i = 0; i < window.length; i++) {
      const d = window[i]!;
      const labelsAdded: Array<[number, Float32Array]> = [];
      const labelsRemoved: number[] = [];
      const commit = db.transaction(() => {
        let docId: number;
        if (d.existing) {
          docId = d.existing.id;
          for (const c of oldChunks.all(docId)) labelsRemoved.push(c.id);
          s.chunks_deleted += deleteChunks.run(docId).changes;
          updateDoc.run(d.sha256, d.loaded.title, d.loaded.kind, d.bytes, now, docId);
        } else {
          docId = Number(insertDoc.run(opts.collection, d.path, d.sha256, d.loaded.title, d.loaded.kind, d.bytes, now, now).lastInsertRowid);
        }
        d.chunks.forEach((c, j) => {
          const h = hashes[i]![j]!;
          const chunkId = Number(insertChunk.run(docId, c.ord, c.text, c.headingPath, c.tokenCount, h).lastInsertRowid);
          const v = modelId ? vectorsByHash.get(h) : undefined;
          if (v && modelId) {
            insertVector.run(chunkId, modelId, vectorToBlob(v));
            labelsAdded.push([chunkId, v]);
          }
        });
        s.chunks_added += d.chunks.length;
      });
      commit.immediate();
      if (!d.existing) s.documents_added++;
      else if (d.existing.deleted_at) s.documents_added++;
      else s.documents_updated++;
      if (index) {
        for (const l of labelsRemoved) index.hnsw.remove(l);
        for (const [l, v] of labelsAdded) index.hnsw.upsert(l, v);
      }
    }
    checkpoint(false);
  };

  // Load the model up front only when there is vector work whatever the files say (a lagging index
  // file, unembedded chunks, a model change); otherwise only when a changed file needs it.
  if (vectorWorkPending(db, opts.configuredModel)) await vectors();

  const seenPaths = new Set<string>();
  let window: PendingDoc[] = [];
  let windowChunks = 0;
  // The window being embedded. Windows commit in order, each after the next one has been sent to
  // the worker, so the worker never idles while the main thread commits (SQLite + HNSW inserts).
  let embedding: EmbeddingWindow | null = null;
  /** Sends `next` (if any) to the worker, then commits the window sent before it. */
  const advance = async (next: PendingDoc[] | null) => {
    const previous = embedding;
    embedding = next && next.length > 0 ? await startEmbedding(next) : null;
    if (previous) await commitWindow(previous);
  };
  let filesDone = 0;
  const fail = (p: string, reason: LoadFailureCode, message: string) => {
    s.documents_failed++;
    s.failed.push({ path: p, reason, message });
  };

  for await (const item of walk(opts.paths, { exclude: [opts.dataDir] })) {
    if (item.type === 'skipped') {
      s.skipped.push({ path: item.path, reason: item.reason, message: item.message });
      continue;
    }
    s.documents_seen++;
    if (item.type === 'failed') {
      fail(item.path, item.reason, item.message);
      continue;
    }
    seenPaths.add(item.path);
    filesDone++;
    opts.onProgress?.({ filesDone, chunksDone: s.chunks_added, currentPath: item.path });
    if (item.size > opts.maxFileBytes) {
      fail(item.path, 'too_large', `${item.size} bytes is over the ${opts.maxFileBytes}-byte limit (MNEME_MAX_FILE_BYTES)`);
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(item.path);
    } catch (err) {
      fail(item.path, 'unreadable', (err as Error).message);
      continue;
    }
    const hash = sha256(bytes);
    const existing = findDoc.get(opts.collection, item.path);
    if (existing && existing.content_sha256 === hash && existing.deleted_at === null) {
      s.documents_unchanged++;
      continue;
    }
    let loaded: LoadedDocument;
    let chunks: ChunkDraft[];
    try {
      loaded = await loadDocument(bytes, path.basename(item.path), { jsonTextFields: opts.jsonTextFields });
      const { embedder } = await vectors();
      chunks = await chunkDocument(loaded, embedder ? (t) => embedder.countTokens(t) : estimateTokens);
      if (chunks.length === 0) throw new LoaderError('empty', 'no text to index after extraction');
    } catch (err) {
      if (err instanceof LoaderError) fail(item.path, err.reason, err.message);
      else fail(item.path, 'parse_error', (err as Error).message);
      continue;
    }
    window.push({ path: item.path, sha256: hash, bytes: bytes.length, existing, loaded, chunks });
    windowChunks += chunks.length;
    if (windowChunks >= INGEST_WINDOW_CHUNKS || window.length >= INGEST_WINDOW_DOCS) {
      // This window embeds while the previous one commits and the next one is read and chunked.
      const ready = window;
      window = [];
      windowChunks = 0;
      await advance(ready);
    }
  }
  await advance(window);
  await advance(null);

  if (opts.prune) await pruneMissing(opts, seenPaths, s, vectors);
  const final = stack as VectorStack | null;
  if (final?.embedder && final.index) await embedMissing(opts, final.embedder, final.index, s);
  if (final) s.embedding_model = final.embedder?.info.modelId ?? null;
  checkpoint(true);

  db.prepare('UPDATE corpus_state SET last_ingest_at = ? WHERE id = 1').run(nowIso());
  s.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return s;
}

/** Tombstones documents of this collection under the walked roots whose files were not seen. */
async function pruneMissing(opts: IngestOptions, seen: Set<string>, s: IngestSummary, vectors: () => Promise<VectorStack>): Promise<void> {
  const { db } = opts;
  const docs = db
    .prepare<[string], { id: number; source_uri: string }>('SELECT id, source_uri FROM documents WHERE collection = ? AND deleted_at IS NULL')
    .all(opts.collection);
  const chunkIds = db.prepare('SELECT id FROM chunks WHERE document_id = ?').pluck();
  const del = db.prepare('DELETE FROM chunks WHERE document_id = ?');
  const tomb = db.prepare('UPDATE documents SET deleted_at = ? WHERE id = ?');
  for (const d of docs) {
    if (seen.has(d.source_uri) || !isUnder(d.source_uri, opts.paths)) continue;
    // A file that still exists but failed to load this time is not "gone": keep its last good version.
    if (fs.existsSync(d.source_uri) && s.failed.some((f) => f.path === d.source_uri)) continue;
    if (fs.existsSync(d.source_uri) && !s.skipped.some((f) => f.path === d.source_uri)) continue;
    const ids = chunkIds.all(d.id) as number[];
    const { index } = await vectors();
    db.transaction(() => {
      s.chunks_deleted += del.run(d.id).changes;
      tomb.run(nowIso(), d.id);
    }).immediate();
    for (const id of ids) index?.hnsw.remove(id);
    s.documents_deleted++;
  }
}

/** Embeds chunks stored without a vector for the active model (left by a BM25-only run). */
async function embedMissing(
  opts: IngestOptions,
  embedder: Embedder,
  index: { meta: IndexMeta; hnsw: HnswVectorIndex },
  s: IngestSummary,
): Promise<void> {
  const { db } = opts;
  const modelId = index.meta.model_id;
  const page = db.prepare<[number, string, number], { id: number; text: string; heading_path: string }>(
    `SELECT c.id, c.text, c.heading_path FROM chunks c
     WHERE c.id > ? AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = ?)
     ORDER BY c.id LIMIT ?`,
  );
  const insert = db.prepare('INSERT OR IGNORE INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)');
  let after = 0;
  for (;;) {
    const rows = page.all(after, modelId, INGEST_WINDOW_CHUNKS);
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.id;
    const vectors = await embedder.embed(rows.map((r) => embeddingInput({ headingPath: r.heading_path, text: r.text })));
    db.transaction(() => {
      rows.forEach((r, i) => {
        // The chunk may have been replaced meanwhile by another writer; the FK makes that an error we skip.
        try {
          insert.run(r.id, modelId, vectorToBlob(vectors[i]!));
        } catch {
          /* chunk gone */
        }
      });
    }).immediate();
    rows.forEach((r, i) => index.hnsw.upsert(r.id, vectors[i]!));
    s.chunks_embedded += rows.length;
  }
}
