/**
 * ChatModel backend "transformers": a transformers.js causal LM (an ONNX model directory or hub id,
 * e.g. an ONNX SmolLM2 / Qwen2.5 instruct model) run in a worker thread, streaming through a
 * transformers.js streamer.
 *
 * - The main thread holds a copy of the tokenizer (sent by the worker, so it never touches disk or
 *   transformers.js' global env, which the embedder also configures): countTokens() is synchronous
 *   and the prompt is rendered with the model's own chat template here, so an oversized prompt is
 *   refused (ContextOverflowError) before it reaches the worker.
 * - Every generate() is independent (full message list in, no state kept between calls) and the
 *   worker runs one at a time: calls are serialised here.
 * - Sampling is exactly the logged SamplingParams: greedy when temperature is 0, otherwise
 *   temperature + top-p (applied here: transformers.js 4.3 does not implement top_p) over the whole
 *   vocabulary (top_k off), seeded with `seed`.
 * - Cancelling rejects the caller at once with CancelledError and stops the worker at its next
 *   token (a SharedArrayBuffer flag); the next request waits until the worker is free.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import * as transformers from '@huggingface/transformers';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { estimateTokens } from '../tokens.ts';
import { isLocalModelRef } from '../config.ts';
import { CancelledError, ContextOverflowError, InternalError, ModelLoadError, UnavailableError, ValidationError } from '../errors.ts';
import { startWorker } from '../workers.ts';
import type { LlmLogger } from './gguf.ts';
import type { ChatMessage, ChatModel, GenerateRequest, GenerateResult, ModelState, SamplingParams } from './types.ts';

export interface LlmWorkerData {
  /** Hub id or absolute local directory. */
  modelRef: string;
  modelsDir: string;
  offline: boolean;
  threads: number;
  /** ONNX weights variant: fp32 → onnx/model.onnx, q8 → model_quantized.onnx, q4 → model_q4.onnx, ... */
  dtype: string;
}

/**
 * `exit`: the worker stops the generation in flight after its current step (no `done` is sent) and
 * exits with `code`. Terminating a worker during an onnxruntime run can abort the whole process
 * ("terminate called after throwing an instance of 'Napi::Error'"), so the worker is asked to leave
 * and terminated only if it has not within LLM_WORKER_EXIT_MS.
 */
export type LlmWorkerRequest =
  | { type: 'generate'; id: number; inputIds: number[]; sampling: SamplingParams; cancel: SharedArrayBuffer }
  | { type: 'exit'; code: number };

/** How long the generation worker asked to exit gets before it is terminated, in ms. */
export const LLM_WORKER_EXIT_MS = 10_000;

export type LlmWorkerReply =
  | { type: 'ready'; tokenizerJson: unknown; tokenizerConfig: unknown; maxPositions: number | null; eosTokenIds: number[] }
  | { type: 'load-error'; message: string }
  | { type: 'token'; id: number; text: string }
  | { type: 'done'; id: number; text: string; completionTokens: number; finishReason: 'stop' | 'length'; cancelled: boolean }
  | { type: 'error'; id: number; message: string };

/**
 * Where generated `text` must end and how much of it can be shown yet: `stopAt` is the index of the
 * earliest stop string (the answer ends there), else `safeEnd` holds back any tail that could be the
 * start of a stop string, and a trailing U+FFFD (a UTF-8 character whose bytes are not all generated).
 */
export function scanStops(text: string, stops: readonly string[]): { stopAt: number | null; safeEnd: number } {
  let stopAt: number | null = null;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i !== -1 && (stopAt === null || i < stopAt)) stopAt = i;
  }
  if (stopAt !== null) return { stopAt, safeEnd: stopAt };
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  let safeEnd = text.length - hold;
  while (safeEnd > 0 && text.charCodeAt(safeEnd - 1) === 0xfffd) safeEnd--;
  return { stopAt: null, safeEnd };
}

/**
 * Nucleus (top-p) filtering in place: keeps the most probable tokens whose probabilities sum to at
 * least `topP` (always at least one; tokens tied with the last one kept are kept too) and sets the
 * rest to -Infinity. `logits` are already divided by the temperature. O(V log V) with a native
 * typed-array sort (about a millisecond for a 49k vocabulary).
 */
export function topPFilter(logits: Float32Array, topP: number): void {
  if (topP >= 1) return;
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const probs = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp(logits[i]! - max);
    sum += probs[i]!;
  }
  const ascending = probs.slice().sort();
  let cumulative = 0;
  let cutoff = ascending[ascending.length - 1]!;
  for (let i = ascending.length - 1; i >= 0; i--) {
    cumulative += ascending[i]! / sum;
    cutoff = ascending[i]!;
    if (cumulative >= topP) break;
  }
  for (let i = 0; i < logits.length; i++) if (probs[i]! < cutoff) logits[i] = -Infinity;
}

/**
 * Breaks up special-token strings (e.g. "<|im_end|>") inside message text with a zero-width space, so
 * that text from a user or a retrieved document cannot close the turn or forge a role: transformers.js
 * renders the chat template to a string and tokenizes special tokens in it. (node-llama-cpp keeps
 * message text apart from template tokens, so the gguf backend needs no such step.)
 */
export function neutralizeSpecialTokens(text: string, specials: readonly string[]): string {
  let out = text;
  for (const sp of specials) {
    if (sp.length < 2 || !out.includes(sp)) continue;
    out = out.split(sp).join(`${sp[0]}\u200b${sp.slice(1)}`);
  }
  return out;
}

export interface TransformersLlmOptions {
  /** Hub id (e.g. "onnx-community/SmolLM2-360M-Instruct-ONNX") or absolute local model directory. */
  modelRef: string;
  /** Cache directory for hub models (config.modelsDir). */
  modelsDir: string;
  /** Never download (config.offline). */
  offline: boolean;
  /** onnxruntime intra-op threads: the real core count (config.threads). */
  threads: number;
  /** Context window in tokens (config.llm.contextTokens), capped at the model's max_position_embeddings. */
  contextTokens: number;
  /** ONNX weights variant (default "fp32"). */
  dtype?: string;
  logger?: LlmLogger;
}

interface Pending {
  resolve: (r: GenerateResult) => void;
  reject: (e: Error) => void;
  onToken: ((t: string) => void) | undefined;
  promptTokens: number;
  /** Set once the caller has been answered (cancel answers it before the worker finishes). */
  settled: boolean;
  /** Resolves when the worker is done with this request, whatever the caller saw. */
  finished: () => void;
  /** Tells the worker to stop at its next token. */
  cancel: () => void;
}

const silent: LlmLogger = { info: () => {}, warn: () => {} };

/** Constructs the tokenizer class named in tokenizer_config.json (as AutoTokenizer does) from JSON. */
function tokenizerFromJson(json: unknown, config: unknown): PreTrainedTokenizer {
  const name = ((config as { tokenizer_class?: string }).tokenizer_class ?? 'PreTrainedTokenizer').replace(/Fast$/, '');
  const cls = ((transformers as unknown as Record<string, unknown>)[name] ?? transformers.PreTrainedTokenizer) as new (j: unknown, c: unknown) => PreTrainedTokenizer;
  return new cls(json, config);
}

/**
 * A transformers.js chat model. `TransformersChatModel.start()` returns at once ('loading' until
 * `ready` settles); `await TransformersChatModel.load()` fails fast.
 */
export class TransformersChatModel implements ChatModel {
  readonly backend = 'transformers';
  readonly modelId: string;
  /** Resolves when the model can generate; rejects with ModelLoadError naming the model. */
  readonly ready: Promise<void>;
  private state: ModelState = { state: 'loading' };
  private worker: Worker;
  private tokenizer: PreTrainedTokenizer | null = null;
  /** Special-token strings of the tokenizer (added tokens marked special). */
  private specialTokens: string[] = [];
  private effectiveContext: number;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private tail: Promise<unknown> = Promise.resolve();
  private closing = false;
  private readonly logger: LlmLogger;

  private constructor(options: TransformersLlmOptions) {
    this.modelId = options.modelRef;
    this.logger = options.logger ?? silent;
    this.effectiveContext = options.contextTokens;
    const started = performance.now();
    const data: LlmWorkerData = {
      modelRef: options.modelRef,
      modelsDir: options.modelsDir,
      offline: options.offline,
      threads: options.threads,
      dtype: options.dtype ?? 'fp32',
    };
    this.worker = startWorker(new URL('./transformers-llm-worker.ts', import.meta.url), data);
    this.ready = new Promise<void>((resolve, reject) => {
      const fail = (message: string, cause?: unknown) => {
        const err = new ModelLoadError(`cannot load transformers.js model ${options.modelRef}: ${message}`, { cause });
        if (this.state.state === 'loading') this.state = { state: 'failed', error: err.message };
        this.failPending(new InternalError('the text generation worker stopped', { cause: err }));
        void this.worker.terminate();
        reject(err);
      };
      this.worker.on('message', (msg: LlmWorkerReply) => {
        if (msg.type === 'ready') {
          try {
            this.tokenizer = tokenizerFromJson(msg.tokenizerJson, msg.tokenizerConfig);
            const added = (msg.tokenizerJson as { added_tokens?: Array<{ content?: string; special?: boolean }> }).added_tokens ?? [];
            this.specialTokens = added.filter((t) => t.special && typeof t.content === 'string').map((t) => t.content!);
          } catch (cause) {
            fail(`tokenizer: ${(cause as Error).message}`, cause);
            return;
          }
          if (msg.maxPositions !== null && msg.maxPositions < options.contextTokens) {
            this.effectiveContext = msg.maxPositions;
            this.logger.warn('context window capped at the model’s max_position_embeddings', {
              model: options.modelRef,
              requested_tokens: options.contextTokens,
              max_position_embeddings: msg.maxPositions,
            });
          }
          this.state = { state: 'ready' };
          this.logger.info('chat model loaded', {
            backend: this.backend,
            model: options.modelRef,
            threads: options.threads,
            dtype: data.dtype,
            context_tokens: this.effectiveContext,
            load_ms: Math.round(performance.now() - started),
          });
          resolve();
        } else if (msg.type === 'load-error') fail(msg.message);
        else this.onReply(msg);
      });
      this.worker.on('error', (err) => {
        if (this.state.state === 'failed') return;
        if (this.state.state === 'loading') fail(err.message, err);
        else this.crashed(err);
      });
      this.worker.on('exit', (code) => {
        if (this.closing || this.state.state === 'failed') return;
        if (this.state.state === 'loading') fail(`worker exited with code ${code}`);
        else this.crashed(new Error(`text generation worker exited with code ${code}`));
      });
    });
    // The server may only poll status(); an unobserved rejection must not crash the process.
    this.ready.catch(() => {});
  }

  /**
   * Starts loading in a worker and returns immediately.
   * @throws ModelLoadError at once when `modelRef` is a local directory that does not exist or has
   * no config.json; ValidationError for invalid options.
   */
  static start(options: TransformersLlmOptions): TransformersChatModel {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new ValidationError(`transformers: threads must be a positive integer, got ${options.threads}`);
    if (!Number.isInteger(options.contextTokens) || options.contextTokens < 16) {
      throw new ValidationError(`transformers: contextTokens must be an integer >= 16, got ${options.contextTokens}`);
    }
    const ref = isLocalModelRef(options.modelRef) ? path.resolve(options.modelRef) : options.modelRef;
    if (isLocalModelRef(ref) && !fs.existsSync(path.join(ref, 'config.json'))) {
      throw new ModelLoadError(
        fs.existsSync(ref) ? `model directory ${ref} has no config.json` : `transformers.js model directory not found: ${ref}`,
      );
    }
    return new TransformersChatModel({ ...options, modelRef: ref });
  }

  /**
   * Loads the model and resolves once it can generate.
   * @throws ModelLoadError naming the model (missing directory or files, corrupt ONNX, offline and not cached).
   */
  static async load(options: TransformersLlmOptions): Promise<TransformersChatModel> {
    const m = TransformersChatModel.start(options);
    await m.ready;
    return m;
  }

  status(): ModelState {
    return this.state;
  }

  /** The effective context window in tokens. */
  get contextTokens(): number {
    return this.effectiveContext;
  }

  countTokens(text: string): number {
    return this.tokenizer ? this.tokenizer.encode(text, { add_special_tokens: false }).length : estimateTokens(text);
  }

  /** Tokens of the full rendered prompt (chat template, special tokens) for these messages. */
  countPromptTokens(messages: ChatMessage[]): number {
    return this.renderPrompt(messages).length;
  }

  private renderPrompt(messages: ChatMessage[]): number[] {
    const tok = this.requireReady();
    if (messages.length === 0) throw new ValidationError('generate: messages must not be empty');
    const ids = tok.apply_chat_template(
      messages.map((m) => ({ role: m.role, content: neutralizeSpecialTokens(m.content, this.specialTokens) })),
      { add_generation_prompt: messages[messages.length - 1]!.role !== 'assistant', tokenize: true, return_tensor: false },
    ) as unknown as number[] | { input_ids: number[] };
    // transformers.js 4.3 returns {input_ids, attention_mask} even without return_dict.
    return Array.from(Array.isArray(ids) ? ids : ids.input_ids, Number);
  }

  private requireReady(): PreTrainedTokenizer {
    if (this.closing) throw new UnavailableError('shutting_down', 'the chat model is closed');
    if (this.state.state === 'loading') throw new UnavailableError('model_loading', `the chat model ${this.modelId} is still loading`, 5);
    if (this.state.state === 'failed' || !this.tokenizer) {
      throw new UnavailableError('model_failed', `the chat model failed: ${this.state.state === 'failed' ? this.state.error : 'unknown'}`, 60);
    }
    return this.tokenizer;
  }

  generate(req: GenerateRequest): Promise<GenerateResult> {
    // The caller may be answered early (cancel); the next request still waits for the worker.
    let workerFree!: Promise<void>;
    const result = new Promise<GenerateResult>((resolve, reject) => {
      workerFree = this.tail.then(() => this.dispatch(req, resolve, reject));
    });
    this.tail = workerFree.catch(() => {});
    return result;
  }

  /** Sends one request to the worker; resolves when the worker has finished it. */
  private dispatch(req: GenerateRequest, resolve: (r: GenerateResult) => void, reject: (e: Error) => void): Promise<void> {
    let inputIds: number[];
    try {
      if (req.signal.aborted) throw new CancelledError();
      inputIds = this.renderPrompt(req.messages);
      const max = req.sampling.maxTokens;
      if (inputIds.length + max > this.effectiveContext) {
        throw new ContextOverflowError(
          `prompt (${inputIds.length} tokens) + answer budget (${max} tokens) does not fit the ${this.effectiveContext}-token context window`,
          { details: { prompt_tokens: inputIds.length, max_tokens: max, context_tokens: this.effectiveContext } },
        );
      }
    } catch (err) {
      reject(err as Error);
      return Promise.resolve();
    }
    const id = this.nextId++;
    const cancel = new SharedArrayBuffer(4);
    return new Promise<void>((finished) => {
      const stop = () => Atomics.store(new Int32Array(cancel), 0, 1);
      const p: Pending = { resolve, reject, onToken: req.onToken, promptTokens: inputIds.length, settled: false, finished, cancel: stop };
      this.pending.set(id, p);
      const onAbort = () => {
        stop();
        if (!p.settled) {
          p.settled = true;
          reject(new CancelledError('generation cancelled'));
        }
      };
      req.signal.addEventListener('abort', onAbort, { once: true });
      const done = p.finished;
      p.finished = () => {
        req.signal.removeEventListener('abort', onAbort);
        done();
      };
      this.worker.postMessage({ type: 'generate', id, inputIds, sampling: req.sampling, cancel } satisfies LlmWorkerRequest);
    });
  }

  private onReply(msg: Exclude<LlmWorkerReply, { type: 'ready' } | { type: 'load-error' }>): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'token') {
      if (p.settled || !msg.text || !p.onToken) return;
      try {
        p.onToken(msg.text);
      } catch (err) {
        // A failing consumer (e.g. a broken SSE writer) ends this generation, not the process.
        p.settled = true;
        p.cancel();
        p.reject(err as Error);
      }
      return;
    }
    this.pending.delete(msg.id);
    if (msg.type === 'done' && msg.cancelled) {
      this.logger.info('generation cancelled', { backend: this.backend, model: this.modelId, completion_tokens: msg.completionTokens });
    }
    if (!p.settled) {
      p.settled = true;
      if (msg.type === 'error') p.reject(new InternalError(`text generation failed: ${msg.message}`, { cause: new Error(msg.message) }));
      else if (msg.cancelled) p.reject(new CancelledError('generation cancelled'));
      else p.resolve({ text: msg.text, promptTokens: p.promptTokens, completionTokens: msg.completionTokens, finishReason: msg.finishReason });
    }
    p.finished();
  }

  private failPending(err: Error): void {
    for (const p of this.pending.values()) {
      if (!p.settled) {
        p.settled = true;
        p.reject(err);
      }
      p.finished();
    }
    this.pending.clear();
  }

  private crashed(err: Error): void {
    this.state = { state: 'failed', error: err.message };
    this.logger.warn('text generation worker stopped', { model: this.modelId, error: err.message });
    this.failPending(new InternalError('the text generation worker stopped', { cause: err }));
  }

  async close(): Promise<void> {
    this.closing = true;
    this.failPending(new UnavailableError('shutting_down', 'the chat model is closed'));
    await this.stopWorker(0);
  }

  /**
   * Test hook: makes the worker exit with code 1 after its current step, as a crash would look from
   * here (the request in flight fails, the model is marked failed). Resolves once it has exited.
   */
  async crashWorkerForTest(): Promise<void> {
    await this.stopWorker(1);
  }

  private async stopWorker(code: number): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    try {
      this.worker.postMessage({ type: 'exit', code } satisfies LlmWorkerRequest);
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => void this.worker.terminate().catch(() => {}), LLM_WORKER_EXIT_MS);
    // A worker that already exited never emits 'exit' again: threadId is -1 once it has.
    if (this.worker.threadId !== -1) await exited;
    clearTimeout(timer);
  }
}
