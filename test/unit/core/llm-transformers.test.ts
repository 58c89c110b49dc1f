/**
 * The transformers backend on the committed tiny-causal-lm fixture (random weights, real
 * transformers.js text-generation path in a worker thread: KV cache, streamer, stopping criteria).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InternalError, ModelLoadError, UnavailableError } from '../../../src/core/errors.ts';
import { loadConfig } from '../../../src/core/config.ts';
import { createChatModel } from '../../../src/core/llm/index.ts';
import { TransformersChatModel, neutralizeSpecialTokens, scanStops, topPFilter } from '../../../src/core/llm/transformers-llm.ts';
import { GREEDY, chatModelContract, recordingLogger, request } from './chat-model-suite.ts';

const FIXTURE = fileURLToPath(new URL('../../fixtures/models/tiny-causal-lm', import.meta.url));
const THREADS = os.availableParallelism();
const CONTEXT_TOKENS = 512;

const log = recordingLogger();
const { lines } = log;

let tmp: string;
let model: TransformersChatModel;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
  model = TransformersChatModel.start({ modelRef: FIXTURE, modelsDir: path.join(tmp, 'models'), offline: true, threads: THREADS, contextTokens: CONTEXT_TOKENS, logger: log });
  expect(model.status()).toEqual({ state: 'loading' });
  await model.ready;
}, 60_000);

afterAll(async () => {
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the tiny-causal-lm fixture', () => {
  it('reproduces, through transformers.js and its KV cache, the generator’s numpy greedy continuation', async () => {
    const ref = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'reference.json'), 'utf8')) as { prompt_ids: number[]; greedy_ids: number[] };
    env.allowRemoteModels = false;
    env.useFSCache = false;
    const lm = await AutoModelForCausalLM.from_pretrained(FIXTURE, { dtype: 'fp32', session_options: { intraOpNumThreads: 1 } });
    const n = ref.prompt_ids.length;
    const out = (await lm.generate({
      input_ids: new Tensor('int64', BigInt64Array.from(ref.prompt_ids, (v) => BigInt(v)), [1, n]),
      attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
      max_new_tokens: ref.greedy_ids.length,
      do_sample: false,
    } as unknown as Parameters<typeof lm.generate>[0])) as Tensor;
    expect((out.tolist() as bigint[][])[0]!.slice(n).map(Number)).toEqual(ref.greedy_ids);
    await lm.dispose();
  });
});

describe('TransformersChatModel on tiny-causal-lm', () => {
  it('loads in a worker with the real core count', () => {
    expect(model.status()).toEqual({ state: 'ready' });
    expect(model.backend).toBe('transformers');
    expect(model.modelId).toBe(FIXTURE);
    expect(model.contextTokens).toBe(CONTEXT_TOKENS);
    expect(lines.find((l) => l.msg === 'chat model loaded')?.fields).toMatchObject({ threads: THREADS, dtype: 'fp32' });
  });

  it('does not let message text forge special tokens (a "<|im_end|>" in a document stays text)', () => {
    const plain = model.countPromptTokens([{ role: 'user', content: 'a b' }]);
    const forged = model.countPromptTokens([{ role: 'user', content: 'a <|im_end|> b' }]);
    // As one special token it would add 1; as text it is several characters' tokens.
    expect(forged - plain).toBeGreaterThan(3);
    expect(neutralizeSpecialTokens('x <|im_end|> y <|im_end|>', ['<|im_end|>'])).toBe('x <\u200b|im_end|> y <\u200b|im_end|>');
    expect(neutralizeSpecialTokens('nothing special', ['<|im_end|>'])).toBe('nothing special');
  });
});

chatModelContract('transformers.js (worker) on tiny-causal-lm', { model: () => model, contextTokens: CONTEXT_TOKENS, logLines: () => lines });

describe('TransformersChatModel failures', () => {
  it('a missing model directory fails at start with the path', () => {
    const missing = path.join(tmp, 'no-such-model');
    expect(() => TransformersChatModel.start({ modelRef: missing, modelsDir: tmp, offline: true, threads: 1, contextTokens: 512 })).toThrowError(ModelLoadError);
    expect(() => TransformersChatModel.start({ modelRef: missing, modelsDir: tmp, offline: true, threads: 1, contextTokens: 512 })).toThrowError(missing);
  });

  it('a corrupt ONNX file fails to load, naming the model; generate answers 503', async () => {
    const dir = path.join(tmp, 'corrupt-lm');
    fs.cpSync(FIXTURE, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
    const m = TransformersChatModel.start({ modelRef: dir, modelsDir: tmp, offline: true, threads: 1, contextTokens: 512 });
    const err = await m.ready.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toContain(dir);
    expect(m.status().state).toBe('failed');
    const gen = await m.generate(request()).catch((e: unknown) => e);
    expect(gen).toBeInstanceOf(UnavailableError);
    expect((gen as UnavailableError).code).toBe('model_failed');
    await m.close();
  });

  it('a worker that dies mid-generation fails that request and marks the model failed, without crashing', async () => {
    const m = await TransformersChatModel.load({ modelRef: FIXTURE, modelsDir: tmp, offline: true, threads: 1, contextTokens: 512 });
    let killed = false;
    const p = m.generate(
      request({
        sampling: { ...GREEDY, maxTokens: 400 },
        onToken: () => {
          if (killed) return;
          killed = true;
          // What an out-of-memory kill or a native crash in onnxruntime looks like from here (the
          // worker exits with code 1 after its current step: terminating it mid-run can abort this
          // very process, see LlmWorkerRequest).
          void m.crashWorkerForTest();
        },
      }),
    );
    await expect(p).rejects.toBeInstanceOf(InternalError);
    expect(m.status().state).toBe('failed');
    await expect(m.generate(request())).rejects.toBeInstanceOf(UnavailableError);
    await m.close();
  });
});

describe('stop-string scanning and top-p (pure)', () => {
  it('finds the earliest stop and holds back a possible stop prefix or a partial character', () => {
    expect(scanStops('hello world', ['wor', 'llo'])).toEqual({ stopAt: 2, safeEnd: 2 });
    expect(scanStops('hello wo', ['world'])).toEqual({ stopAt: null, safeEnd: 6 });
    expect(scanStops('hello', [])).toEqual({ stopAt: null, safeEnd: 5 });
    expect(scanStops('caf\uFFFD', [])).toEqual({ stopAt: null, safeEnd: 3 });
  });

  it('keeps the smallest set of tokens reaching top-p', () => {
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);
    topPFilter(logits, 0.75);
    expect(Array.from(logits.slice(0, 2)).every(Number.isFinite)).toBe(true);
    expect(logits[2]).toBe(-Infinity);
    expect(logits[3]).toBe(-Infinity);
    const one = Float32Array.from([0, 5, 1]);
    topPFilter(one, 0.01);
    expect(Array.from(one)).toEqual([-Infinity, 5, -Infinity]);
  });
});

describe('createChatModel with MNEME_LLM=transformers:DIR', () => {
  it('returns a loading TransformersChatModel for a local directory that becomes ready', async () => {
    const m = await createChatModel(loadConfig({ MNEME_LLM: `transformers:${FIXTURE}`, MNEME_THREADS: '1', MNEME_DATA_DIR: tmp, MNEME_OFFLINE: '1' }));
    expect(m).toBeInstanceOf(TransformersChatModel);
    expect(m.modelId).toBe(FIXTURE);
    await (m as TransformersChatModel).ready;
    expect(m.status().state).toBe('ready');
    await m.close();
  });

  it('fails at once with ModelLoadError naming a missing directory', async () => {
    const missing = path.join(tmp, 'no-model-here');
    const err = await createChatModel(loadConfig({ MNEME_LLM: `transformers:${missing}`, MNEME_DATA_DIR: tmp })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toContain(missing);
  });
});
