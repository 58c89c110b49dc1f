/**
 * The embedding interface every implementation shares (TransformersEmbedder in embedder.ts,
 * OpenAIEmbedder in embedder-openai.ts), kept apart so neither implementation imports the other.
 */
import { MnemeError } from './errors.ts';

export interface EmbedderInfo {
  modelId: string;
  dimension: number;
  /** Inputs are truncated to this many tokens. */
  maxTokens: number;
  /** `server`: an embedding server pools (OpenAIEmbedder); mneme cannot tell how. */
  pooling: 'mean' | 'cls' | 'server';
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

/**
 * 503 `embedder_unavailable`: no embedding worker is running right now (one crashed and is being
 * respawned, or the embedder is closed). Callers that can do without vectors (chat retrieval)
 * catch it and fall back to BM25.
 */
export class EmbedderUnavailableError extends MnemeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('embedder_unavailable', 503, message, options);
  }
}

