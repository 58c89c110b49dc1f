/**
 * Chat model factory: turns `MNEME_LLM` (config.llm.spec) into a ChatModel.
 *   extractive            → ExtractiveChatModel (no LLM; quotes the best sentences)
 *   openai:BASE_URL       → OpenAICompatibleChatModel (MNEME_LLM_MODEL required, MNEME_LLM_API_KEY optional)
 *   gguf:PATH             → node-llama-cpp (added by the GGUF backend; not in this build yet)
 *   transformers:ID_OR_DIR → transformers.js text generation (not in this build yet)
 */
import type { Config } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { ExtractiveChatModel } from './extractive.ts';
import { OpenAICompatibleChatModel } from './openai.ts';
import type { ChatModel, SamplingParams } from './types.ts';

/**
 * Builds the configured chat model. Async because local backends load weights.
 * @throws ConfigError naming the variable (MNEME_LLM, MNEME_LLM_MODEL) when the spec cannot be served.
 */
export async function createChatModel(config: Config): Promise<ChatModel> {
  const spec = config.llm.spec;
  if (spec === 'extractive') return new ExtractiveChatModel();
  const colon = spec.indexOf(':');
  const kind = colon === -1 ? spec : spec.slice(0, colon);
  const target = colon === -1 ? '' : spec.slice(colon + 1);
  switch (kind) {
    case 'openai': {
      if (!config.llm.model) {
        throw new ConfigError(
          `MNEME_LLM_MODEL is required with MNEME_LLM=openai:… (the model name the server serves, e.g. "llama3.1:8b" for Ollama)`,
        );
      }
      try {
        return new OpenAICompatibleChatModel({
          baseUrl: target,
          model: config.llm.model,
          apiKey: config.llm.apiKey,
          timeoutMs: config.llm.timeoutMs,
        });
      } catch (err) {
        throw new ConfigError(`MNEME_LLM: ${(err as Error).message}`, { cause: err });
      }
    }
    case 'gguf':
    case 'transformers':
      throw new ConfigError(`MNEME_LLM: the ${kind} backend is not available in this build (use extractive or openai:BASE_URL)`);
    default:
      throw new ConfigError(`MNEME_LLM: unknown chat model spec ${JSON.stringify(spec)} (expected extractive, gguf:PATH, transformers:ID_OR_DIR or openai:BASE_URL)`);
  }
}

/** The sampling parameters configured by MNEME_LLM_* (plus request-specific stop strings). */
export function samplingFromConfig(config: Config, stop: string[] = []): SamplingParams {
  return {
    maxTokens: config.llm.maxTokens,
    temperature: config.llm.temperature,
    topP: config.llm.topP,
    seed: config.llm.seed,
    stop: [...stop],
  };
}
