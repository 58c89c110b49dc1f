/**
 * Keeps an in-memory HNSW index in step with the store by applying the change feed: only the rows
 * after the last applied sequence are read, so the cost of a sync is proportional to the changes,
 * never to the corpus. Work is done in time slices of at most `sliceMs`, yielding to the event loop
 * between slices, so a server keeps answering (from the state already applied) while a large ingest
 * is being applied. A feed with a gap (truncated past our position) falls back to one full
 * reconcile, itself sliced, logged once.
 */
import type { CorpusChange } from './store/corpus.ts';
import type { Store } from './store/index.ts';
import type { IndexGeneration } from './store/corpus.ts';
import { effectiveEfSearch } from './index-store.ts';
import type { TunableVectorIndex } from './vector-index.ts';

/** How often a running server looks for new changes, in ms (one tiny read of the feed head). */
export const FEED_POLL_INTERVAL_MS = 250;
/** Longest stretch of synchronous index work between two yields to the event loop, in ms. */
export const FEED_SLICE_MS = 8;
/**
 * While requests are being answered (`busy()`), each slice is followed by this much rest, in ms:
 * the index work takes at most half of the event loop, instead of every moment the requests leave
 * free (a 260k-vector catch-up otherwise doubled chat latency while it ran).
 */
export const FEED_BUSY_REST_MS = 8;
/** Feed rows read per query. */
export const FEED_READ_BATCH = 512;
/** How often a quiet server re-reads the active generation (a recalibrated ef_search), in ms. */
export const GENERATION_CHECK_INTERVAL_MS = 5_000;

export interface SyncLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface ChunkChangeListener {
  /** A chunk became part of (`added`) or left a collection; called in feed order. */
  (op: 'added' | 'removed', chunkId: number, collection: string | null): void;
}

export interface IndexSyncerOptions {
  store: Store;
  /** The index to maintain; null: only chunk changes are reported (BM25-only server). */
  index: { meta: IndexGeneration; hnsw: TunableVectorIndex } | null;
  /** Feed position the index already reflects. */
  appliedSeq: number;
  sliceMs?: number;
  pollIntervalMs?: number;
  logger?: SyncLogger | undefined;
  onChunkChange?: ChunkChangeListener | undefined;
  /** Called after a full reconcile: chunk-change history was skipped, derived caches must start over. */
  onReset?: (() => void) | undefined;
  /** Called when another generation became active (the loaded index must no longer be used). */
  onGenerationChange?: ((active: IndexGeneration | null) => void) | undefined;
  /** ef_search forced by configuration; null/absent: the index follows its generation's calibrated ef. */
  efSearchOverride?: number | null | undefined;
  /** True while requests are in flight: slices are then followed by FEED_BUSY_REST_MS of rest. Default: never busy. */
  busy?: (() => boolean) | undefined;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const rest = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class IndexSyncer {
  private readonly store: Store;
  private index: { meta: IndexGeneration; hnsw: TunableVectorIndex } | null;
  private applied: number;
  private head: number;
  private readonly sliceMs: number;
  private readonly pollIntervalMs: number;
  private readonly logger: SyncLogger | undefined;
  private readonly onChunkChange: ChunkChangeListener | undefined;
  private readonly onGenerationChange: ((active: IndexGeneration | null) => void) | undefined;
  private readonly onReset: (() => void) | undefined;
  private readonly busy: () => boolean;
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private fullReconciles = 0;
  private sliceStart = 0;
  private readonly efSearchOverride: number | null;
  private lastGenerationCheck = Number.NEGATIVE_INFINITY;

  constructor(opts: IndexSyncerOptions) {
    this.store = opts.store;
    this.index = opts.index;
    this.applied = opts.appliedSeq;
    this.head = opts.appliedSeq;
    this.sliceMs = opts.sliceMs ?? FEED_SLICE_MS;
    this.pollIntervalMs = opts.pollIntervalMs ?? FEED_POLL_INTERVAL_MS;
    this.logger = opts.logger;
    this.onChunkChange = opts.onChunkChange;
    this.onGenerationChange = opts.onGenerationChange;
    this.onReset = opts.onReset;
    this.busy = opts.busy ?? (() => false);
    this.efSearchOverride = opts.efSearchOverride ?? null;
  }

  /** Feed position applied so far. */
  get appliedSeq(): number {
    return this.applied;
  }

  /** Changes known to exist but not applied yet (as of the last look at the feed head). */
  lag(): number {
    return Math.max(0, this.head - this.applied);
  }

  /** Full reconciles done because the feed had a gap. */
  get fullReconcileCount(): number {
    return this.fullReconciles;
  }

  /** Polls the feed every pollIntervalMs in the background (the timer does not keep the process alive). */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.poke(), this.pollIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Starts applying whatever is new (no-op if a run is in progress: it picks the news up too).
   * Never throws; failures are logged and retried at the next poll.
   */
  poke(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.applyPending();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.logger?.warn('applying corpus changes failed; retrying at the next poll', { error: (err as Error).message });
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  /** Applies everything up to the current head; resolves when done. @throws on store failures. */
  async catchUp(): Promise<void> {
    if (this.running) await this.running;
    await this.applyPending();
  }

  private async applyPending(): Promise<void> {
    const bounds = await this.store.corpus.feedBounds();
    this.head = bounds.head;
    if (bounds.head <= this.applied || this.stopped) {
      if (!this.stopped && performance.now() - this.lastGenerationCheck >= GENERATION_CHECK_INTERVAL_MS) await this.checkGeneration();
      return;
    }
    await this.checkGeneration();
    const gap = bounds.first === null ? bounds.head > this.applied : bounds.first > this.applied + 1;
    if (gap) {
      await this.fullReconcile(bounds.head);
      return;
    }
    this.sliceStart = performance.now();
    while (!this.stopped) {
      const changes = await this.store.corpus.changesSince(this.applied, FEED_READ_BATCH);
      if (changes.length === 0) break;
      await this.applyBatch(changes);
    }
  }

  private async checkGeneration(): Promise<void> {
    if (!this.index) return;
    this.lastGenerationCheck = performance.now();
    const active = await this.store.corpus.activeGeneration();
    if (active && active.generation === this.index.meta.generation && active.calibration?.ef !== this.index.meta.calibration?.ef) {
      // Recalibrated (end of a large ingest, `mneme reindex`): follow it unless the ef is forced.
      this.index = { ...this.index, meta: active };
      this.index.hnsw.setEfSearch(effectiveEfSearch(active, this.efSearchOverride));
      this.logger?.info('index ef_search recalibrated', { generation: active.generation, ef_search: this.index.hnsw.efSearch, recall: active.calibration?.recall });
    }
    if (active?.generation !== this.index.meta.generation) {
      // Another model's index became active (`mneme reindex --model`): applying its deletions would
      // empty this one, and queries cannot be embedded with the new model without loading it.
      this.index = null;
      this.onGenerationChange?.(active);
    }
  }

  private async applyBatch(changes: CorpusChange[]): Promise<void> {
    const index = this.index;
    const modelId = index?.meta.modelId;
    // A chunk's text never changes (a new version is a new chunk id), so a label already present
    // holds the right vector: only the others are fetched.
    const wanted = modelId && index ? changes.filter((c) => c.op === 'vector+' && c.modelId === modelId && !index.hnsw.has(c.chunkId)).map((c) => c.chunkId) : [];
    const vectors = wanted.length > 0 && modelId ? await this.store.corpus.vectorsOf(modelId, wanted) : new Map<number, Float32Array>();
    for (const ch of changes) {
      if (this.stopped) return;
      switch (ch.op) {
        case 'vector+': {
          // Absent: deleted since; its 'vector-' row follows in the feed.
          const v = ch.modelId === modelId ? vectors.get(ch.chunkId) : undefined;
          if (v && index) index.hnsw.upsert(ch.chunkId, v);
          break;
        }
        case 'vector-':
          if (index && ch.modelId === modelId) index.hnsw.remove(ch.chunkId);
          break;
        case 'chunk+':
          this.onChunkChange?.('added', ch.chunkId, ch.collection);
          break;
        case 'chunk-':
          index?.hnsw.remove(ch.chunkId);
          this.onChunkChange?.('removed', ch.chunkId, ch.collection);
          break;
      }
      this.applied = ch.seq;
      if (performance.now() - this.sliceStart >= this.sliceMs) await this.yieldSlice();
    }
  }

  /** The feed no longer reaches back to our position: compare the whole index with the store, in slices. */
  private async fullReconcile(head: number): Promise<void> {
    this.fullReconciles++;
    this.logger?.warn('the corpus change feed does not reach back to this index; reconciling in full once', {
      applied_seq: this.applied,
      feed_head: head,
    });
    const index = this.index;
    if (index) {
      const expected = await this.store.corpus.embeddedChunkIds(index.meta.modelId);
      this.sliceStart = performance.now();
      for (const label of index.hnsw.labels()) {
        if (!expected.has(label)) index.hnsw.remove(label);
        if (performance.now() - this.sliceStart >= this.sliceMs) await this.yieldSlice();
      }
      const missing: number[] = [];
      for (const id of expected) if (!index.hnsw.has(id)) missing.push(id);
      for (let i = 0; i < missing.length && !this.stopped; i += FEED_READ_BATCH) {
        const vectors = await this.store.corpus.vectorsOf(index.meta.modelId, missing.slice(i, i + FEED_READ_BATCH));
        for (const [id, v] of vectors) {
          index.hnsw.upsert(id, v);
          if (performance.now() - this.sliceStart >= this.sliceMs) await this.yieldSlice();
        }
      }
    }
    // Collection caches cannot be patched across a gap: listeners start over.
    this.onReset?.();
    this.applied = head;
  }

  /** Ends a slice: back to the event loop at once when idle, after FEED_BUSY_REST_MS while serving. */
  private async yieldSlice(): Promise<void> {
    await (this.busy() ? rest(FEED_BUSY_REST_MS) : yieldToEventLoop());
    this.sliceStart = performance.now();
  }
}
