/**
 * `OpenAIEmbedder`: the Embedder of `MNEME_EMBED_MODEL=openai:BASE_URL`, calling an OpenAI-compatible
 * `POST <api base>/embeddings` (`{model, input: string[]}` → `{data: [{index, embedding}]}`), the
 * shape text-embeddings-inference, Ollama, vLLM and llama.cpp server serve. Ingestion at scale moves
 * the model to a GPU server; mneme only batches, keeps N requests in flight and checks the answers.
 *
 * - Batches: texts in input order, at most `batchItems` texts and `batchChars` characters per request
 *   (a longer single text goes alone).
 * - Concurrency: at most `concurrency` requests in flight per embedder, across every `embed` call.
 * - Retries: 429, 5xx, network errors and timeouts are retried `retries` times with exponential
 *   backoff and jitter; a Retry-After header (seconds or HTTP date) is honoured, capped at
 *   RETRY_AFTER_MAX_MS. Other statuses (400, 401, 404, 413...) fail at once.
 * - Answers: order restored by `index`; every vector must have the dimension discovered by the probe
 *   at load (a change is an error, never a silent mix); vectors are L2-normalized here (the index
 *   scores cosine).
 */
import { setMaxListeners } from 'node:events';
import type { Config, EmbedServerConfig } from './config.ts';
import {
  DEFAULT_EMBED_BATCH_CHARS,
  DEFAULT_EMBED_BATCH_ITEMS,
  DEFAULT_EMBED_CONCURRENCY,
  DEFAULT_EMBED_RETRIES,
  DEFAULT_EMBED_TIMEOUT_MS,
  openAIApiBase,
  openAIEmbedModelId,
  parseEmbedServer,
} from './config.ts';
import type { Embedder, EmbedderInfo } from './embedder-types.ts';
import { EmbedderUnavailableError } from './embedder-types.ts';
import { MnemeError, UpstreamError, UpstreamTimeoutError } from './errors.ts';
import { estimateTokens } from './tokens.ts';

/** First retry delay, in ms; doubles per attempt (with jitter: a random 50–100 % of it). */
export const EMBED_BACKOFF_BASE_MS = 250;
/** Longest computed retry delay, in ms. */
export const EMBED_BACKOFF_MAX_MS = 10_000;
/** Longest Retry-After honoured, in ms; a server asking for more gets this. */
export const RETRY_AFTER_MAX_MS = 60_000;
/** Reported `maxTokens` when MNEME_EMBED_MAX_TOKENS is unset (the server truncates, not mneme). */
export const OPENAI_EMBED_DEFAULT_MAX_TOKENS = 512;
/** Most bytes of an error body quoted in a message. */
const ERROR_BODY_QUOTE_CHARS = 300;
/** Text embedded by the probe at load (discovers the dimension). */
const PROBE_TEXT = 'mneme';

export interface OpenAIEmbedderOptions extends Omit<EmbedServerConfig, 'apiBase'> {
  /** Server URL, with or without the trailing `/v1` (see openAIApiBase). */
  baseUrl: string;
  /** Reported as info.maxTokens (default 512); the server does any truncation. */
  maxTokens?: number | undefined;
  /** Retry delays (tests shorten them), in ms. */
  backoffBaseMs?: number | undefined;
  backoffMaxMs?: number | undefined;
  retryAfterMaxMs?: number | undefined;
}

/** Settings from a Config's `embed.server` (MNEME_EMBED_*). */
export function openAIEmbedderOptions(server: EmbedServerConfig, maxTokens: number | undefined): OpenAIEmbedderOptions {
  const { apiBase, ...rest } = server;
  return { ...rest, baseUrl: apiBase, maxTokens };
}

/**
 * Loads the server embedder of an explicit `openai:URL#NAME` reference (`mneme reindex --model`), with
 * the MNEME_EMBED_* server settings of `config` (its model name only when `model` has no `#NAME`).
 * @throws ConfigError for a malformed reference; UpstreamError / UpstreamTimeoutError as `load`.
 */
export async function loadOpenAIEmbedderFor(model: string, config: Config): Promise<OpenAIEmbedder> {
  const s = config.embed.server;
  const { server } = parseEmbedServer(model, {
    MNEME_EMBED_MODEL_NAME: model.includes('#') ? undefined : s?.modelName,
    MNEME_EMBED_API_KEY: s?.apiKey,
    MNEME_EMBED_CONCURRENCY: s?.concurrency ?? DEFAULT_EMBED_CONCURRENCY,
    MNEME_EMBED_TIMEOUT_MS: s?.timeoutMs ?? DEFAULT_EMBED_TIMEOUT_MS,
    MNEME_EMBED_RETRIES: s?.retries ?? DEFAULT_EMBED_RETRIES,
    MNEME_EMBED_BATCH_ITEMS: s?.batchItems ?? DEFAULT_EMBED_BATCH_ITEMS,
    MNEME_EMBED_BATCH_CHARS: s?.batchChars ?? DEFAULT_EMBED_BATCH_CHARS,
  });
  return OpenAIEmbedder.load(openAIEmbedderOptions(server, config.embed.maxTokens));
}

/** A failure worth retrying, with the delay the server asked for (ms), if any. */
class Transient {
  constructor(
    readonly error: MnemeError,
    readonly retryAfterMs: number | null,
  ) {}
}

/** Splits texts (in order) into index ranges under both budgets. Pure. */
export function planRequestBatches(texts: readonly string[], maxItems: number, maxChars: number): number[][] {
  const batches: number[][] = [];
  let cur: number[] = [];
  let chars = 0;
  texts.forEach((t, i) => {
    if (cur.length > 0 && (cur.length >= maxItems || chars + t.length > maxChars)) {
      batches.push(cur);
      cur = [];
      chars = 0;
    }
    cur.push(i);
    chars += t.length;
  });
  if (cur.length > 0) batches.push(cur);
  return batches;
}

/** Retry-After as ms from now: delta-seconds or an HTTP date; null when absent or unparsable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | null {
  if (value === null || value.trim() === '') return null;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** Counting semaphore whose waiters give up when `signal` aborts. */
class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async acquire(signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason;
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(signal.reason);
      };
      this.waiters.push(grant);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

/** Sleeps `ms`, or rejects with the signal's reason when it aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1" style description of a fetch failure. */
function describe(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = (cause as { code?: unknown })?.code;
  const msg = cause instanceof Error ? cause.message : String(cause);
  return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
}

function l2normalize(values: number[]): Float32Array {
  const v = Float32Array.from(values);
  let sum = 0;
  for (const x of v) sum += x * x;
  const norm = Math.sqrt(sum);
  if (norm > 0) for (let i = 0; i < v.length; i++) v[i]! /= norm;
  return v;
}

export class OpenAIEmbedder implements Embedder {
  info: EmbedderInfo;
  private readonly endpoint: string;
  private readonly server: string;
  private readonly opts: OpenAIEmbedderOptions;
  private readonly slots: Slots;
  private readonly closer = new AbortController();
  private readonly inflight = new Set<Promise<unknown>>();

  /** @throws Error for a malformed base URL. Use `load` (it probes the dimension). */
  private constructor(opts: OpenAIEmbedderOptions) {
    const apiBase = openAIApiBase(opts.baseUrl);
    this.opts = opts;
    this.endpoint = `${apiBase}/embeddings`;
    this.server = `embedding server ${this.endpoint}`;
    this.slots = new Slots(Math.max(1, opts.concurrency));
    // One listener per embed call in progress (a server embeds many queries at once).
    setMaxListeners(0, this.closer.signal);
    const modelId = openAIEmbedModelId(apiBase, opts.modelName);
    this.info = { modelId, dimension: 0, maxTokens: opts.maxTokens ?? OPENAI_EMBED_DEFAULT_MAX_TOKENS, pooling: 'server', normalized: true };
  }

  /**
   * Connects to the server and discovers the dimension by embedding one string (with the retries).
   * @throws UpstreamError (unreachable, HTTP error, malformed answer) or UpstreamTimeoutError, naming the URL.
   */
  static async load(opts: OpenAIEmbedderOptions): Promise<OpenAIEmbedder> {
    let embedder: OpenAIEmbedder;
    try {
      embedder = new OpenAIEmbedder(opts);
    } catch (err) {
      throw new UpstreamError(`invalid embedding server URL ${JSON.stringify(opts.baseUrl)}: ${(err as Error).message}`, { cause: err });
    }
    const [v] = await embedder.embed([PROBE_TEXT]);
    embedder.info = { ...embedder.info, dimension: v!.length };
    return embedder;
  }

  /** An estimate (no tokenizer here): see tokens.ts. */
  countTokens(text: string): number {
    return estimateTokens(text);
  }

  /**
   * One L2-normalized vector per text, same order.
   * @throws UpstreamError (HTTP error, malformed answer, dimension change, retries exhausted),
   * UpstreamTimeoutError (the last attempt timed out), EmbedderUnavailableError (closed).
   */
  async embed(texts: string[]): Promise<Float32Array[]> {
    if (this.closer.signal.aborted) throw new EmbedderUnavailableError('the embedder is closed');
    if (texts.length === 0) return [];
    // One failed batch cancels its siblings (the call fails anyway); close() cancels every call.
    const call = new AbortController();
    const signal = call.signal;
    // One abort listener per batch waiting for a slot or backing off: many is normal, not a leak.
    setMaxListeners(0, signal);
    const onClose = () => call.abort(this.closer.signal.reason);
    this.closer.signal.addEventListener('abort', onClose, { once: true });
    const out = new Array<Float32Array>(texts.length);
    const work = Promise.all(
      planRequestBatches(texts, this.opts.batchItems, this.opts.batchChars).map(async (batch) => {
        const vectors = await this.requestWithRetries(batch.map((i) => texts[i]!), signal);
        batch.forEach((i, j) => (out[i] = vectors[j]!));
      }),
    );
    this.inflight.add(work);
    try {
      await work;
      return out;
    } catch (err) {
      call.abort(err);
      if (this.closer.signal.aborted) throw new EmbedderUnavailableError('the embedder was closed', { cause: err });
      throw err;
    } finally {
      this.inflight.delete(work);
      this.closer.signal.removeEventListener('abort', onClose);
    }
  }

  /** Holds one concurrency slot through every attempt (backing off keeps the slot: a 429 slows us down). */
  private async requestWithRetries(texts: string[], signal: AbortSignal): Promise<Float32Array[]> {
    await this.slots.acquire(signal);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.attempt(texts, signal);
        } catch (err) {
          if (!(err instanceof Transient)) throw err;
          if (attempt >= this.opts.retries) {
            const tries = attempt + 1;
            throw Object.assign(err.error, { message: `${err.error.message} (${tries} attempt${tries === 1 ? '' : 's'})` });
          }
          await sleep(this.retryDelayMs(attempt, err.retryAfterMs), signal);
        }
      }
    } finally {
      this.slots.release();
    }
  }

  /** Delay before retry `attempt` (0-based), in ms: Retry-After if given (capped), else base·2^attempt with jitter. */
  private retryDelayMs(attempt: number, retryAfterMs: number | null): number {
    if (retryAfterMs !== null) return Math.min(retryAfterMs, this.opts.retryAfterMaxMs ?? RETRY_AFTER_MAX_MS);
    const base = this.opts.backoffBaseMs ?? EMBED_BACKOFF_BASE_MS;
    const ceiling = Math.min(this.opts.backoffMaxMs ?? EMBED_BACKOFF_MAX_MS, base * 2 ** Math.min(attempt, 30));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  /** One HTTP request. @throws Transient (retry), or a MnemeError / the abort reason (don't). */
  private async attempt(texts: string[], outer: AbortSignal): Promise<Float32Array[]> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const signal = AbortSignal.any([outer, timeout]);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    const failed = (err: unknown, what: string): never => {
      if (outer.aborted) throw outer.reason;
      if (timeout.aborted) throw new Transient(new UpstreamTimeoutError(`${this.server} did not answer within ${this.opts.timeoutMs} ms`, { cause: err }), null);
      throw new Transient(new UpstreamError(`${what} ${this.server} (${describe(err)})`, { cause: err }), null);
    };
    let res: Response;
    try {
      res = await fetch(this.endpoint, { method: 'POST', headers, body: JSON.stringify({ model: this.opts.modelName, input: texts }), signal });
    } catch (err) {
      return failed(err, 'cannot reach');
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      return failed(err, 'broken answer from');
    }
    if (!res.ok) throw this.httpError(res, text);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (err) {
      throw new UpstreamError(`${this.server} answered ${res.status} with something that is not JSON: ${text.slice(0, ERROR_BODY_QUOTE_CHARS)}`, { cause: err });
    }
    return this.vectorsOf(body, texts.length);
  }

  /** Maps an HTTP error status: 429/5xx are Transient (with Retry-After), the rest final. */
  private httpError(res: Response, text: string): Transient | UpstreamError {
    let detail = text.slice(0, ERROR_BODY_QUOTE_CHARS);
    try {
      const j = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
      const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message);
      if (typeof m === 'string') detail = m.slice(0, ERROR_BODY_QUOTE_CHARS);
    } catch {
      // not JSON: quote the text
    }
    const hint = res.status === 413 || res.status === 400 ? ' (if the batch is too big for the server, lower MNEME_EMBED_BATCH_ITEMS or MNEME_EMBED_BATCH_CHARS)' : '';
    const error = new UpstreamError(`${this.server} answered HTTP ${res.status}${detail ? `: ${detail}` : ''}${hint}`, { details: { status: res.status } });
    if (res.status === 429 || res.status >= 500) return new Transient(error, parseRetryAfter(res.headers.get('retry-after')));
    return error;
  }

  /**
   * The vectors of an answer, in input order, normalized.
   * @throws UpstreamError for a malformed answer or a dimension other than the probed one.
   */
  private vectorsOf(body: unknown, expected: number): Float32Array[] {
    const data = (body as { data?: unknown })?.data;
    const bad = (why: string) => new UpstreamError(`${this.server} sent a malformed answer: ${why}`);
    if (!Array.isArray(data)) throw bad('no "data" array');
    if (data.length !== expected) throw bad(`${data.length} embeddings for ${expected} inputs`);
    const out = new Array<Float32Array | undefined>(expected);
    data.forEach((item: { index?: unknown; embedding?: unknown }, pos) => {
      const index = item?.index ?? pos;
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= expected || out[index]) throw bad(`bad or repeated index ${JSON.stringify(index)}`);
      const e = item.embedding;
      if (!Array.isArray(e) || e.length === 0 || !e.every((x) => typeof x === 'number' && Number.isFinite(x))) throw bad(`embedding ${index} is not an array of numbers`);
      const dim = this.info.dimension;
      if (dim !== 0 && e.length !== dim) {
        throw new UpstreamError(
          `${this.server} returned ${e.length}-d vectors for model ${this.opts.modelName}, but this embedder is ${dim}-d (did the server switch models?); ` +
            'refusing to mix dimensions: restart mneme, and run `mneme reindex --model …` if the model really changed',
          { details: { expected: dim, got: e.length } },
        );
      }
      out[index] = l2normalize(e as number[]);
    });
    return out as Float32Array[];
  }

  /** Aborts every request in flight and every waiting or backing-off batch; their `embed` calls reject with EmbedderUnavailableError. */
  async close(): Promise<void> {
    this.closer.abort(new EmbedderUnavailableError('the embedder was closed'));
    await Promise.allSettled([...this.inflight]);
  }
}
