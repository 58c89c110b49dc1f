/**
 * Chat model factory: turns `MNEME_LLM` (config.llm.spec) into a ChatModel.
 *   extractive            → ExtractiveChatModel (no LLM; quotes the best sentences)
 *   openai:BASE_URL       → OpenAICompatibleChatModel (MNEME_LLM_MODEL required, MNEME_LLM_API_KEY optional)
 *   gguf:PATH             → GgufChatModel (node-llama-cpp, optional dependency; see gguf.ts)
 *   transformers:ID_OR_DIR → TransformersChatModel (transformers.js in a worker; see transformers-llm.ts)
 */
import path from 'node:path';
import type { Config } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { ExtractiveChatModel } from './extractive.ts';
import { OpenAICompatibleChatModel } from './openai.ts';
import type { LlmLogger } from './gguf.ts';
import type { ChatModel, SamplingParams } from './types.ts';

/**
 * Builds the configured chat model. Async because local backends load weights.
 * @throws ModelLoadError when a gguf file or local transformers directory does not exist;
 * ConfigError naming the variable (MNEME_LLM, MNEME_LLM_MODEL) when the spec cannot be served.
 */
export async function createChatModel(config: Config, options: { logger?: LlmLogger } = {}): Promise<ChatModel> {
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
    // Local backends return at once in the 'loading' state (await `model.ready` to fail fast on a
    // corrupt file); a missing file or directory throws ModelLoadError naming it right here.
    case 'gguf': {
      const { GgufChatModel } = await import('./gguf.ts');
      return GgufChatModel.start({ modelPath: target, threads: config.threads, contextTokens: config.llm.contextTokens, logger: options.logger });
    }
    case 'transformers': {
      const { TransformersChatModel } = await import('./transformers-llm.ts');
      const ref = target.startsWith('.') || target.startsWith('/') ? path.resolve(target) : target;
      return TransformersChatModel.start({
        modelRef: ref,
        modelsDir: config.modelsDir,
        offline: config.offline,
        threads: config.threads,
        contextTokens: config.llm.contextTokens,
        logger: options.logger,
      });
    }
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
