/**
 * Parallel HNSW build: the vectors of a generation are streamed page by page (never all in the JS
 * heap), routed by label to N shards (label % N, as ShardedHnswIndex routes) and inserted by one
 * worker thread per shard, each owning its graph; each worker then writes its shard file and the
 * sharded layout is committed (sharded-index.ts). The caller's thread only reads and routes pages.
 * Flow control: at most SHARD_BATCHES_IN_FLIGHT batches wait per worker, so memory stays bounded by
 * pages, not by the corpus.
 */
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { commitShards, saveToken, shardFileName, ShardedHnswIndex } from './sharded-index.ts';
import type { ShardManifest } from './sharded-index.ts';
import { startWorker } from './workers.ts';

/** Batches posted to a shard worker and not yet acknowledged before the reader waits. */
export const SHARD_BATCHES_IN_FLIGHT = 3;
/** Headroom over a shard's expected size allocated up front (avoids a resize that copies the graph). */
const CAPACITY_SLACK = 1.02;

export interface ShardWorkerData {
  dimension: number;
  m: number;
  efConstruction: number;
  capacity: number;
}
export type ShardWorkerRequest = { type: 'add'; labels: Float64Array; vectors: Float32Array } | { type: 'save'; file: string };
export type ShardWorkerReply = { type: 'ack' } | { type: 'saved'; vectors: number; deleted: number[] } | { type: 'error'; message: string };

export interface ShardedBuildOptions {
  dimension: number;
  m: number;
  efConstruction: number;
  /** Number of shards = worker threads. 1 builds on the calling thread (no worker). */
  shards: number;
  /** Expected vector count (sizes each shard's allocation). */
  expected: number;
}

export interface ShardedBuildResult {
  vectors: number;
  shards: number;
  /** Wall time of inserting and writing, in s. */
  seconds: number;
}

/** One shard worker with a bounded queue of unacknowledged batches. */
class ShardWorker {
  private readonly worker: Worker;
  private readonly waiting: Array<{ resolve: (r: ShardWorkerReply) => void; reject: (e: Error) => void }> = [];
  private inFlight = 0;
  private failure: Error | null = null;
  private drained: (() => void) | null = null;

  constructor(data: ShardWorkerData) {
    this.worker = startWorker(new URL('./hnsw-build-worker.ts', import.meta.url), data);
    this.worker.on('message', (r: ShardWorkerReply) => {
      const w = this.waiting.shift();
      if (r.type === 'error') this.fail(new Error(`HNSW shard build failed: ${r.message}`));
      else w?.resolve(r);
      if (r.type === 'ack') {
        this.inFlight--;
        this.drained?.();
      }
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (code !== 0) this.fail(new Error(`HNSW shard build worker exited with code ${code}`));
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
    this.drained?.();
  }

  private request(msg: ShardWorkerRequest, transfer: ArrayBuffer[]): Promise<ShardWorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    const p = new Promise<ShardWorkerReply>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.worker.postMessage(msg, transfer);
    return p;
  }

  /** Posts a batch; resolves once fewer than SHARD_BATCHES_IN_FLIGHT are pending. @throws the worker's failure. */
  async add(labels: Float64Array, vectors: Float32Array): Promise<void> {
    this.inFlight++;
    this.request({ type: 'add', labels, vectors }, [labels.buffer as ArrayBuffer, vectors.buffer as ArrayBuffer]).catch(() => undefined);
    while (this.inFlight >= SHARD_BATCHES_IN_FLIGHT && !this.failure) await new Promise<void>((r) => (this.drained = r));
    if (this.failure) throw this.failure;
  }

  /** Writes the shard (after every batch posted) and returns what the manifest records. */
  async save(file: string): Promise<{ vectors: number; deleted: number[] }> {
    const r = await this.request({ type: 'save', file }, []);
    if (r.type !== 'saved') throw new Error(`unexpected reply ${r.type} from an HNSW shard worker`);
    return r;
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** Packs the vectors of one page that belong to one shard into transferable arrays. */
function packShard(page: ReadonlyArray<readonly [number, Float32Array]>, shard: number, shards: number, dim: number): { labels: Float64Array; vectors: Float32Array } | null {
  let n = 0;
  for (const [label] of page) if (label % shards === shard) n++;
  if (n === 0) return null;
  const labels = new Float64Array(n);
  const vectors = new Float32Array(n * dim);
  let i = 0;
  for (const [label, v] of page) {
    if (label % shards !== shard) continue;
    labels[i] = label;
    vectors.set(v, i * dim);
    i++;
  }
  return { labels, vectors };
}

/**
 * Builds the index of the generation file `file` from `pages` (label-ascending pages of stored
 * vectors) and commits it in the sharded layout. The previous files stay in place, and remain the
 * index, until the new manifest replaces them: readers keep using the old one meanwhile.
 * @throws Error when a worker fails (the partial shard files are left for the next save to remove).
 */
export async function buildShardedIndex(file: string, pages: AsyncIterable<ReadonlyArray<readonly [number, Float32Array]>>, opts: ShardedBuildOptions): Promise<ShardedBuildResult> {
  const t0 = performance.now();
  const capacity = Math.max(1024, Math.ceil((opts.expected / opts.shards) * CAPACITY_SLACK) + 1);
  if (opts.shards === 1) {
    const index = ShardedHnswIndex.create({ dimension: opts.dimension, m: opts.m, efConstruction: opts.efConstruction, initialCapacity: capacity });
    for await (const page of pages) for (const [label, v] of page) index.upsert(label, v);
    index.save(file);
    return { vectors: index.size(), shards: 1, seconds: (performance.now() - t0) / 1000 };
  }
  const data: ShardWorkerData = { dimension: opts.dimension, m: opts.m, efConstruction: opts.efConstruction, capacity };
  const workers = Array.from({ length: opts.shards }, () => new ShardWorker(data));
  try {
    for await (const page of pages) {
      const posts: Array<Promise<void>> = [];
      for (let s = 0; s < opts.shards; s++) {
        const batch = packShard(page, s, opts.shards, opts.dimension);
        if (batch) posts.push(workers[s]!.add(batch.labels, batch.vectors));
      }
      await Promise.all(posts);
    }
    const token = saveToken();
    const names = workers.map((_, i) => shardFileName(file, i, token));
    const saved = await Promise.all(workers.map((w, i) => w.save(path.join(path.dirname(file), names[i]!))));
    const entries: ShardManifest['shards'] = saved.map((s, i) => ({ file: names[i]!, deleted: s.deleted, vectors: s.vectors }));
    commitShards(file, opts.dimension, entries);
    return { vectors: entries.reduce((n, e) => n + e.vectors, 0), shards: opts.shards, seconds: (performance.now() - t0) / 1000 };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
