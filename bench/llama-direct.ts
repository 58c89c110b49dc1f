/**
 * node-llama-cpp called directly, with no mneme code in the path: the "raw" side of bench/chat-llm.ts.
 * It sets up what src/core/llm/gguf.ts sets up (CPU only, the prebuilt binary, the same thread count,
 * context size, the model's own chat template, the same sampling switches), so the difference between
 * this and GgufChatModel is the wrapper's own cost.
 */
import type { ChatHistoryItem, Llama, LlamaChat, LlamaContext, LlamaContextSequence, LlamaModel } from 'node-llama-cpp';
import type { ChatMessage, SamplingParams } from '../src/core/llm/types.ts';
import type { StreamSummary } from './llm.ts';
import { summarizeStream } from './llm.ts';

export class DirectLlama {
  private constructor(
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
    private readonly chat: LlamaChat,
  ) {}

  /** Loads `file` with `threads` CPU threads and a `contextTokens`-token context (one sequence). */
  static async load(file: string, threads: number, contextTokens: number): Promise<DirectLlama> {
    const lib = await import('node-llama-cpp');
    const llama = await lib.getLlama({ gpu: false, build: 'never', skipDownload: true, maxThreads: threads, logLevel: lib.LlamaLogLevel.error, progressLogs: false });
    const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: contextTokens, threads: { ideal: threads, min: threads }, sequences: 1 });
    const sequence = context.getSequence();
    const chat = new lib.LlamaChat({ contextSequence: sequence, chatWrapper: lib.resolveChatWrapper(model) });
    return new DirectLlama(llama, model, context, sequence, chat);
  }

  /** One streamed generation of `messages`; times each text chunk as it arrives. */
  async run(messages: ChatMessage[], sampling: SamplingParams): Promise<{ summary: StreamSummary; promptTokens: number }> {
    const history: ChatHistoryItem[] = messages.map((m) =>
      m.role === 'system' ? { type: 'system', text: m.content } : m.role === 'user' ? { type: 'user', text: m.content } : { type: 'model', response: [m.content] },
    );
    if (history[history.length - 1]?.type !== 'model') history.push({ type: 'model', response: [] });
    const promptTokens = this.chat.chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(this.model.tokenizer).length;
    const chunks: number[] = [];
    const before = this.sequence.tokenMeter.getState();
    const start = performance.now();
    await this.chat.generateResponse(history, {
      maxTokens: sampling.maxTokens,
      temperature: sampling.temperature,
      topP: sampling.topP,
      seed: sampling.seed,
      topK: 0,
      minP: 0,
      repeatPenalty: false,
      customStopTriggers: sampling.stop.filter((s) => s.length > 0),
      onTextChunk: (text: string) => {
        if (text) chunks.push(performance.now());
      },
    });
    const end = performance.now();
    const completionTokens = this.sequence.tokenMeter.diff(before).usedOutputTokens;
    return { summary: summarizeStream(start, chunks, completionTokens, end), promptTokens };
  }

  async close(): Promise<void> {
    this.chat.dispose();
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }
}
