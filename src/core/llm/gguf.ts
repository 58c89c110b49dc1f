/**
 * ChatModel backend "gguf": a local GGUF model run in-process by node-llama-cpp (an optional
 * dependency, loaded with a dynamic import so mneme installs and runs without it).
 *
 * - Threads: always the configured core count, for both the Llama instance (`maxThreads`) and the
 *   context (`threads`). node-llama-cpp's default of 4 threads on a 2-core machine ran 100x slower.
 * - Prompt: the model's own chat template from the GGUF (`tokenizer.chat_template`, resolved by
 *   node-llama-cpp to a specialised wrapper such as ChatML, or its Jinja engine).
 * - Every `generate()` is independent: the full message list is sent each time and no chat session
 *   is kept. The one context sequence is reused only as a KV cache, so a prompt sharing a prefix with
 *   the previous one (same system prompt) skips re-evaluating that prefix; it never changes the output.
 * - Sampling is exactly the logged SamplingParams: temperature, top-p and seed; node-llama-cpp's extra
 *   defaults (top-k 40, repeat penalty) are switched off so the log tells the whole story.
 * - The prompt plus `maxTokens` must fit the context window, or generate() throws
 *   ContextOverflowError with the numbers (the caller drops retrieved chunks before that happens).
 */
import fs from 'node:fs';
import path from 'node:path';
import type {
  ChatHistoryItem,
  Llama,
  LlamaChat,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel,
} from 'node-llama-cpp';
import { estimateTokens } from '../tokens.ts';
import { CancelledError, ConfigError, ContextOverflowError, InternalError, MnemeError, ModelLoadError, UnavailableError, ValidationError } from '../errors.ts';
import type { ChatMessage, ChatModel, GenerateRequest, GenerateResult, ModelState } from './types.ts';

/** First four bytes of every GGUF file. */
const GGUF_MAGIC = 'GGUF';

/** Minimal operational log (structurally compatible with src/chat/log.ts `Logger`). */
export interface LlmLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

const silent: LlmLogger = { info: () => {}, warn: () => {} };

type NodeLlamaCpp = typeof import('node-llama-cpp');

export interface GgufModelOptions {
  /** Path to the .gguf file (made absolute). */
  modelPath: string;
  /** CPU threads for evaluation: the machine's real core count (config.threads). */
  threads: number;
  /** Context window in tokens (config.llm.contextTokens); capped at the model's trained context. */
  contextTokens: number;
  logger?: LlmLogger;
  /** How node-llama-cpp is imported (tests replace it to simulate the package being absent). */
  importNodeLlamaCpp?: () => Promise<NodeLlamaCpp>;
}

/** One Llama instance (the native backend) per thread count, shared by every model in the process. */
const llamas = new Map<number, Promise<Llama>>();

async function importNodeLlamaCppDefault(): Promise<NodeLlamaCpp> {
  return import('node-llama-cpp');
}

/** node-llama-cpp with a clear ConfigError when it is not installed. */
async function loadBindings(importer: () => Promise<NodeLlamaCpp>): Promise<NodeLlamaCpp> {
  try {
    return await importer();
  } catch (cause) {
    throw new ConfigError('install node-llama-cpp to use gguf: models (npm install -E node-llama-cpp@3.21.1)', { cause });
  }
}

function getSharedLlama(lib: NodeLlamaCpp, threads: number): Promise<Llama> {
  let p = llamas.get(threads);
  if (!p) {
    p = lib.getLlama({
      gpu: false,
      // Never compile or download at run time: use the prebuilt binary that came with the package.
      build: 'never',
      skipDownload: true,
      maxThreads: threads,
      logLevel: lib.LlamaLogLevel.error,
      progressLogs: false,
    });
    // A failed native load must not poison later attempts (e.g. after installing the binary).
    p.catch(() => llamas.delete(threads));
    llamas.set(threads, p);
  }
  return p;
}

/**
 * Checks that `file` exists and starts like a GGUF file, and that the tensor data its header
 * declares lies inside the file (a truncated download would otherwise reach native code).
 * @throws ModelLoadError naming the path.
 */
async function checkGgufFile(lib: NodeLlamaCpp, file: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (cause) {
    throw new ModelLoadError(`GGUF model file not found: ${file}`, { cause });
  }
  if (!stat.isFile()) throw new ModelLoadError(`GGUF model path is not a file: ${file}`);
  const head = Buffer.alloc(4);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.toString('latin1') !== GGUF_MAGIC) {
    throw new ModelLoadError(`not a GGUF file (bad magic bytes): ${file}`);
  }
  let info: Awaited<ReturnType<NodeLlamaCpp['readGgufFileInfo']>>;
  try {
    info = await lib.readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
  } catch (cause) {
    throw new ModelLoadError(`corrupt GGUF file ${file}: ${(cause as Error).message}`, { cause });
  }
  // Split models (name-00001-of-0000N.gguf) keep later tensors in other files: check this file's only.
  const dataEnd = Math.max(
    0,
    ...(info.tensorInfo ?? [])
      .filter((t) => (t.filePart ?? 1) <= 1)
      .map((t) => Number(t.fileOffset) + estimateTensorBytes(t.dimensions, Number(t.ggmlType))),
  );
  if (dataEnd > stat.size) {
    throw new ModelLoadError(`truncated GGUF file ${file}: tensor data needs ${dataEnd} bytes, the file has ${stat.size}`);
  }
}

/** Bytes per block and values per block of the common ggml types (others: not checked, 0 bytes). */
const GGML_BLOCKS: Record<number, [values: number, bytes: number]> = {
  0: [1, 4], // F32
  1: [1, 2], // F16
  2: [32, 18], // Q4_0
  3: [32, 20], // Q4_1
  6: [32, 22], // Q5_0
  7: [32, 24], // Q5_1
  8: [32, 34], // Q8_0
  10: [256, 84], // Q2_K
  11: [256, 110], // Q3_K
  12: [256, 144], // Q4_K
  13: [256, 176], // Q5_K
  14: [256, 210], // Q6_K
  30: [1, 2], // BF16
};

function estimateTensorBytes(dims: readonly (number | bigint)[], type: number): number {
  const block = GGML_BLOCKS[type];
  if (!block) return 0;
  const n = dims.reduce<number>((a, d) => a * Number(d), 1);
  return Math.ceil(n / block[0]) * block[1];
}

/** Maps mneme's messages to node-llama-cpp's chat history, ending with the (empty) model turn to generate. */
export function toChatHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  if (messages.length === 0) throw new ValidationError('generate: messages must not be empty');
  const history: ChatHistoryItem[] = messages.map((m) =>
    m.role === 'system' ? { type: 'system', text: m.content } : m.role === 'user' ? { type: 'user', text: m.content } : { type: 'model', response: [m.content] },
  );
  // A trailing assistant message is a prefill the model continues; otherwise open a new model turn.
  if (history[history.length - 1]!.type !== 'model') history.push({ type: 'model', response: [] });
  return history;
}

interface Loaded {
  lib: NodeLlamaCpp;
  model: LlamaModel;
  context: LlamaContext;
  sequence: LlamaContextSequence;
  chat: LlamaChat;
  contextTokens: number;
}

/**
 * A GGUF chat model. Construct with `GgufChatModel.start()` (returns at once, `status()` is
 * 'loading' until `ready` settles) or `await GgufChatModel.load()` (fails fast).
 */
export class GgufChatModel implements ChatModel {
  readonly backend = 'gguf';
  readonly modelId: string;
  /** Resolves when the model is ready; rejects with ModelLoadError (or ConfigError if node-llama-cpp is missing). */
  readonly ready: Promise<void>;
  private state: ModelState = { state: 'loading' };
  private loaded: Loaded | null = null;
  /** Serialises generate() calls: one context sequence cannot run two generations at once. */
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly logger: LlmLogger;

  private constructor(private readonly options: GgufModelOptions) {
    this.modelId = path.resolve(options.modelPath);
    this.logger = options.logger ?? silent;
    this.ready = this.init();
    // The server may only poll status(); an unobserved rejection must not crash the process.
    this.ready.catch(() => {});
  }

  /**
   * Starts loading in the background and returns immediately.
   * @throws ModelLoadError at once when the file does not exist; ValidationError for invalid options
   * (threads < 1, context < 16 tokens).
   */
  static start(options: GgufModelOptions): GgufChatModel {
    const file = path.resolve(options.modelPath);
    // A missing file fails at once (start-up), not later as a 'failed' status.
    if (!fs.existsSync(file)) throw new ModelLoadError(`GGUF model file not found: ${file}`);
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new ValidationError(`gguf: threads must be a positive integer, got ${options.threads}`);
    if (!Number.isInteger(options.contextTokens) || options.contextTokens < 16) {
      throw new ValidationError(`gguf: contextTokens must be an integer >= 16, got ${options.contextTokens}`);
    }
    return new GgufChatModel(options);
  }

  /**
   * Loads the model and resolves once it can generate.
   * @throws ModelLoadError naming the path (missing, not GGUF, truncated, rejected by llama.cpp);
   * ConfigError when node-llama-cpp is not installed.
   */
  static async load(options: GgufModelOptions): Promise<GgufChatModel> {
    const m = GgufChatModel.start(options);
    await m.ready;
    return m;
  }

  private async init(): Promise<void> {
    const started = performance.now();
    const file = this.modelId;
    try {
      const lib = await loadBindings(this.options.importNodeLlamaCpp ?? importNodeLlamaCppDefault);
      await checkGgufFile(lib, file);
      let llama: Llama;
      try {
        llama = await getSharedLlama(lib, this.options.threads);
      } catch (cause) {
        throw new ModelLoadError(`cannot start llama.cpp for ${file}: ${(cause as Error).message}`, { cause });
      }
      let model: LlamaModel;
      try {
        model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      } catch (cause) {
        throw new ModelLoadError(`cannot load GGUF model ${file}: ${(cause as Error).message}`, { cause });
      }
      const trained = model.trainContextSize;
      const contextTokens = trained > 0 ? Math.min(this.options.contextTokens, trained) : this.options.contextTokens;
      if (contextTokens < this.options.contextTokens) {
        this.logger.warn('context window capped at the model’s trained length', {
          model: file,
          requested_tokens: this.options.contextTokens,
          trained_tokens: trained,
        });
      }
      let context: LlamaContext;
      try {
        context = await model.createContext({
          contextSize: contextTokens,
          threads: { ideal: this.options.threads, min: this.options.threads },
          sequences: 1,
        });
      } catch (cause) {
        await model.dispose();
        throw new ModelLoadError(`cannot create a ${contextTokens}-token context for ${file}: ${(cause as Error).message}`, { cause });
      }
      const sequence = context.getSequence();
      const chat = new lib.LlamaChat({ contextSequence: sequence, chatWrapper: lib.resolveChatWrapper(model) });
      if (this.closed) {
        chat.dispose();
        await context.dispose();
        await model.dispose();
        throw new ModelLoadError(`model ${file} was closed while loading`);
      }
      this.loaded = { lib, model, context, sequence, chat, contextTokens };
      this.state = { state: 'ready' };
      this.logger.info('chat model loaded', {
        backend: this.backend,
        model: file,
        threads: this.options.threads,
        context_tokens: contextTokens,
        trained_context_tokens: trained,
        chat_template: chat.chatWrapper.wrapperName,
        load_ms: Math.round(performance.now() - started),
      });
    } catch (err) {
      const error = err instanceof ModelLoadError || err instanceof ConfigError ? err : new ModelLoadError(`cannot load GGUF model ${file}: ${(err as Error).message}`, { cause: err });
      this.state = { state: 'failed', error: error.message };
      throw error;
    }
  }

  status(): ModelState {
    return this.state;
  }

  /** The effective context window in tokens (known once loaded; the configured size before). */
  get contextTokens(): number {
    return this.loaded?.contextTokens ?? this.options.contextTokens;
  }

  countTokens(text: string): number {
    return this.loaded ? this.loaded.model.tokenize(text).length : estimateTokens(text);
  }

  /** Tokens of the full rendered prompt (chat template, special tokens) for these messages. */
  countPromptTokens(messages: ChatMessage[]): number {
    const l = this.requireLoaded();
    return l.chat.chatWrapper.generateContextState({ chatHistory: toChatHistory(messages) }).contextText.tokenize(l.model.tokenizer).length;
  }

  generate(req: GenerateRequest): Promise<GenerateResult> {
    const run = this.tail.then(() => this.generateNow(req));
    this.tail = run.catch(() => {});
    return run;
  }

  private requireLoaded(): Loaded {
    if (this.closed) throw new UnavailableError('shutting_down', 'the chat model is closed');
    if (this.state.state === 'loading') throw new UnavailableError('model_loading', `the chat model ${this.modelId} is still loading`, 5);
    if (this.state.state === 'failed' || !this.loaded) throw new UnavailableError('model_failed', `the chat model failed to load: ${this.state.state === 'failed' ? this.state.error : 'unknown'}`, 60);
    return this.loaded;
  }

  private async generateNow(req: GenerateRequest): Promise<GenerateResult> {
    const l = this.requireLoaded();
    const { sampling, signal } = req;
    if (signal.aborted) throw new CancelledError();
    const history = toChatHistory(req.messages);
    const promptTokens = l.chat.chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(l.model.tokenizer).length;
    // LlamaChat shifts (silently drops) context when it is 1 token short of full: keep that token free.
    if (promptTokens + sampling.maxTokens + 1 > l.contextTokens) {
      throw new ContextOverflowError(
        `prompt (${promptTokens} tokens) + answer budget (${sampling.maxTokens} tokens) does not fit the ${l.contextTokens}-token context window`,
        { details: { prompt_tokens: promptTokens, max_tokens: sampling.maxTokens, context_tokens: l.contextTokens } },
      );
    }
    const meterBefore = l.sequence.tokenMeter.getState();
    // One controller for both ways a generation ends early: the client going away, and the
    // streaming callback failing (node-llama-cpp would only console.error a throwing callback).
    const stopper = new AbortController();
    const onAbort = () => stopper.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    let callbackError: unknown = null;
    const onToken = req.onToken;
    let response: Awaited<ReturnType<LlamaChat['generateResponse']>> | null = null;
    let failure: unknown = null;
    try {
      response = await l.chat.generateResponse(history, {
        maxTokens: sampling.maxTokens,
        temperature: sampling.temperature,
        topP: sampling.topP,
        seed: sampling.seed,
        topK: 0,
        minP: 0,
        repeatPenalty: false,
        customStopTriggers: sampling.stop.filter((s) => s.length > 0),
        signal: stopper.signal,
        stopOnAbortSignal: true,
        onTextChunk: onToken
          ? (text: string) => {
              if (!text || callbackError !== null || stopper.signal.aborted) return;
              try {
                onToken(text);
              } catch (err) {
                callbackError = err;
                stopper.abort(err);
              }
            }
          : undefined,
      });
    } catch (err) {
      failure = err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    const completionTokens = l.sequence.tokenMeter.diff(meterBefore).usedOutputTokens;
    if (callbackError !== null) throw callbackError;
    if (signal.aborted || response?.metadata.stopReason === 'abort') {
      this.logger.info('generation cancelled', { backend: this.backend, model: this.modelId, completion_tokens: completionTokens });
      throw new CancelledError('generation cancelled', failure === null ? undefined : { cause: failure });
    }
    if (failure !== null || response === null) {
      // node-llama-cpp errors are not for clients: keep them as the cause (logged by the caller).
      throw failure instanceof MnemeError ? failure : new InternalError(`text generation failed: ${(failure as Error)?.message ?? 'no response'}`, { cause: failure });
    }
    return {
      text: response.response,
      promptTokens,
      completionTokens,
      finishReason: response.metadata.stopReason === 'maxTokens' ? 'length' : 'stop',
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.ready.catch(() => {});
    await this.tail.catch(() => {});
    const l = this.loaded;
    this.loaded = null;
    if (!l) return;
    l.chat.dispose();
    await l.context.dispose();
    await l.model.dispose();
  }
}
