/**
 * Sentence embeddings. `Embedder` is the small interface the pipelines use; `TransformersEmbedder`
 * runs a transformers.js feature-extraction model in worker threads (one per core by default, see
 * EMBED_MAX_WORKERS), batching by a padded-token budget after sorting by length (padding waste made
 * batch 16 slower than batch 1 unsorted) and sending each batch to the least busy worker.
 */
import type { Worker } from 'node:worker_threads';
import { AutoTokenizer, env } from '@huggingface/transformers';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import type { Config } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { missingEmbeddingModelMessage } from './model-files.ts';
import { configureTransformersEnv } from './transformers-env.ts';
import { startWorker } from './workers.ts';

/**
 * Padded tokens per batch sent to the model (batch size × longest item). Measured on 2 cores with
 * the all-MiniLM-L6-v2 shape on ~130-token chunks: 38 chunks/s at 256, 43.5 at 1024, 42.6 at 2048,
 * 36 at 4096 (bench/README.md).
 */
export const EMBED_BATCH_TOKENS = 1024;
/** Upper bound on items per batch, whatever their length. */
export const EMBED_BATCH_MAX_ITEMS = 64;
/** Trained length of the default all-MiniLM-L6-v2 (its tokenizer says 512, the model was trained at 256). */
export const DEFAULT_EMBED_MAX_TOKENS = 256;

export interface EmbedderInfo {
  modelId: string;
  dimension: number;
  /** Inputs are truncated to this many tokens. */
  maxTokens: number;
  pooling: 'mean' | 'cls';
  normalized: boolean;
}

export interface Embedder {
  readonly info: EmbedderInfo;
  /** Tokens the model would see for `text` (before truncation, special tokens included). */
  countTokens(text: string): number;
  /** One vector per text, same order. @throws Error if the worker fails. */
  embed(texts: string[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

export interface EmbedWorkerData {
  modelRef: string;
  modelsDir: string;
  offline: boolean;
  dtype: string;
  threads: number;
  maxTokens: number | undefined;
  defaultMaxTokens: number | undefined;
}

export type EmbedWorkerRequest = { type: 'init' } | { type: 'embed'; id: number; texts: string[] };
export type EmbedWorkerReply =
  | { type: 'ready'; dimension: number; maxTokens: number; pooling: 'mean' | 'cls'; normalize: boolean }
  | { type: 'vectors'; id: number; vectors: Float32Array }
  | { type: 'error'; id: number; message: string };

/** Groups item indexes (already sorted by length) into batches under the padded-token budget. */
export function planBatches(lengths: number[], budgetTokens = EMBED_BATCH_TOKENS, maxItems = EMBED_BATCH_MAX_ITEMS): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const batches: number[][] = [];
  let cur: number[] = [];
  let longest = 0;
  for (const i of order) {
    const len = Math.max(1, lengths[i]!);
    const nextLongest = Math.max(longest, len);
    if (cur.length > 0 && (nextLongest * (cur.length + 1) > budgetTokens || cur.length >= maxItems)) {
      batches.push(cur);
      cur = [];
    }
    cur.push(i);
    longest = cur.length === 1 ? len : nextLongest;
  }
  if (cur.length > 0) batches.push(cur);
  return batches;
}

/**
 * Most embedding workers (each with its own copy of the model). On a small machine one
 * single-threaded session per core beats one session using every core: measured on 2 cores with the
 * all-MiniLM-L6-v2 shape, 700 chunks took 18.8 s on 2 workers × 1 thread vs 20.8 s on 1 × 2, and a
 * busy event loop stalls only one of them instead of the barrier of a shared thread pool.
 */
export const EMBED_MAX_WORKERS = 4;

/** Worker count and intra-op threads per worker for `cores` cores (see EMBED_MAX_WORKERS). */
export function embedWorkerLayout(cores: number): { workers: number; threadsPerWorker: number } {
  const n = Math.max(1, Math.floor(cores));
  const workers = Math.min(EMBED_MAX_WORKERS, n);
  return { workers, threadsPerWorker: Math.max(1, Math.floor(n / workers)) };
}

interface WorkerSlot {
  worker: Worker;
  pending: Map<number, { resolve: (v: Float32Array) => void; reject: (e: Error) => void }>;
  /** Padded tokens sent to this worker and not answered yet (where the next batch goes). */
  queuedTokens: number;
}

export class TransformersEmbedder implements Embedder {
  readonly info: EmbedderInfo;
  private readonly slots: WorkerSlot[];
  private readonly tokenizer: PreTrainedTokenizer;
  private nextId = 1;
  private failed: Error | null = null;
  private closing = false;

  private constructor(info: EmbedderInfo, workers: Worker[], tokenizer: PreTrainedTokenizer) {
    this.info = info;
    this.tokenizer = tokenizer;
    this.slots = workers.map((worker) => ({ worker, pending: new Map(), queuedTokens: 0 }));
    const failAll = (err: Error) => {
      this.failed = err;
      for (const slot of this.slots) {
        for (const p of slot.pending.values()) p.reject(err);
        slot.pending.clear();
      }
    };
    for (const slot of this.slots) {
      slot.worker.on('message', (msg: EmbedWorkerReply) => {
        if (msg.type === 'ready') return;
        const p = slot.pending.get(msg.id);
        if (!p) return;
        slot.pending.delete(msg.id);
        if (msg.type === 'vectors') p.resolve(msg.vectors);
        else p.reject(new Error(`embedding failed: ${msg.message}`));
      });
      slot.worker.on('error', (err) => failAll(err));
      slot.worker.on('exit', (code) => {
        if (!this.closing) failAll(new Error(`embedding worker exited (code ${code})`));
      });
    }
  }

  /** Embedding workers running (see embedWorkerLayout). */
  get workerCount(): number {
    return this.slots.length;
  }

  /**
   * Loads the model in `workers` worker threads (default: embedWorkerLayout(threads)) and its
   * tokenizer here. `threads` is the machine's core count to share among them.
   * @throws ModelLoadError naming the model when it cannot be loaded (offline and not cached,
   * missing files, corrupt ONNX).
   */
  static async load(options: Omit<EmbedWorkerData, 'defaultMaxTokens'> & { workers?: number | undefined }): Promise<TransformersEmbedder> {
    const layout = embedWorkerLayout(options.threads);
    const workerCount = options.workers ?? layout.workers;
    const { workers: _workers, ...rest } = options;
    const data: EmbedWorkerData = {
      ...rest,
      threads: options.workers === undefined ? layout.threadsPerWorker : Math.max(1, Math.floor(options.threads / workerCount)),
      defaultMaxTokens: options.modelRef === 'Xenova/all-MiniLM-L6-v2' ? DEFAULT_EMBED_MAX_TOKENS : undefined,
    };
    const workers = Array.from({ length: workerCount }, () => startWorker(new URL('./embed-worker.ts', import.meta.url), data));
    try {
      const readies = await Promise.all(workers.map((w) => initWorker(w)));
      const ready = readies[0]!;
      const id = configureTransformersEnv(env, options);
      const tokenizer = await AutoTokenizer.from_pretrained(id);
      return new TransformersEmbedder(
        { modelId: options.modelRef, dimension: ready.dimension, maxTokens: ready.maxTokens, pooling: ready.pooling, normalized: ready.normalize },
        workers,
        tokenizer,
      );
    } catch (cause) {
      await Promise.all(workers.map((w) => w.terminate()));
      const message = (cause as Error).message;
      // Missing files make transformers.js fail obscurely ("reading 'tokenizer_class'"): say which and where.
      const missing = missingEmbeddingModelMessage(options, message);
      throw new ModelLoadError(missing ?? `cannot load embedding model ${options.modelRef}: ${message}`, { cause });
    }
  }

  countTokens(text: string): number {
    return this.tokenizer.encode(text).length;
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return [];
    const lengths = texts.map((t) => Math.min(this.countTokens(t), this.info.maxTokens));
    const out = new Array<Float32Array>(texts.length);
    const dim = this.info.dimension;
    await Promise.all(
      planBatches(lengths).map(async (batch) => {
        const padded = Math.max(...batch.map((i) => lengths[i]!)) * batch.length;
        const flat = await this.request(
          batch.map((i) => texts[i]!),
          padded,
        );
        batch.forEach((i, j) => {
          out[i] = flat.slice(j * dim, (j + 1) * dim);
        });
      }),
    );
    return out;
  }

  /** Sends one batch to the worker with the least queued work; each worker runs its batches in order. */
  private request(texts: string[], paddedTokens: number): Promise<Float32Array> {
    if (this.failed) return Promise.reject(this.failed);
    const slot = this.slots.reduce((a, b) => (b.queuedTokens < a.queuedTokens ? b : a));
    const id = this.nextId++;
    slot.queuedTokens += paddedTokens;
    return new Promise<Float32Array>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ type: 'embed', id, texts } satisfies EmbedWorkerRequest);
    }).finally(() => {
      slot.queuedTokens -= paddedTokens;
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** Sends `init` and waits for the worker's `ready` (or its load error). */
async function initWorker(worker: Worker): Promise<Extract<EmbedWorkerReply, { type: 'ready' }>> {
  const listeners: { onError?: (e: Error) => void; onExit?: (c: number) => void; onMessage?: (m: EmbedWorkerReply) => void } = {};
  try {
    return await new Promise<Extract<EmbedWorkerReply, { type: 'ready' }>>((resolve, reject) => {
      listeners.onError = reject;
      listeners.onExit = (code) => reject(new Error(`worker exited with code ${code}`));
      listeners.onMessage = (m) => {
        if (m.type === 'ready') resolve(m);
        else if (m.type === 'error' && m.id === -1) reject(new Error(m.message));
      };
      worker.on('error', listeners.onError).on('exit', listeners.onExit).on('message', listeners.onMessage);
      worker.postMessage({ type: 'init' } satisfies EmbedWorkerRequest);
    });
  } finally {
    // Only our own listeners: removeAllListeners() would also drop the Worker's internal ones.
    worker.off('error', listeners.onError!).off('exit', listeners.onExit!).off('message', listeners.onMessage!);
  }
}

export type EmbedderLoad = { embedder: Embedder; warning: null } | { embedder: null; warning: string };

/**
 * Loads the configured embedder, or explains why there is none. Never throws: without a model
 * mneme runs on BM25 alone, and the caller prints `warning`.
 */
export async function loadEmbedder(config: Config): Promise<EmbedderLoad> {
  if (config.embed.model === null) {
    return { embedder: null, warning: 'embeddings disabled (MNEME_EMBED_MODEL=none): BM25 only' };
  }
  try {
    const embedder = await TransformersEmbedder.load({
      modelRef: config.embed.model,
      modelsDir: config.modelsDir,
      offline: config.offline,
      dtype: config.embed.dtype,
      threads: config.threads,
      maxTokens: config.embed.maxTokens,
      workers: config.embed.workers,
    });
    return { embedder, warning: null };
  } catch (err) {
    return {
      embedder: null,
      warning: `no embedding model: ${(err as Error).message}. Continuing with BM25 only; re-run ingest once the model is there to embed what is missing.`,
    };
  }
}
