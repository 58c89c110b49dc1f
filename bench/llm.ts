/**
 * Raw in-process LLM backends: streamed tokens/s and time to first token, on shape-exact
 * random-weight stand-ins (valid for speed, never for quality):
 *
 *   gguf  SmolLM2-360M  Q8_0   (HuggingFaceTB/SmolLM2-360M-Instruct shape, tied embeddings)
 *   gguf  SmolLM2-360M  F32    (the same shape unquantized: the like-for-like partner of the ONNX run)
 *   gguf  TinyLlama-1.1B Q4_0  (output.weight Q6_K, as llama.cpp quantizes it)
 *   transformers  SmolLM2-360M fp32 ONNX (test/fixtures/models/generate-tiny-causal-onnx.py --shape smollm2-360m)
 *
 * The stand-ins are generated into bench/.work/ on first use (gitignored; ~0.4 to 1.5 GB each).
 * `measureRaw()` and `summarizeStream()` are exported so the HTTP benchmark measures /v1/chat with
 * exactly the same definitions:
 *   ttft_ms      call → first streamed text chunk
 *   tokens_per_s (completion tokens − 1) / (last chunk − first chunk): decode throughput as streamed
 *
 * Every model is measured twice: with the RAG prompt (three passages, ~1,100 tokens with the
 * stand-ins' small vocabulary) and with a short prompt (`_short_prompt`: decode speed with an almost
 * empty KV cache, comparable with figures measured on bare prompts).
 *
 * Usage: node --import tsx bench/llm.ts [--only gguf|transformers|smollm2-360m-q8_0|smollm2-360m-f32|tinyllama-1.1b-q4_0]
 *        [--tokens 128] [--runs 3]
 * Prints one JSON line.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GgufChatModel } from '../src/core/llm/gguf.ts';
import { TransformersChatModel } from '../src/core/llm/transformers-llm.ts';
import type { ChatMessage, ChatModel, SamplingParams } from '../src/core/llm/types.ts';
import { SMOLLM2_360M, TINYLLAMA_1_1B, writeQuantizedLlamaGguf } from '../test/fixtures/models/generate-tiny-llama-gguf.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const WORK_DIR = path.join(ROOT, 'bench', '.work');
/** Context window used for every stand-in (tokens). */
const BENCH_CONTEXT_TOKENS = 2048;

export interface StreamSummary {
  completion_tokens: number;
  ttft_ms: number;
  tokens_per_s: number;
  total_ms: number;
}

/**
 * Figures from one streamed generation.
 * @param startMs when the request was made; @param chunkTimesMs when each text chunk arrived (same clock).
 */
export function summarizeStream(startMs: number, chunkTimesMs: number[], completionTokens: number, endMs: number): StreamSummary {
  const first = chunkTimesMs[0] ?? endMs;
  const last = chunkTimesMs[chunkTimesMs.length - 1] ?? endMs;
  const span = (last - first) / 1000;
  return {
    completion_tokens: completionTokens,
    ttft_ms: first - startMs,
    tokens_per_s: span > 0 && completionTokens > 1 ? (completionTokens - 1) / span : 0,
    total_ms: endMs - startMs,
  };
}

/** Median of a non-empty list. */
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export interface RawMeasurement {
  backend: string;
  model: string;
  prompt_tokens: number;
  runs: number;
  /** Medians over the measured runs. */
  completion_tokens: number;
  ttft_ms: number;
  tokens_per_s: number;
  samples: StreamSummary[];
}

/**
 * A RAG-shaped prompt: system instructions, three numbered passages (`passageChars` each), a
 * question. `run` is written right after the system prompt: llama.cpp reuses the KV cache of a
 * repeated prefix, so identical prompts would time only the last token as "time to first token";
 * varying the text after the (shared, as in production) system prompt makes every run evaluate the
 * passages again.
 */
export function benchMessages(run = 0, passageChars = 400): ChatMessage[] {
  const docs = path.join(ROOT, 'test', 'fixtures', 'docs');
  const passages = fs
    .readdirSync(docs)
    .filter((f) => f.endsWith('.md') || f.endsWith('.txt'))
    .sort()
    .slice(0, 3)
    .map((f, i) => `[${i + 1}] ${fs.readFileSync(path.join(docs, f), 'utf8').replace(/\s+/g, ' ').slice(0, passageChars)}`);
  return [
    { role: 'system', content: 'You answer questions using only the numbered context passages. Cite passages as [n]. If the passages do not contain the answer, say so.' },
    { role: 'user', content: `Request ${run}.\nContext:\n${passages.join('\n\n')}\n\nQuestion: What does the Halcyon X3 error E-417 mean and how is it fixed?` },
  ];
}

/**
 * Measures a loaded ChatModel directly (no HTTP): `warmup` unmeasured runs, then `runs` measured,
 * each with `messages(run)` (default: benchMessages(run), a different prompt after the system part).
 * Random-weight models may end a turn early; completion tokens are reported with every figure.
 */
export async function measureRaw(
  model: ChatModel,
  options: { messages?: (run: number) => ChatMessage[]; sampling?: Partial<SamplingParams>; runs?: number; warmup?: number } = {},
): Promise<RawMeasurement> {
  const messagesFor = options.messages ?? ((run: number) => benchMessages(run));
  const sampling: SamplingParams = { maxTokens: 128, temperature: 0.2, topP: 0.95, seed: 42, stop: [], ...options.sampling };
  const samples: StreamSummary[] = [];
  let promptTokens = 0;
  const runs = options.runs ?? 3;
  for (let i = 0; i < (options.warmup ?? 1) + runs; i++) {
    const chunks: number[] = [];
    const start = performance.now();
    const r = await model.generate({
      messages: messagesFor(i),
      sampling,
      signal: new AbortController().signal,
      onToken: () => chunks.push(performance.now()),
      context: { query: '', passages: [] },
    });
    const end = performance.now();
    promptTokens = r.promptTokens;
    if (i >= (options.warmup ?? 1)) samples.push(summarizeStream(start, chunks, r.completionTokens, end));
  }
  return {
    backend: model.backend,
    model: model.modelId,
    prompt_tokens: promptTokens,
    runs,
    completion_tokens: median(samples.map((s) => s.completion_tokens)),
    ttft_ms: Math.round(median(samples.map((s) => s.ttft_ms)) * 10) / 10,
    tokens_per_s: Math.round(median(samples.map((s) => s.tokens_per_s)) * 100) / 100,
    samples,
  };
}

/** Stand-in GGUF files, generated on first use. */
export function standInGguf(kind: 'smollm2-360m-q8_0' | 'smollm2-360m-f32' | 'tinyllama-1.1b-q4_0'): string {
  const file = path.join(WORK_DIR, `${kind}.gguf`);
  if (fs.existsSync(file)) return file;
  const tmp = `${file}.tmp`;
  const started = performance.now();
  if (kind === 'smollm2-360m-q8_0') writeQuantizedLlamaGguf(tmp, { shape: SMOLLM2_360M, weightType: 'Q8_0', outputType: 'Q8_0', seed: 1 });
  else if (kind === 'smollm2-360m-f32') writeQuantizedLlamaGguf(tmp, { shape: SMOLLM2_360M, weightType: 'F32', outputType: 'F32', seed: 1 });
  else writeQuantizedLlamaGguf(tmp, { shape: TINYLLAMA_1_1B, weightType: 'Q4_0', outputType: 'Q6_K', seed: 2 });
  fs.renameSync(tmp, file);
  process.stderr.write(`generated ${file} (${(fs.statSync(file).size / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  return file;
}

/** The SmolLM2-360M-shape ONNX directory (fp32), generated on first use with Debian's python3-onnx. */
export function standInOnnx(): string {
  const dir = path.join(WORK_DIR, 'smollm2-360m-onnx');
  if (fs.existsSync(path.join(dir, 'onnx', 'model.onnx')) && fs.existsSync(path.join(dir, 'tokenizer_config.json'))) return dir;
  const script = path.join(ROOT, 'test', 'fixtures', 'models', 'generate-tiny-causal-onnx.py');
  const r = spawnSync('/usr/bin/python3', [script, '--shape', 'smollm2-360m', '--out', dir], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${script} failed (exit ${r.status}); it needs Debian's python3-onnx and python3-numpy`);
  return dir;
}

/** A short chat prompt (no passages): decode speed with an almost empty KV cache. */
const shortMessages = (run: number): ChatMessage[] => [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: `Request ${run}: what is the Tidewater ferry?` },
];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { only: { type: 'string' }, tokens: { type: 'string', default: '128' }, runs: { type: 'string', default: '3' } },
  });
  const threads = os.availableParallelism();
  const maxTokens = Number(values.tokens);
  const runs = Number(values.runs);
  fs.mkdirSync(WORK_DIR, { recursive: true });
  const results: Record<string, RawMeasurement> = {};
  const note = (s: string) => process.stderr.write(`${s}\n`);

  const GGUF_KINDS = ['smollm2-360m-q8_0', 'smollm2-360m-f32', 'tinyllama-1.1b-q4_0'] as const;
  const only = values.only;
  if (only === undefined || only === 'gguf' || (GGUF_KINDS as readonly string[]).includes(only)) {
    for (const kind of GGUF_KINDS.filter((k) => only === undefined || only === 'gguf' || only === k)) {
      const file = standInGguf(kind);
      note(`gguf ${kind}: loading`);
      const model = await GgufChatModel.load({ modelPath: file, threads, contextTokens: BENCH_CONTEXT_TOKENS });
      results[`gguf_${kind}`] = await measureRaw(model, { sampling: { maxTokens }, runs });
      results[`gguf_${kind}_short_prompt`] = await measureRaw(model, { messages: shortMessages, sampling: { maxTokens }, runs });
      note(`gguf ${kind}: ${results[`gguf_${kind}`]!.tokens_per_s} tokens/s, ttft ${results[`gguf_${kind}`]!.ttft_ms} ms`);
      await model.close();
    }
  }
  if (only === undefined || only === 'transformers') {
    const dir = standInOnnx();
    note('transformers smollm2-360m fp32: loading');
    const model = await TransformersChatModel.load({ modelRef: dir, modelsDir: WORK_DIR, offline: true, threads, contextTokens: BENCH_CONTEXT_TOKENS });
    results.transformers_smollm2_360m_fp32 = await measureRaw(model, { sampling: { maxTokens }, runs });
    results.transformers_smollm2_360m_fp32_short_prompt = await measureRaw(model, { messages: shortMessages, sampling: { maxTokens }, runs });
    note(`transformers smollm2-360m fp32: ${results.transformers_smollm2_360m_fp32.tokens_per_s} tokens/s`);
    await model.close();
  }
  const figures: Record<string, unknown> = {
    bench: 'llm',
    threads,
    max_tokens: maxTokens,
    runs,
    load_average_1m: Math.round(os.loadavg()[0]! * 100) / 100,
  };
  for (const [k, r] of Object.entries(results)) {
    figures[`${k}_tokens_per_s`] = r.tokens_per_s;
    figures[`${k}_ttft_ms`] = r.ttft_ms;
    figures[`${k}_prompt_tokens`] = r.prompt_tokens;
    figures[`${k}_completion_tokens`] = r.completion_tokens;
  }
  const ratio = (a: RawMeasurement | undefined, b: RawMeasurement | undefined) =>
    a && b && b.tokens_per_s > 0 ? Math.round((a.tokens_per_s / b.tokens_per_s) * 1000) / 1000 : undefined;
  // Same shape, same precision (fp32): the like-for-like comparison of the two runtimes.
  figures.transformers_vs_gguf_f32_tokens_per_s_ratio = ratio(results.transformers_smollm2_360m_fp32, results['gguf_smollm2-360m-f32']);
  figures.transformers_vs_gguf_f32_short_prompt_tokens_per_s_ratio = ratio(
    results.transformers_smollm2_360m_fp32_short_prompt,
    results['gguf_smollm2-360m-f32_short_prompt'],
  );
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
