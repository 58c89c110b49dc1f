/**
 * The ingest pipeline for files a running server received (POST /v1/documents): the CLI's runIngest
 * over the uploaded files, with each file's source given (`upload:NAME`), the server's embedder, and
 * no index of its own (the server's index follows the change feed; CorpusWriter saves its file).
 * Handed to the chat app by its entry point (src/commands/serve.ts) as an IngestFilesFn.
 */
import type { IngestFilesFn } from '../src/core/corpus-writer.ts';
import type { Embedder } from '../src/core/embedder.ts';
import type { Store } from '../src/core/store/index.ts';
import { runIngest } from './pipeline.ts';

export interface UploadIngestOptions {
  store: Store;
  dataDir: string;
  maxFileBytes: number;
  /** The server's embedding model (null: BM25 only; chunks are embedded by a later ingest with a model). */
  embedder: Embedder | null;
}

/** An IngestFilesFn running the one ingest code path. */
export function uploadIngester(o: UploadIngestOptions): IngestFilesFn {
  return async ({ files, collection, onProgress }) => {
    const sourceUris = new Map(files.map((f) => [f.path, f.sourceUri]));
    const meta = o.embedder ? await o.store.corpus.activeGeneration() : null;
    const feedSeq = (await o.store.corpus.feedBounds()).head;
    const summary = await runIngest({
      store: o.store,
      dataDir: o.dataDir,
      paths: files.map((f) => f.path),
      collection,
      prune: false,
      maxFileBytes: o.maxFileBytes,
      // The server's embedder; its index (hnsw null here) is kept in step by the retriever's syncer.
      vectors: async () => ({ embedder: o.embedder, index: meta ? { meta, hnsw: null, feedSeq } : null, warnings: [] }),
      configuredModel: o.embedder?.info.modelId ?? null,
      sourceUris,
      onProgress: (p) => onProgress({ filesDone: Math.max(0, p.filesDone - 1) + p.filesFailed, filesFailed: p.filesFailed, chunksEmbedded: p.chunksEmbedded }),
    });
    const failures = summary.failed.map((f) => ({ sourceUri: sourceUris.get(f.path) ?? f.path, reason: f.reason, message: f.message }));
    return { failures, chunksEmbedded: summary.chunks_embedded, summary: { ...summary, failed: failures } };
  };
}
