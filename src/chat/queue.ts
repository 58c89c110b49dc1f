/**
 * The generation queue: a bounded FIFO in front of the chat model. A local model can run one
 * generation at a time (two would halve each one's speed on this hardware and double memory), so
 * requests wait here, up to `maxQueued`, and beyond that are refused at once with a 503 and a
 * Retry-After estimate instead of piling up.
 */
import { z } from 'zod';
import { CancelledError, UnavailableError, ValidationError } from '../core/errors.ts';
import type { ChatModel, GenerateRequest, GenerateResult } from '../core/llm/types.ts';

/** Retry-After bounds for queue_full / model_loading, in seconds. */
export const RETRY_AFTER_MIN_SECONDS = 1;
export const RETRY_AFTER_MAX_SECONDS = 120;
/** Weight of the newest generation in the running mean duration (exponential moving average). */
const DURATION_EMA_ALPHA = 0.2;
/** Generation time assumed before any generation was measured, in ms. */
export const DEFAULT_GENERATION_ESTIMATE_MS = 1000;

/**
 * Retry-After in seconds for `ahead` requests (waiting + running) served `concurrency` at a time,
 * each taking `expectedMs`: ceil(ahead / concurrency × expectedMs), clamped to
 * RETRY_AFTER_MIN_SECONDS..RETRY_AFTER_MAX_SECONDS. Pure.
 */
export function retryAfterFor(expectedMs: number, ahead: number, concurrency: number): number {
  const s = Math.ceil(((ahead / Math.max(1, concurrency)) * expectedMs) / 1000);
  return Math.min(RETRY_AFTER_MAX_SECONDS, Math.max(RETRY_AFTER_MIN_SECONDS, s));
}

export interface GenerationQueueOptions {
  model: ChatModel;
  /** Most requests waiting (not counting the ones running). */
  maxQueued: number;
  /** Generations running at once (default 1). */
  concurrency?: number;
}

export interface RunOptions {
  /** Called when the request leaves the queue and reaches the model (to time the wait). */
  onStart?: () => void;
}

const optionsSchema = z.object({
  maxQueued: z.number().int().min(0),
  concurrency: z.number().int().min(1).default(1),
});

interface Waiter {
  req: GenerateRequest;
  opts: RunOptions;
  resolve: (r: GenerateResult) => void;
  reject: (e: unknown) => void;
  onAbort: () => void;
}

export class GenerationQueue {
  private readonly model: ChatModel;
  private readonly maxQueued: number;
  private readonly concurrency: number;
  private readonly waiting: Waiter[] = [];
  private running = 0;
  private closed = false;
  /** Aborted by close({ cancelInFlight: true }); every in-flight request listens to it. */
  private readonly shutdown = new AbortController();
  private readonly idleWaiters: (() => void)[] = [];
  private meanDurationMs: number | null = null;
  /** Start times (Date.now()) of the generations running now. */
  private readonly startedAt = new Set<{ t: number }>();

  /** @throws ValidationError for maxQueued < 0 or concurrency < 1. */
  constructor(opts: GenerationQueueOptions) {
    const parsed = optionsSchema.safeParse({ maxQueued: opts.maxQueued, concurrency: opts.concurrency });
    if (!parsed.success) throw new ValidationError(`invalid generation queue options: ${parsed.error.issues[0]?.message ?? 'invalid'}`, { cause: parsed.error });
    this.model = opts.model;
    this.maxQueued = parsed.data.maxQueued;
    this.concurrency = parsed.data.concurrency;
  }

  /** Requests waiting for the model. */
  depth(): number {
    return this.waiting.length;
  }

  /** Requests being generated now. */
  active(): number {
    return this.running;
  }

  /**
   * Runs `req` on the model when its turn comes (FIFO).
   * @throws UnavailableError 'queue_full' (immediately, with retryAfterSeconds), 'model_loading',
   * 'model_failed' (with the model's error text) or 'shutting_down'; CancelledError when `req.signal`
   * aborts (a waiting request is removed without reaching the model); whatever the model throws.
   */
  run(req: GenerateRequest, opts: RunOptions = {}): Promise<GenerateResult> {
    if (this.closed) return Promise.reject(new UnavailableError('shutting_down', 'the server is shutting down'));
    const unavailable = this.modelUnavailable();
    if (unavailable) return Promise.reject(unavailable);
    if (req.signal.aborted) return Promise.reject(new CancelledError('request cancelled before generation'));
    if (this.running < this.concurrency && this.waiting.length === 0) return this.start(req, opts);
    if (this.waiting.length >= this.maxQueued) {
      return Promise.reject(
        new UnavailableError('queue_full', `generation queue is full (${this.waiting.length} waiting); retry later`, this.retryAfterSeconds(), {
          details: { queued: this.waiting.length, active: this.running },
        }),
      );
    }
    return new Promise<GenerateResult>((resolve, reject) => {
      const waiter: Waiter = {
        req,
        opts,
        resolve,
        reject,
        onAbort: () => {
          const i = this.waiting.indexOf(waiter);
          if (i !== -1) this.waiting.splice(i, 1);
          reject(new CancelledError('request cancelled while waiting for the model'));
        },
      };
      req.signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /**
   * Stops accepting requests (UnavailableError 'shutting_down'). Waiting requests are refused the same
   * way at once; in-flight ones are awaited, or cancelled first when `cancelInFlight` is set.
   * Resolves when nothing is running. Does not close the model (its owner does).
   */
  async close(opts: { cancelInFlight?: boolean } = {}): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) {
      w.req.signal.removeEventListener('abort', w.onAbort);
      w.reject(new UnavailableError('shutting_down', 'the server is shutting down'));
    }
    if (opts.cancelInFlight) this.shutdown.abort();
    if (this.running === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private modelUnavailable(): UnavailableError | null {
    const s = this.model.status();
    if (s.state === 'loading') return new UnavailableError('model_loading', `chat model ${this.model.modelId} is still loading`, this.retryAfterSeconds());
    if (s.state === 'failed') return new UnavailableError('model_failed', `chat model ${this.model.modelId} failed to load: ${s.error}`, RETRY_AFTER_MAX_SECONDS);
    return null;
  }

  /**
   * Seconds until a slot is likely free: the expected generation time × (requests ahead /
   * concurrency), clamped to RETRY_AFTER_MIN_SECONDS..RETRY_AFTER_MAX_SECONDS. The expected time is
   * the exponential moving average of finished generations, but never less than the age of the
   * oldest generation still running (before the first one finishes, that is all there is to go on;
   * DEFAULT_GENERATION_ESTIMATE_MS when nothing runs either).
   */
  retryAfterSeconds(now = Date.now()): number {
    let oldestRunningMs = 0;
    for (const s of this.startedAt) oldestRunningMs = Math.max(oldestRunningMs, now - s.t);
    const expected = Math.max(this.meanDurationMs ?? DEFAULT_GENERATION_ESTIMATE_MS, oldestRunningMs);
    return retryAfterFor(expected, this.waiting.length + this.running, this.concurrency);
  }

  private async start(req: GenerateRequest, opts: RunOptions): Promise<GenerateResult> {
    this.running++;
    const started = Date.now();
    const mark = { t: started };
    this.startedAt.add(mark);
    // One signal for "client went away" and "server shutting down"; the model only sees this one.
    const signal = AbortSignal.any([req.signal, this.shutdown.signal]);
    try {
      opts.onStart?.();
      const result = await this.model.generate({ ...req, signal });
      const ms = Date.now() - started;
      this.meanDurationMs = this.meanDurationMs === null ? ms : this.meanDurationMs + DURATION_EMA_ALPHA * (ms - this.meanDurationMs);
      return result;
    } finally {
      this.startedAt.delete(mark);
      this.running--;
      this.next();
    }
  }

  /** Starts waiting requests while there is capacity; wakes close() when idle. */
  private next(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const w = this.waiting.shift() as Waiter;
      w.req.signal.removeEventListener('abort', w.onAbort);
      // The model may have failed (or started reloading) while this request waited.
      const unavailable = this.modelUnavailable();
      if (unavailable) {
        w.reject(unavailable);
        continue;
      }
      this.start(w.req, w.opts).then(w.resolve, w.reject);
    }
    if (this.running === 0 && this.waiting.length === 0) {
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }
}
