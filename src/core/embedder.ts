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
import { EmbedderUnavailableError } from './embedder-types.ts';
import type { Embedder, EmbedderInfo } from './embedder-types.ts';
import { ModelLoadError } from './errors.ts';
import { missingEmbeddingModelMessage } from './model-files.ts';
import { configureTransformersEnv } from './transformers-env.ts';
import { startWorker } from './workers.ts';

export type { Embedder, EmbedderInfo } from './embedder-types.ts';
export { EmbedderUnavailableError } from './embedder-types.ts';

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

export interface EmbedWorkerData {
  modelRef: string;
  modelsDir: string;
  offline: boolean;
  dtype: string;
  threads: number;
  maxTokens: number | undefined;
  defaultMaxTokens: number | undefined;
}

/**
 * `exit`: the worker skips the batches still queued, lets the run in flight finish and exits with
 * `code`. Terminating a worker during an onnxruntime run can abort the whole process ("terminate
 * called after throwing an instance of 'Napi::Error'", seen once in a CI run), so workers are always
 * asked to leave, and terminated only if they do not within EMBED_WORKER_EXIT_MS.
 */
export type EmbedWorkerRequest = { type: 'init' } | { type: 'embed'; id: number; texts: string[] } | { type: 'exit'; code: number };

/** How long a worker asked to exit gets before it is terminated, in ms. */
export const EMBED_WORKER_EXIT_MS = 10_000;

/** Asks `worker` to exit with `code` after its run in flight; terminates it after EMBED_WORKER_EXIT_MS. Resolves once it has exited. */
async function stopWorker(worker: Worker, code: number): Promise<void> {
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  try {
    worker.postMessage({ type: 'exit', code } satisfies EmbedWorkerRequest);
  } catch {
    // Already gone.
  }
  const timer = setTimeout(() => void worker.terminate().catch(() => {}), EMBED_WORKER_EXIT_MS);
  await exited;
  clearTimeout(timer);
}
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

/** First respawn delay after an embedding worker died, in ms; doubles per failed attempt. */
export const EMBED_RESPAWN_BASE_MS = 250;
/** Longest respawn delay, in ms. */
export const EMBED_RESPAWN_MAX_MS = 30_000;

/** Respawn delay after `attempt` consecutive failures (0-based), in ms: base·2^attempt, capped. Pure. */
export function respawnDelayMs(attempt: number, baseMs = EMBED_RESPAWN_BASE_MS, maxMs = EMBED_RESPAWN_MAX_MS): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
}

interface Pending {
  resolve: (v: Float32Array) => void;
  reject: (e: Error) => void;
}

interface WorkerSlot {
  /** null while the worker is down (crashed, respawning). */
  worker: Worker | null;
  pending: Map<number, Pending>;
  /** Padded tokens sent to this worker and not answered yet (where the next batch goes). */
  queuedTokens: number;
  /** Consecutive failed respawns (0 after a successful start). */
  attempts: number;
  respawnTimer: NodeJS.Timeout | null;
}

export interface EmbedderHealthListener {
  /** A worker died; `restartInMs` until the next start attempt. */
  onWorkerDown?(index: number, error: Error, restartInMs: number): void;
  /** A worker is running again. */
  onWorkerUp?(index: number): void;
}

export class TransformersEmbedder implements Embedder {
  readonly info: EmbedderInfo;
  private readonly slots: WorkerSlot[];
  private readonly tokenizer: PreTrainedTokenizer;
  private readonly data: EmbedWorkerData;
  private nextId = 1;
  private closing = false;
  /** Respawn delays (tests shorten them). */
  respawnBaseMs = EMBED_RESPAWN_BASE_MS;
  respawnMaxMs = EMBED_RESPAWN_MAX_MS;
  /** Told when workers die and come back (logging, metrics). */
  listener: EmbedderHealthListener = {};

  private constructor(info: EmbedderInfo, workers: Worker[], tokenizer: PreTrainedTokenizer, data: EmbedWorkerData) {
    this.info = info;
    this.tokenizer = tokenizer;
    this.data = data;
    this.slots = workers.map((worker) => ({ worker, pending: new Map(), queuedTokens: 0, attempts: 0, respawnTimer: null }));
    this.slots.forEach((slot, i) => this.attach(slot, i));
  }

  /** Wires a running worker's replies and its death into `slot`. */
  private attach(slot: WorkerSlot, index: number): void {
    const worker = slot.worker;
    if (!worker) return;
    worker.on('message', (msg: EmbedWorkerReply) => {
      if (msg.type === 'ready') return;
      const p = slot.pending.get(msg.id);
      if (!p) return;
      slot.pending.delete(msg.id);
      if (msg.type === 'vectors') p.resolve(msg.vectors);
      else p.reject(new Error(`embedding failed: ${msg.message}`));
    });
    let dead = false;
    const onDeath = (err: Error) => {
      if (dead || slot.worker !== worker) return;
      dead = true;
      slot.worker = null;
      void worker.terminate().catch(() => {});
      this.rejectPending(slot, new EmbedderUnavailableError(`embedding worker ${index} died: ${err.message}`, { cause: err }));
      if (!this.closing) this.scheduleRespawn(slot, index, err);
    };
    worker.on('error', onDeath);
    worker.on('exit', (code) => onDeath(new Error(`exited with code ${code}`)));
  }

  private rejectPending(slot: WorkerSlot, err: Error): void {
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    slot.queuedTokens = 0;
    for (const p of pending) p.reject(err);
  }

  private scheduleRespawn(slot: WorkerSlot, index: number, cause: Error): void {
    const delay = respawnDelayMs(slot.attempts, this.respawnBaseMs, this.respawnMaxMs);
    this.listener.onWorkerDown?.(index, cause, delay);
    slot.respawnTimer = setTimeout(() => {
      slot.respawnTimer = null;
      void this.respawn(slot, index);
    }, delay);
    slot.respawnTimer.unref();
  }

  /** Starts a fresh worker for `slot`; on failure, schedules the next attempt with a longer delay. */
  private async respawn(slot: WorkerSlot, index: number): Promise<void> {
    if (this.closing) return;
    const worker = startWorker(new URL('./embed-worker.ts', import.meta.url), this.data);
    try {
      await initWorker(worker);
    } catch (err) {
      await worker.terminate().catch(() => {});
      slot.attempts++;
      if (!this.closing) this.scheduleRespawn(slot, index, err as Error);
      return;
    }
    if (this.closing) {
      await worker.terminate().catch(() => {});
      return;
    }
    slot.attempts = 0;
    slot.worker = worker;
    this.attach(slot, index);
    this.listener.onWorkerUp?.(index);
  }

  /** Embedding workers (see embedWorkerLayout), running or respawning. */
  get workerCount(): number {
    return this.slots.length;
  }

  /** Workers running now; 0 means `embed` fails with EmbedderUnavailableError until one is back. */
  get liveWorkers(): number {
    return this.slots.filter((s) => s.worker !== null).length;
  }

  /**
   * Test hook: terminates worker `index` as a crash would (its pending batches fail with
   * EmbedderUnavailableError, a respawn is scheduled). Resolves once it has exited.
   */
  async crashWorkerForTest(index: number): Promise<void> {
    const worker = this.slots[index]?.worker;
    if (!worker) return;
    await stopWorker(worker, 1);
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
        data,
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

  /**
   * One vector per text, same order.
   * @throws EmbedderUnavailableError when no worker is running (crashed and respawning, or closed),
   * or when the worker holding a batch dies before answering.
   */
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

  /** Sends one batch to the running worker with the least queued work; each worker runs its batches in order. */
  private request(texts: string[], paddedTokens: number): Promise<Float32Array> {
    if (this.closing) return Promise.reject(new EmbedderUnavailableError('the embedder is closed'));
    const live = this.slots.filter((s) => s.worker !== null);
    if (live.length === 0) return Promise.reject(new EmbedderUnavailableError('no embedding worker is running (restarting)'));
    const slot = live.reduce((a, b) => (b.queuedTokens < a.queuedTokens ? b : a));
    const worker = slot.worker!;
    const id = this.nextId++;
    slot.queuedTokens += paddedTokens;
    return new Promise<Float32Array>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      worker.postMessage({ type: 'embed', id, texts } satisfies EmbedWorkerRequest);
    }).finally(() => {
      slot.queuedTokens = Math.max(0, slot.queuedTokens - paddedTokens);
    });
  }

  /** Stops respawning, rejects every pending request (EmbedderUnavailableError) and ends the workers. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new EmbedderUnavailableError('the embedder was closed');
    const workers: Worker[] = [];
    for (const slot of this.slots) {
      if (slot.respawnTimer) clearTimeout(slot.respawnTimer);
      slot.respawnTimer = null;
      if (slot.worker) workers.push(slot.worker);
      slot.worker = null;
      this.rejectPending(slot, closed);
    }
    await Promise.all(workers.map((w) => stopWorker(w, 0)));
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
  if (config.embed.server) return loadServerEmbedder(config.embed.server, config.embed.maxTokens);
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

/** `MNEME_EMBED_MODEL=openai:…`: probes the embedding server (imported lazily: no cycle at load). */
async function loadServerEmbedder(server: NonNullable<Config['embed']['server']>, maxTokens: number | undefined): Promise<EmbedderLoad> {
  const { OpenAIEmbedder, openAIEmbedderOptions } = await import('./embedder-openai.ts');
  try {
    return { embedder: await OpenAIEmbedder.load(openAIEmbedderOptions(server, maxTokens)), warning: null };
  } catch (err) {
    return {
      embedder: null,
      warning: `embedding server unavailable: ${(err as Error).message}. Continuing with BM25 only; re-run ingest once the server answers to embed what is missing.`,
    };
  }
}
