/**
 * The ChatModel contract, one suite run against every in-process backend (gguf through
 * node-llama-cpp, transformers.js in a worker) on its tiny fixture model: streaming, max tokens, stop
 * sequences, cancellation, independence of requests, reproducible sampling, serialisation, context
 * overflow and a failing token consumer. Backend-specific behaviour stays in each backend's file.
 */
import { describe, expect, it } from 'vitest';
import { CancelledError, ContextOverflowError } from '../../../src/core/errors.ts';
import type { LlmLogger } from '../../../src/core/llm/gguf.ts';
import type { ChatMessage, ChatModel, GenerateRequest, SamplingParams } from '../../../src/core/llm/types.ts';

export const SUITE_MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'Answer from the context. Cite passages as [n].' },
  { role: 'user', content: 'What is the Halcyon ferry schedule?' },
];
export const GREEDY: SamplingParams = { maxTokens: 40, temperature: 0, topP: 1, seed: 42, stop: [] };

export function request(over: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    messages: SUITE_MESSAGES,
    sampling: GREEDY,
    signal: new AbortController().signal,
    context: { query: 'What is the Halcyon ferry schedule?', passages: [] },
    ...over,
  };
}

export type LogLine = { msg: string; fields?: Record<string, unknown> | undefined };

/** A backend logger that keeps what it is told, for assertions on load and cancel lines. */
export function recordingLogger(): LlmLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { lines, info: (msg, fields) => lines.push({ msg, fields }), warn: (msg, fields) => lines.push({ msg, fields }) };
}

export interface ChatModelSuiteOptions {
  /** The loaded model (called inside tests, after the backend file's beforeAll). */
  model: () => ChatModel & { countPromptTokens(messages: ChatMessage[]): number };
  /** The model's context window, in tokens. */
  contextTokens: number;
  /** What the model's logger received so far. */
  logLines: () => LogLine[];
}

export function chatModelContract(name: string, o: ChatModelSuiteOptions): void {
  describe(`ChatModel contract: ${name}`, () => {
    it('streams tokens whose concatenation is the answer, and reports token counts', async () => {
      const model = o.model();
      const chunks: string[] = [];
      const r = await model.generate(request({ onToken: (t) => chunks.push(t) }));
      expect(chunks.length).toBeGreaterThan(5);
      expect(chunks.join('')).toBe(r.text);
      expect(r.text.trim().length).toBeGreaterThan(0);
      expect(r.promptTokens).toBe(model.countPromptTokens(SUITE_MESSAGES));
      // The chat template adds tokens beyond the bare message text.
      expect(r.promptTokens).toBeGreaterThan(model.countTokens(SUITE_MESSAGES[0]!.content) + model.countTokens(SUITE_MESSAGES[1]!.content));
      expect(r.completionTokens).toBe(GREEDY.maxTokens);
      expect(r.finishReason).toBe('length');
    });

    it('stops at maxTokens', async () => {
      const model = o.model();
      const r = await model.generate(request({ sampling: { ...GREEDY, maxTokens: 7 } }));
      expect(r.completionTokens).toBe(7);
      expect(r.finishReason).toBe('length');
      const full = await model.generate(request());
      // Greedy decoding: the short answer is the start of the long one.
      expect(full.text.startsWith(r.text)).toBe(true);
      expect(full.text.length).toBeGreaterThan(r.text.length);
    });

    it('stops before a stop sequence the model emits, and never streams any of it', async () => {
      const model = o.model();
      const first = await model.generate(request());
      // A piece of the greedy output that first occurs well after its start.
      const words = first.text.split(' ').filter((w) => w.length >= 3);
      const stop = words.map((w) => w.slice(0, 3)).find((w) => first.text.indexOf(w) >= 8);
      expect(stop, `no usable stop string in ${JSON.stringify(first.text)}`).toBeDefined();
      const at = first.text.indexOf(stop!);
      const chunks: string[] = [];
      const second = await model.generate(request({ sampling: { ...GREEDY, stop: [stop!] }, onToken: (t) => chunks.push(t) }));
      expect(second.text).toBe(first.text.slice(0, at));
      expect(second.finishReason).toBe('stop');
      expect(second.completionTokens).toBeLessThan(first.completionTokens);
      expect(chunks.join('')).toBe(second.text);
    });

    it('cancels mid-generation: CancelledError, no tokens after the abort, generation stopped', async () => {
      const model = o.model();
      const ac = new AbortController();
      let seen = 0;
      let afterAbort = 0;
      const cancelLines = () => o.logLines().filter((l) => l.msg === 'generation cancelled');
      const before = cancelLines().length;
      const p = model.generate(
        request({
          sampling: { ...GREEDY, maxTokens: 400 },
          signal: ac.signal,
          onToken: () => {
            if (ac.signal.aborted) afterAbort++;
            if (++seen === 3) ac.abort();
          },
        }),
      );
      await expect(p).rejects.toBeInstanceOf(CancelledError);
      // The model is free again (the cancelled run really stopped) and answers normally.
      const r = await model.generate(request({ sampling: { ...GREEDY, maxTokens: 5 } }));
      expect(r.completionTokens).toBe(5);
      expect(afterAbort).toBe(0);
      const line = cancelLines()[before];
      expect(line).toBeDefined();
      expect(line!.fields!.completion_tokens as number).toBeLessThan(20);
    });

    it('rejects at once when the signal is already aborted', async () => {
      const ac = new AbortController();
      ac.abort();
      await expect(o.model().generate(request({ signal: ac.signal }))).rejects.toBeInstanceOf(CancelledError);
    });

    it('keeps requests independent: no history leaks from one generate() into the next', async () => {
      const model = o.model();
      const a1 = await model.generate(request());
      await model.generate(request({ messages: [{ role: 'user', content: 'Tell me about vexmoor and kestrelctl instead.' }] }));
      const a2 = await model.generate(request());
      expect(a2.text).toBe(a1.text);
      expect(a2.promptTokens).toBe(a1.promptTokens);
    });

    it('samples reproducibly from temperature, top-p and seed', async () => {
      const model = o.model();
      const sampling = { ...GREEDY, temperature: 0.9, topP: 0.9, seed: 7 };
      const a = await model.generate(request({ sampling }));
      const b = await model.generate(request({ sampling }));
      expect(b.text).toBe(a.text);
    });

    it('serialises concurrent calls on one model', async () => {
      const model = o.model();
      const other: ChatMessage[] = [{ role: 'user', content: 'the model answer' }];
      const short = { ...GREEDY, maxTokens: 12 };
      const sequential = [await model.generate(request({ sampling: short })), await model.generate(request({ messages: other, sampling: short }))];
      const concurrent = await Promise.all([model.generate(request({ sampling: short })), model.generate(request({ messages: other, sampling: short }))]);
      expect(concurrent.map((r) => r.text)).toEqual(sequential.map((r) => r.text));
    });

    it('refuses a prompt + answer budget over the context window with the numbers', async () => {
      const model = o.model();
      const long = 'the ferry leaves at noon '.repeat(120);
      const err = await model.generate(request({ messages: [{ role: 'user', content: long }], sampling: { ...GREEDY, maxTokens: 64 } })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ContextOverflowError);
      const details = (err as ContextOverflowError).details!;
      expect(details).toMatchObject({ context_tokens: o.contextTokens, max_tokens: 64 });
      expect(details.prompt_tokens as number).toBeGreaterThan(o.contextTokens - 64);
      // The same kind of prompt fits once the answer budget leaves room (the check is prompt + budget).
      const short = 'the ferry leaves at noon '.repeat(40);
      const n = model.countPromptTokens([{ role: 'user', content: short }]);
      const ok = await model.generate(request({ messages: [{ role: 'user', content: short }], sampling: { ...GREEDY, maxTokens: o.contextTokens - n - 1 } }));
      expect(ok.promptTokens).toBe(n);
    });

    it('turns a failing token consumer into a rejected generate(), and keeps working', async () => {
      const model = o.model();
      const boom = new Error('client write failed');
      await expect(
        model.generate(
          request({
            onToken: () => {
              throw boom;
            },
          }),
        ),
      ).rejects.toBe(boom);
      const r = await model.generate(request({ sampling: { ...GREEDY, maxTokens: 3 } }));
      expect(r.completionTokens).toBe(3);
    });
  });
}
