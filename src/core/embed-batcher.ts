/**
 * Coalesces concurrent embedding calls into one call to the wrapped Embedder. Built for the chat
 * server, where every request embeds one short query: the embedding worker runs one request at a
 * time, so 50 concurrent questions used to be 50 model runs back to back. Here a call made while
 * another is running waits for it and then goes out together with every other waiting call, as one
 * `embed()` the wrapped embedder can batch by its token budget (one model run for many short
 * queries). A call made while nothing is running goes out at once: batching never adds latency to
 * an idle server.
 */
import type { Embedder, EmbedderInfo } from './embedder.ts';

/** Most texts sent to the wrapped embedder in one coalesced call; the rest wait for the next one. */
export const QUERY_BATCH_MAX_TEXTS = 256;

interface Waiting {
  texts: string[];
  resolve: (vectors: Float32Array[]) => void;
  reject: (err: unknown) => void;
}

export interface BatchingEmbedderOptions {
  /** Most texts per coalesced call (default {@link QUERY_BATCH_MAX_TEXTS}); a single larger call still goes out whole. */
  maxTexts?: number;
  /** Called after each coalesced call with the number of callers and texts it served (metrics). */
  onBatch?: (stats: { calls: number; texts: number }) => void;
}

export class BatchingEmbedder implements Embedder {
  private readonly waiting: Waiting[] = [];
  private running = false;
  private readonly maxTexts: number;

  constructor(
    private readonly inner: Embedder,
    private readonly options: BatchingEmbedderOptions = {},
  ) {
    this.maxTexts = options.maxTexts ?? QUERY_BATCH_MAX_TEXTS;
  }

  get info(): EmbedderInfo {
    return this.inner.info;
  }

  countTokens(text: string): number {
    return this.inner.countTokens(text);
  }

  /** One vector per text, in order. @throws whatever the wrapped embedder throws for the call this one went out with. */
  embed(texts: string[]): Promise<Float32Array[]> {
    if (texts.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.waiting.push({ texts, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.waiting.length > 0) {
        // Whole callers only, at least one, up to maxTexts texts.
        const batch: Waiting[] = [this.waiting.shift()!];
        let n = batch[0]!.texts.length;
        while (this.waiting.length > 0 && n + this.waiting[0]!.texts.length <= this.maxTexts) {
          const next = this.waiting.shift()!;
          n += next.texts.length;
          batch.push(next);
        }
        let vectors: Float32Array[];
        try {
          vectors = await this.inner.embed(batch.flatMap((w) => w.texts));
        } catch (err) {
          for (const w of batch) w.reject(err);
          continue;
        }
        let at = 0;
        for (const w of batch) {
          w.resolve(vectors.slice(at, at + w.texts.length));
          at += w.texts.length;
        }
        this.options.onBatch?.({ calls: batch.length, texts: n });
      }
    } finally {
      this.running = false;
    }
  }
}
