/**
 * The chat-model seam. Every backend (extractive, OpenAI-compatible server, node-llama-cpp GGUF,
 * transformers.js ONNX) implements ChatModel; the generation queue and the HTTP layer only see this.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Sampling parameters; every response logs the ones it used. */
export interface SamplingParams {
  /** Most tokens to generate. */
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  /** Generation stops before any of these strings (not included in the text). */
  stop: string[];
}

/** A retrieved passage as numbered in the prompt ([n]); the extractive backend answers from these. */
export interface ContextPassage {
  n: number;
  text: string;
  title: string;
  source: string;
}

export interface GenerateRequest {
  /** The exact messages to send (rendered prompt). */
  messages: ChatMessage[];
  sampling: SamplingParams;
  /** Aborting cancels generation; the promise then rejects with CancelledError. */
  signal: AbortSignal;
  /** Called with each new piece of text as it is generated (streaming). */
  onToken?: (text: string) => void;
  /** The question and passages behind the prompt (used by backends that do not read prose, e.g. extractive). */
  context: { query: string; passages: ContextPassage[] };
}

export interface GenerateResult {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'stop' | 'length';
}

export type ModelState = { state: 'loading' } | { state: 'ready' } | { state: 'failed'; error: string };

export interface ChatModel {
  /** extractive | openai | gguf | transformers */
  readonly backend: string;
  /** Model name as reported in responses and logs (file path, hub id or server model name). */
  readonly modelId: string;
  status(): ModelState;
  /**
   * Generates one answer.
   * @throws CancelledError when `signal` aborts; UpstreamError / UpstreamTimeoutError for a failing
   * server; ContextOverflowError when the prompt cannot fit; UnavailableError while loading.
   */
  generate(req: GenerateRequest): Promise<GenerateResult>;
  /** Tokens the model would count for `text` (an estimate where the backend cannot tell). */
  countTokens(text: string): number;
  close(): Promise<void>;
}
