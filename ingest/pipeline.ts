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
import type { LoadedIndex, VectorStack } from '../src/core/deps.ts';
import type { Embedder } from '../src/core/embedder.ts';
import { LoaderError } from '../src/core/errors.ts';
import { recalibrateIfGrown, recalibrateStoreIfGrown, saveIndex } from '../src/core/index-store.ts';
import type { DocumentRef, NewChunk } from '../src/core/store/corpus.ts';
import type { Store } from '../src/core/store/index.ts';
import { estimateTokens } from '../src/core/tokens.ts';
import { chunkDocument } from './chunk.ts';
import { ExcludeMatcher } from './exclude.ts';
import { classifyPage, loadDocument } from './loaders.ts';
import type { ChunkDraft, LoadedDocument, LoadFailureCode, PageKind } from './types.ts';
import { isUnder, walk } from './walk.ts';

/** Chunks gathered before one embedding round; bigger windows sort better, smaller ones commit sooner. */
export const INGEST_WINDOW_CHUNKS = 512;
/** Most documents held in one window (bounds memory on corpora of tiny files). */
export const INGEST_WINDOW_DOCS = 256;
/** Save the HNSW file at least this often during a long run, in seconds. */
export const INDEX_CHECKPOINT_SECONDS = 120;
/**
 * Change-feed rows kept behind the saved index position (default 1,000,000, ~40 MB). A server
 * further behind than this (stopped for a long time) reconciles in full once instead.
 */
export const FEED_RETAIN_CHANGES = 1_000_000;
/**
 * Ranking weight stored with a document (documents.weight) per page kind (classifyPage): navigation
 * pages stay searchable but rank below content. The retriever multiplies the fused score by it.
 */
export const PAGE_KIND_WEIGHTS: Readonly<Record<PageKind, number>> = { content: 1, toc: 0.5, release_notes: 0.5, index: 0.25 };

/** The weight of a loaded document: its loader's verdict, or (non-HTML) the verdict on its title alone. */
export function documentWeight(loaded: LoadedDocument): number {
  return PAGE_KIND_WEIGHTS[loaded.pageKind ?? classifyPage(loaded.title)];
}

/**
 * An ingest that added or deleted at least this many chunks merges the full-text index at the end
 * (CorpusStore.optimizeFullText; bench/README.md: BM25 p50 −23 % at 100k chunks after a bulk load)…
 */
export const FTS_OPTIMIZE_MIN_CHUNKS = 20_000;
/**
 * …or at least this share of the live chunks: the PostgreSQL manual's 9,844 chunks left 13 FTS5
 * segments, and merging them (0.16 s) cut lexical retrieval p50 / p99 from 4.7 / 14.7 to 2.9 / 6.6 ms
 * (bench/README.md, "Issue 17: merged full-text segments"). A small update of a large corpus is left
 * to FTS5's automerge: a full merge rewrites the whole index (~5 s at 1M chunks).
 */
export const FTS_OPTIMIZE_MIN_SHARE = 0.1;

export interface IngestOptions {
  store: Store;
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
  /**
   * Globs of files to leave out (`--exclude`, see ingest/exclude.ts): reported as skipped, and with
   * `prune` removed from the collection if they were ingested before. Default none.
   */
  exclude?: string[] | undefined;
  onProgress?: ((p: IngestProgress) => void) | undefined;
  /**
   * The source to store for some of the files (absolute path → source URI), e.g. `upload:NAME` for a
   * file uploaded through POST /v1/documents into `<data dir>/uploads/`. When given, the data dir is
   * not excluded from the walk (those files live there by design). Default: each file's own path.
   */
  sourceUris?: ReadonlyMap<string, string> | undefined;
  /**
   * Asked before each file: true stops the walk there (SIGINT); what was read so far is still
   * embedded and committed, and the summary says `interrupted: true`. Default: never.
   */
  shouldStop?: (() => boolean) | undefined;
  /**
   * recall@10 target of the ef_search calibration run at the end when the index grew by
   * CALIBRATION_GROWTH_FACTOR or CALIBRATION_GROWTH_VECTORS since the last one (MNEME_HNSW_RECALL_TARGET;
   * default CALIBRATION_RECALL_TARGET).
   */
  recallTarget?: number | undefined;
  /**
   * Told the change-feed head after each committed window (and after pruning / embedding leftovers),
   * so serving replicas apply the change at once (a Redis pub/sub notice). Must not throw. Default: none.
   */
  notify?: ((head: number) => void) | undefined;
}

export interface IngestProgress {
  /** Files read so far (the current one included), failed ones excluded. */
  filesDone: number;
  /** Files that failed so far. */
  filesFailed: number;
  chunksDone: number;
  /** Chunks embedded so far. */
  chunksEmbedded: number;
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
  /** Present (true) when `shouldStop` ended the walk early: files after that point were not looked at. */
  interrupted?: true;
}

interface PendingDoc {
  /** The source URI stored (the file's path unless `sourceUris` maps it). */
  path: string;
  sha256: string;
  bytes: number;
  existing: DocumentRef | null;
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
  const { store } = opts;
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

  let lastCheckpoint = Date.now();
  /** Saves the index when it no longer matches what its file was saved from (or on a timer). */
  const checkpoint = async (force: boolean) => {
    const index = stack?.index;
    if (!index) return;
    if (!force && Date.now() - lastCheckpoint < INDEX_CHECKPOINT_SECONDS * 1000) return;
    // A store that searches vectors itself (pgvector) keeps no index file.
    if (index.hnsw) await saveIndex(store, opts.dataDir, index.meta, index.hnsw);
    // End of the run: a grown index gets a new ef_search (a running server follows the generation row).
    if (force && index.hnsw) await recalibrateIfGrown(store, index.meta, index.hnsw, { target: opts.recallTarget });
    else if (force && store.corpus.nativeVectorSearch) await recalibrateStoreIfGrown(store, index.meta, { target: opts.recallTarget });
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
        for (const [h, v] of await store.corpus.vectorsByContentHash(d.existing.id, modelId)) vectorsByHash.set(h, v);
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

  const notifyHead = async () => {
    if (opts.notify) opts.notify((await store.corpus.feedBounds()).head);
  };

  /** Waits for the window's vectors, then commits each document in its own transaction. */
  const commitWindow = async (w: EmbeddingWindow) => {
    await w.embedded;
    const { window, hashes, modelId, vectorsByHash } = w;
    const { index } = await vectors();
    for (let i = 0; i < window.length; i++) {
      const d = window[i]!;
      const chunks: NewChunk[] = d.chunks.map((c, j) => {
        const h = hashes[i]![j]!;
        return { ord: c.ord, text: c.text, headingPath: c.headingPath, tokenCount: c.tokenCount, contentSha256: h, vector: modelId ? vectorsByHash.get(h) : undefined };
      });
      const doc = { collection: opts.collection, sourceUri: d.path, contentSha256: d.sha256, title: d.loaded.title, kind: d.loaded.kind, bytes: d.bytes, weight: documentWeight(d.loaded) };
      const r = await store.corpus.replaceDocument(doc, chunks, d.existing, modelId);
      s.chunks_deleted += r.chunksDeleted;
      s.chunks_added += r.chunksAdded;
      if (!d.existing || d.existing.deletedAt) s.documents_added++;
      else s.documents_updated++;
      if (index) {
        for (const l of r.chunkIdsRemoved) index.hnsw?.remove(l);
        for (const [l, v] of r.vectorsAdded) index.hnsw?.upsert(l, v);
      }
    }
    await checkpoint(false);
    await notifyHead();
  };

  // Load the model up front only when there is vector work whatever the files say (a lagging index
  // file, unembedded chunks, a model change); otherwise only when a changed file needs it.
  // What a killed run left (a half-written large document, chunks of a replaced one) goes first.
  await store.corpus.cleanupInterrupted();
  if (await store.corpus.vectorWorkPending(opts.configuredModel)) await vectors();

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

  const excluded = new ExcludeMatcher(opts.exclude ?? [], opts.paths);
  for await (const item of walk(opts.paths, { exclude: opts.sourceUris ? [] : [opts.dataDir] })) {
    if (opts.shouldStop?.()) {
      s.interrupted = true;
      break;
    }
    if (item.type === 'skipped') {
      s.skipped.push({ path: item.path, reason: item.reason, message: item.message });
      continue;
    }
    const glob = excluded.match(item.path);
    if (glob !== null) {
      s.skipped.push({ path: item.path, reason: 'excluded', message: `matches --exclude ${glob}` });
      continue;
    }
    s.documents_seen++;
    if (item.type === 'failed') {
      fail(item.path, item.reason, item.message);
      continue;
    }
    seenPaths.add(item.path);
    filesDone++;
    opts.onProgress?.({ filesDone, filesFailed: s.documents_failed, chunksDone: s.chunks_added, chunksEmbedded: s.chunks_embedded, currentPath: item.path });
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
    const sourceUri = opts.sourceUris?.get(item.path) ?? item.path;
    const existing = await store.corpus.findDocument(opts.collection, sourceUri);
    if (existing && existing.contentSha256 === hash && existing.deletedAt === null) {
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
    window.push({ path: sourceUri, sha256: hash, bytes: bytes.length, existing, loaded, chunks });
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
  if (opts.prune || final) await notifyHead();
  if (final) s.embedding_model = final.embedder?.info.modelId ?? null;
  // A bulk load leaves FTS5 with many segments (SQLite) and the planner without statistics for its
  // rows (PostgreSQL): one pass makes every later query cheaper. Before the final checkpoint, so a
  // recalibration of pgvector's ef measures the plans searches will use.
  if (await worthMerging(store, s.chunks_added + s.chunks_deleted)) await store.corpus.optimizeFullText();
  await checkpoint(true);
  await truncateFeed(store);
  s.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return s;
}

/** True when `changed` chunks are FTS_OPTIMIZE_MIN_CHUNKS or FTS_OPTIMIZE_MIN_SHARE of the live ones. */
async function worthMerging(store: Store, changed: number): Promise<boolean> {
  if (changed >= FTS_OPTIMIZE_MIN_CHUNKS) return true;
  if (changed === 0) return false;
  const live = (await store.corpus.collections()).reduce((n, c) => n + c.chunks, 0);
  return changed >= FTS_OPTIMIZE_MIN_SHARE * live;
}

/** Drops the oldest change-feed rows, keeping FEED_RETAIN_CHANGES behind every saved index position. */
async function truncateFeed(store: Store): Promise<void> {
  const { head } = await store.corpus.feedBounds();
  const saved = [...(await store.corpus.generations('active')), ...(await store.corpus.generations('building'))].map((g) => g.savedFeedSeq ?? 0);
  const upto = Math.min(head, ...saved) - FEED_RETAIN_CHANGES;
  if (upto > 0) await store.corpus.truncateFeed(upto);
}

/** Tombstones documents of this collection under the walked roots whose files were not seen. */
async function pruneMissing(opts: IngestOptions, seen: Set<string>, s: IngestSummary, vectors: () => Promise<VectorStack>): Promise<void> {
  const { store } = opts;
  for (const d of await store.corpus.liveDocuments(opts.collection)) {
    if (seen.has(d.sourceUri) || !isUnder(d.sourceUri, opts.paths)) continue;
    // A file that still exists but failed to load this time is not "gone": keep its last good version.
    if (fs.existsSync(d.sourceUri) && s.failed.some((f) => f.path === d.sourceUri)) continue;
    if (fs.existsSync(d.sourceUri) && !s.skipped.some((f) => f.path === d.sourceUri)) continue;
    const { index } = await vectors();
    const ids = await store.corpus.deleteDocument(d.id);
    s.chunks_deleted += ids.length;
    for (const id of ids) index?.hnsw?.remove(id);
    s.documents_deleted++;
  }
}

/** Embeds chunks stored without a vector for the active model (left by a BM25-only run). */
async function embedMissing(opts: IngestOptions, embedder: Embedder, index: LoadedIndex, s: IngestSummary): Promise<void> {
  const { store } = opts;
  const modelId = index.meta.modelId;
  let after = 0;
  for (;;) {
    const rows = await store.corpus.chunksMissingEmbedding(modelId, after, INGEST_WINDOW_CHUNKS);
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.id;
    const vectors = await embedder.embed(rows.map((r) => embeddingInput(r)));
    const pairs = rows.map((r, i): [number, Float32Array] => [r.id, vectors[i]!]);
    await store.corpus.addEmbeddings(modelId, pairs);
    for (const [id, v] of pairs) index.hnsw?.upsert(id, v);
    s.chunks_embedded += rows.length;
  }
}
