/**
 * Full-text searches of a server on a worker thread (`SqliteReader`): better-sqlite3 runs a query
 * synchronously on the calling thread, and an FTS5 query whose terms match a large part of the
 * corpus (a 250k-record document of "valve … gauge …" lines) scores every match before returning —
 * seconds on the event loop, during which the server answers nothing, /healthz included. Here such
 * a query blocks only the reader thread; the server keeps serving. WAL mode lets the reader's own
 * connection read a consistent snapshot while the main connection and other processes write.
 */
import type { Worker } from 'node:worker_threads';
import { InternalError } from '../../errors.ts';
import { startWorker } from '../../workers.ts';

export type ReaderMethod = 'searchText' | 'searchDocuments' | 'bestChunks';
export interface ReaderRequest {
  id: number;
  method: ReaderMethod;
  args: unknown[];
}
export type ReaderReply = { id: number; result: unknown; error?: undefined } | { id: number; error: string; result?: undefined };

export class SqliteReader {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private readonly ready: Promise<void>;
  private failed: Error | null = null;

  /** Starts the worker on `file` (which must exist and be migrated). */
  constructor(file: string) {
    this.worker = startWorker(new URL('./read-worker.ts', import.meta.url), { file });
    this.worker.unref();
    let markReady: () => void = () => {};
    this.ready = new Promise<void>((r) => (markReady = r));
    this.worker.on('message', (msg: ReaderReply | { ready: true }) => {
      if ('ready' in msg) return markReady();
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error !== undefined) p.reject(new InternalError(`full-text search failed: ${msg.error}`));
      else p.resolve(msg.result);
    });
    const fail = (err: Error) => {
      this.failed = err;
      markReady();
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', (err) => fail(err));
    this.worker.on('exit', (code) => fail(new InternalError(`the full-text reader thread exited (${code})`)));
  }

  /** True while the worker runs (after a crash, callers search on their own connection). */
  get usable(): boolean {
    return this.failed === null;
  }

  async call<T>(method: ReaderMethod, args: unknown[]): Promise<T> {
    await this.ready;
    if (this.failed) throw this.failed;
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, method, args } satisfies ReaderRequest);
    });
  }

  async close(): Promise<void> {
    if (this.failed) return;
    this.worker.postMessage({ type: 'close' });
    await this.worker.terminate().catch(() => undefined);
  }
}
