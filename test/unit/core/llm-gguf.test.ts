/**
 * The gguf backend on the committed tiny-llama.gguf fixture (random weights, real node-llama-cpp
 * path: chat template from the file, tokenizer, sampling, streaming, cancellation).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ModelLoadError, UnavailableError } from '../../../src/core/errors.ts';
import { PassThrough } from 'node:stream';
import { modelsCommand } from '../../../src/commands/models.ts';
import { loadConfig } from '../../../src/core/config.ts';
import { GgufChatModel } from '../../../src/core/llm/gguf.ts';
import { createChatModel } from '../../../src/core/llm/index.ts';
import { GREEDY, chatModelContract, recordingLogger, request } from './chat-model-suite.ts';

const FIXTURE = fileURLToPath(new URL('../../fixtures/models/tiny-llama.gguf', import.meta.url));
/** The product always uses the real core count (see the createChatModel tests below). */
const THREADS = os.availableParallelism();
/**
 * The shared model generates with 1 thread: on a busy 2-core CI machine, llama.cpp's 2 threads
 * spin-wait on each other at every token, and a tiny model (microseconds of compute per token) then
 * runs 50-150x slower (measured: 3×40 tokens in 84-228 ms with 1 thread, 10.7-15.4 s with 2).
 */
const TEST_THREADS = 1;
const CONTEXT_TOKENS = 512;

let tmp: string;
let model: GgufChatModel;
const log = recordingLogger();

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
  model = GgufChatModel.start({ modelPath: FIXTURE, threads: TEST_THREADS, contextTokens: CONTEXT_TOKENS, logger: log });
  expect(model.status()).toEqual({ state: 'loading' });
  await model.ready;
}, 60_000);

afterAll(async () => {
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('GgufChatModel on tiny-llama.gguf', () => {
  it('loads with the given thread count and the model’s own chat template', () => {
    expect(model.status()).toEqual({ state: 'ready' });
    expect(model.backend).toBe('gguf');
    expect(model.modelId).toBe(FIXTURE);
    expect(model.contextTokens).toBe(CONTEXT_TOKENS);
    const loaded = log.lines.find((l) => l.msg === 'chat model loaded');
    expect(loaded?.fields).toMatchObject({ threads: TEST_THREADS, context_tokens: CONTEXT_TOKENS, chat_template: 'ChatML' });
  });
});

chatModelContract('gguf (node-llama-cpp) on tiny-llama.gguf', { model: () => model, contextTokens: CONTEXT_TOKENS, logLines: () => log.lines });

describe('GgufChatModel loading failures', () => {
  it('a missing file fails at start with the path', () => {
    const missing = path.join(tmp, 'nope', 'model.gguf');
    expect(() => GgufChatModel.start({ modelPath: missing, threads: TEST_THREADS, contextTokens: 512 })).toThrowError(ModelLoadError);
    expect(() => GgufChatModel.start({ modelPath: missing, threads: TEST_THREADS, contextTokens: 512 })).toThrowError(missing);
  });

  it('a garbage file fails to load, naming the path; status says failed; generate answers 503', async () => {
    const bad = path.join(tmp, 'garbage.gguf');
    fs.writeFileSync(bad, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
    const m = GgufChatModel.start({ modelPath: bad, threads: TEST_THREADS, contextTokens: 512 });
    const err = await m.ready.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toContain(bad);
    const st = m.status();
    expect(st.state).toBe('failed');
    expect(st.state === 'failed' && st.error).toContain(bad);
    const gen = await m.generate(request()).catch((e: unknown) => e);
    expect(gen).toBeInstanceOf(UnavailableError);
    expect((gen as UnavailableError).code).toBe('model_failed');
    expect((gen as UnavailableError).status).toBe(503);
    await m.close();
  });

  it('a truncated GGUF (valid header, missing tensor data) fails to load, naming the path', async () => {
    const cut = path.join(tmp, 'truncated.gguf');
    const whole = fs.readFileSync(FIXTURE);
    fs.writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    await expect(GgufChatModel.load({ modelPath: cut, threads: TEST_THREADS, contextTokens: 512 })).rejects.toThrowError(new RegExp(`truncated GGUF file ${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });

  it('answers 503 model_loading while loading', async () => {
    const m = GgufChatModel.start({ modelPath: FIXTURE, threads: TEST_THREADS, contextTokens: 512 });
    expect(m.status()).toEqual({ state: 'loading' });
    const err = await m.generate(request()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).code).toBe('model_loading');
    await m.ready;
    expect(m.status()).toEqual({ state: 'ready' });
    await m.close();
  });

  it('without node-llama-cpp installed, fails with a ConfigError saying what to install', async () => {
    const m = GgufChatModel.start({
      modelPath: FIXTURE,
      threads: THREADS,
      contextTokens: 512,
      importNodeLlamaCpp: () => Promise.reject(Object.assign(new Error("Cannot find package 'node-llama-cpp'"), { code: 'ERR_MODULE_NOT_FOUND' })),
    });
    const err = await m.ready.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('install node-llama-cpp to use gguf: models');
    expect(m.status().state).toBe('failed');
  });
});

describe('createChatModel with MNEME_LLM=gguf:PATH', () => {
  it('returns a loading GgufChatModel that becomes ready, with the real core count and the configured context', async () => {
    const config = loadConfig({ MNEME_LLM: `gguf:${FIXTURE}`, MNEME_LLM_CONTEXT_TOKENS: '1024', MNEME_DATA_DIR: tmp });
    expect(config.threads).toBe(THREADS);
    const lines = recordingLogger();
    const m = await createChatModel(config, { logger: lines });
    expect(m).toBeInstanceOf(GgufChatModel);
    expect(m.status().state).toBe('loading');
    await (m as GgufChatModel).ready;
    expect(m.status().state).toBe('ready');
    expect((m as GgufChatModel).contextTokens).toBe(1024);
    expect(lines.lines.find((l) => l.msg === 'chat model loaded')?.fields).toMatchObject({ threads: THREADS, context_tokens: 1024 });
    const r = await m.generate(request({ sampling: { ...GREEDY, maxTokens: 4 } }));
    expect(r.completionTokens).toBe(4);
    await m.close();
  });

  it('fails at once with ModelLoadError naming a missing file', async () => {
    const missing = path.join(tmp, 'missing.gguf');
    const err = await createChatModel(loadConfig({ MNEME_LLM: `gguf:${missing}`, MNEME_DATA_DIR: tmp })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toContain(missing);
  });
});

describe('mneme models (what to copy where on an offline machine)', () => {
  async function run(env: Record<string, string>, args: string[] = ['--json']) {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await modelsCommand.run(['--data-dir', tmp, ...args], { stdout, stderr: new PassThrough(), env, isTty: false });
    return { code, out };
  }
  const TINY_BERT = fileURLToPath(new URL('../../fixtures/models/tiny-bert', import.meta.url));

  it('reports present local models with their size, exit 0', async () => {
    const { code, out } = await run({ MNEME_EMBED_MODEL: TINY_BERT, MNEME_LLM: `gguf:${FIXTURE}` });
    expect(code).toBe(0);
    const report = JSON.parse(out) as { models: Array<{ role: string; backend: string; present: boolean; bytes: number; location: string }> };
    const chat = report.models.find((m) => m.role === 'chat')!;
    expect(chat).toMatchObject({ backend: 'gguf', present: true, location: FIXTURE, bytes: fs.statSync(FIXTURE).size });
    const embed = report.models.find((m) => m.role === 'embedding')!;
    expect(embed).toMatchObject({ backend: 'transformers', present: true, location: TINY_BERT });
    expect(embed.bytes).toBeGreaterThan(fs.statSync(path.join(TINY_BERT, 'onnx', 'model.onnx')).size);
  });

  it('names the missing files and where a hub model must be copied, exit 1', async () => {
    const missingGguf = path.join(tmp, 'models', 'absent.gguf');
    const { code, out } = await run({ MNEME_EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2', MNEME_LLM: `gguf:${missingGguf}`, MNEME_OFFLINE: '1' });
    expect(code).toBe(1);
    const report = JSON.parse(out) as { models_dir: string; models: Array<{ role: string; present: boolean; location: string; note: string; files: Array<{ file: string; present: boolean }> }> };
    const embed = report.models.find((m) => m.role === 'embedding')!;
    const where = path.join(report.models_dir, 'Xenova', 'all-MiniLM-L6-v2');
    expect(embed.present).toBe(false);
    expect(embed.location).toBe(where);
    expect(embed.files.map((f) => f.file)).toEqual(['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx']);
    expect(embed.note).toContain('https://huggingface.co/Xenova/all-MiniLM-L6-v2');
    const chat = report.models.find((m) => m.role === 'chat')!;
    expect(chat.present).toBe(false);
    expect(chat.note).toContain(missingGguf);
    // Copying the files in makes it present.
    fs.cpSync(TINY_BERT, where, { recursive: true });
    fs.copyFileSync(FIXTURE, missingGguf);
    const again = await run({ MNEME_EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2', MNEME_LLM: `gguf:${missingGguf}`, MNEME_OFFLINE: '1' });
    expect(again.code).toBe(0);
    const text = await run({ MNEME_EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2', MNEME_LLM: `gguf:${missingGguf}` }, []);
    expect(text.out).toContain(`location: ${where}`);
    expect(text.out).toContain('status:   present');
  });

  it('a file that is not GGUF is reported as such', async () => {
    const bad = path.join(tmp, 'not-a-model.gguf');
    fs.writeFileSync(bad, 'hello world');
    const { code, out } = await run({ MNEME_EMBED_MODEL: 'none', MNEME_LLM: `gguf:${bad}` });
    expect(code).toBe(1);
    expect(out).toContain('bad magic bytes');
  });
});
