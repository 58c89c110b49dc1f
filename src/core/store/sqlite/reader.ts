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

export type ReaderMethod = 'searchText' | 'searchDocuments' | 'bestChunks' | 'lexicalCandidates' | 'searchPaths';
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
  private isReady = false;
  private failed: Error | null = null;
  /** Resolves true once the worker is ready, false if it failed first. */
  readonly ready: Promise<boolean>;

  /** Starts the worker on `file` (which must exist and be migrated); `ftsNative` as SqliteConnectionOptions says. */
  constructor(file: string, ftsNative = true) {
    this.worker = startWorker(new URL('./read-worker.ts', import.meta.url), { file, ftsNative });
    this.worker.unref();
    let settle: (ok: boolean) => void = () => {};
    this.ready = new Promise<boolean>((r) => (settle = r));
    this.worker.on('message', (msg: ReaderReply | { ready: true }) => {
      if ('ready' in msg) {
        this.isReady = true;
        return settle(true);
      }
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error !== undefined) p.reject(new InternalError(`full-text search failed: ${msg.error}`));
      else p.resolve(msg.result);
    });
    const fail = (err: Error) => {
      this.failed = err;
      settle(false);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', (err) => fail(err));
    this.worker.on('exit', (code) => fail(new InternalError(`the full-text reader thread exited (${code})`)));
  }

  /**
   * True once the worker has opened its connection and while it runs. Until then (its start-up
   * competes with the server's own for the CPU) and after a crash, callers search on their own
   * connection: a search never waits for the thread to boot.
   */
  get usable(): boolean {
    return this.isReady && this.failed === null;
  }

  /** @throws the worker's failure when it has crashed; InternalError when the search failed there. */
  async call<T>(method: ReaderMethod, args: unknown[]): Promise<T> {
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
