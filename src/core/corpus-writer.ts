/**
 * Corpus writes made by a running server (issue 14: uploads and DELETE /v1/documents/:id), done the
 * way `mneme ingest` does them: one corpus writer at a time — the data-dir ingest lock on SQLite (so
 * a CLI ingest and a server write never run together), the `corpus-writer` lease on PostgreSQL — and
 * the saved HNSW file brought up to date afterwards, so `mneme doctor` passes.
 *
 * The server's in-memory index is changed only by its own syncer (the retriever follows the change
 * feed); after a write the syncer is caught up and the index saved at the feed position it reflects.
 */
import type { LoadedIndex } from './deps.ts';
import { NotFoundError } from './errors.ts';
import type { IndexSyncer } from './index-sync.ts';
import { saveIndex } from './index-store.ts';
import { acquireLease, CORPUS_WRITER_LEASE } from './lease.ts';
import { acquireLock } from './lock.ts';
import type { Store } from './store/index.ts';

/** How long a DELETE waits for a running ingest (CLI or upload) to finish before 409, in ms. */
export const DELETE_WAIT_MS = 10_000;
/** How long a queued upload job waits for a running ingest to finish, in ms (24 h: it waits its turn). */
export const JOB_WAIT_MS = 24 * 3600 * 1000;

/** A file for the ingest pipeline: where it is on disk, and the source stored for it. */
export interface IngestFile {
  path: string;
  /** e.g. `upload:report.pdf`. */
  sourceUri: string;
}

export interface IngestFilesProgress {
  /** Files finished so far (stored, unchanged or failed). */
  filesDone: number;
  filesFailed: number;
  chunksEmbedded: number;
}

export interface IngestFilesResult {
  failures: Array<{ sourceUri: string; reason: string; message: string }>;
  chunksEmbedded: number;
  /** The pipeline's summary (IngestSummary), kept with the job. */
  summary: unknown;
}

/**
 * Runs the ingest pipeline (ingest/pipeline.ts runIngest, the CLI's code path) over `files` into
 * `collection`. Implemented in ingest/upload.ts and handed to the server by its entry point (the chat
 * pipeline does not import the ingest pipeline). Called inside `CorpusWriter.exclusive`.
 */
export type IngestFilesFn = (req: { files: IngestFile[]; collection: string; onProgress: (p: IngestFilesProgress) => void }) => Promise<IngestFilesResult>;

export interface CorpusWriterOptions {
  store: Store;
  dataDir: string;
  /** True on a shared database (PostgreSQL): the lease, not the data-dir lock, keeps writers apart. */
  sharedDatabase: boolean;
  /** The server's index and the syncer that keeps it in step (null: BM25 only). */
  followed: { index: LoadedIndex; syncer: IndexSyncer } | null;
}

export class CorpusWriter {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: CorpusWriterOptions) {}

  /**
   * Runs `fn` as the one corpus writer (in this process: one after another; across processes: the
   * lock or lease), then saves the index file. Waits up to `waitMs` for another writer.
   * @throws ConflictError when another process still writes after `waitMs`.
   */
  exclusive<T>(what: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => this.locked(what, waitMs, fn));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async locked<T>(what: string, waitMs: number, fn: () => Promise<T>): Promise<T> {
    const { store, dataDir, sharedDatabase } = this.opts;
    const release = sharedDatabase
      ? await acquireLease(store, CORPUS_WRITER_LEASE, waitMs).then((l) => () => l.release())
      : await acquireLock(dataDir, 'ingest', `mneme serve (${what})`, waitMs).then((l) => async () => l.release());
    try {
      const result = await fn();
      await this.saveIndex();
      return result;
    } finally {
      await release();
    }
  }

  /** Applies the feed to the server's index and saves its file at the position it reflects. */
  private async saveIndex(): Promise<void> {
    const f = this.opts.followed;
    if (!f?.index.hnsw) return;
    await f.syncer.catchUp();
    await saveIndex(this.opts.store, this.opts.dataDir, f.index.meta, f.index.hnsw, f.syncer.appliedSeq);
  }

  /**
   * Deletes a live document: tombstone, chunks, FTS rows and vectors (the change feed removes its
   * HNSW labels from every server's index; this one's file is saved after).
   * @throws NotFoundError for an unknown or already deleted document; ConflictError (see exclusive).
   */
  async deleteDocument(id: number): Promise<void> {
    await this.exclusive('delete', DELETE_WAIT_MS, async () => {
      if (!(await this.opts.store.corpus.getDocument(id))) throw new NotFoundError(`no document ${id}`);
      await this.opts.store.corpus.deleteDocument(id);
    });
  }
}
