/**
 * Streaming through /v1/chat vs the raw in-process backend, same model, same prompts, same run:
 *
 *   node --import tsx bench/chat-llm.ts [--model smollm2-360m-q8_0|tinyllama-1.1b-q4_0] [--tokens 64] [--runs 3]
 *
 * 1. `mneme serve` (in-process, real HTTP on 127.0.0.1) with MNEME_LLM=gguf:<stand-in> over the fixture
 *    corpus (BM25 only, so no embedding competes for the 2 cores); `warmup + runs` streamed /v1/chat
 *    requests, timing each SSE token event.
 * 2. The server is shut down; the same GGUF is loaded raw and given exactly the prompts the server
 *    logged (responses.rendered_prompt_json) with the logged sampling parameters.
 * Reports medians of decode tokens/s (the ratio target is ≥ 0.95) and time to first token; the TTFT
 * overhead is chat TTFT − raw TTFT − retrieval time (target < 20 ms). Prints one JSON line.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createUser } from '../src/chat/users.ts';
import { startServer } from '../src/commands/serve.ts';
import { loadConfig } from '../src/core/config.ts';
import { openDb } from '../src/core/db.ts';
import { GgufChatModel } from '../src/core/llm/gguf.ts';
import type { ChatMessage, SamplingParams } from '../src/core/llm/types.ts';
import type { StreamSummary } from './llm.ts';
import { measureRaw, standInGguf, summarizeStream } from './llm.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'smollm2-360m-q8_0' },
    tokens: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
  },
});
const RUNS = Number(values.runs);
const WARMUP = 1;
const CONTEXT_TOKENS = 2048;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const QUESTIONS = [
  'What does error E-417 mean on the Halcyon X3?',
  'How often should the Halcyon X3 cartridge be replaced?',
  'Which ferry goes to Marrowby Island in winter?',
  'How do I list resources with kestrelctl?',
  'What is OrbiSync conflict resolution?',
  'When should Vexmoor lunar gardeners plant?',
];

async function chatRun(url: string, key: string, message: string): Promise<{ summary: StreamSummary; id: string; retrieveMs: number }> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ message, stream: true }),
  });
  if (!res.ok || !res.body) throw new Error(`chat failed: ${res.status} ${await res.text()}`);
  const chunks: number[] = [];
  let done: { id: string; usage: { completion_tokens: number }; timings: Record<string, number> } | null = null;
  let buf = '';
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buf += decoder.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const type = /^event: (.*)$/m.exec(event)?.[1];
      const data = /^data: (.*)$/m.exec(event)?.[1];
      if (type === 'token') chunks.push(performance.now());
      else if (type === 'done' && data) done = JSON.parse(data);
      else if (type === 'error') throw new Error(`stream error: ${data}`);
    }
  }
  const end = performance.now();
  if (!done) throw new Error('no done event');
  const full = done as { id: string; usage: { completion_tokens: number }; timings: Record<string, number> };
  return { summary: summarizeStream(start, chunks, full.usage.completion_tokens, end), id: full.id, retrieveMs: full.timings.retrieve_ms ?? 0 };
}

async function main(): Promise<void> {
  const file = standInGguf(values.model as 'smollm2-360m-q8_0');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-chat-llm-'));
  const env = {
    MNEME_DATA_DIR: dataDir,
    MNEME_EMBED_MODEL: 'none',
    MNEME_LLM: `gguf:${file}`,
    MNEME_LLM_MAX_TOKENS: values.tokens!,
    MNEME_LLM_CONTEXT_TOKENS: String(CONTEXT_TOKENS),
    MNEME_RATE_LIMIT_PER_MIN: '0',
    MNEME_FEATURES_INTERVAL_S: '0',
    MNEME_PORT: '0',
  };
  const ingest = spawnSync(process.execPath, [path.join(ROOT, 'bin/mneme.js'), 'ingest', path.join(ROOT, 'test/fixtures/docs')], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  if (ingest.status !== 0) throw new Error(`ingest failed: ${ingest.stderr}`);
  const config = loadConfig(env);
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const server = await startServer(config, { stdout: sink, stderr: sink, env, isTty: false });
  const { apiKey } = createUser(server.deps.db, { name: 'bench' });
  for (let i = 0; i < 600; i++) {
    if ((await fetch(`${server.url}/healthz`)).ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const chat: Array<{ summary: StreamSummary; id: string; retrieveMs: number }> = [];
  for (let i = 0; i < WARMUP + RUNS; i++) chat.push(await chatRun(server.url, apiKey, QUESTIONS[i % QUESTIONS.length]!));
  await server.shutdown({ force: true });

  const db = openDb(config.dbFile);
  const logged = chat.map((c) => {
    const row = db.prepare('SELECT rendered_prompt_json, sampling_json FROM responses WHERE id = ?').get(c.id) as { rendered_prompt_json: string; sampling_json: string };
    return { messages: JSON.parse(row.rendered_prompt_json) as ChatMessage[], sampling: JSON.parse(row.sampling_json) as Partial<SamplingParams> };
  });
  db.close();
  const raw = await GgufChatModel.load({ modelPath: file, threads: config.threads, contextTokens: CONTEXT_TOKENS });
  const rawM = await measureRaw(raw, { messages: (i) => logged[i]!.messages, sampling: logged[0]!.sampling, runs: RUNS, warmup: WARMUP });
  await raw.close();

  const measured = chat.slice(WARMUP);
  const chatTps = median(measured.map((c) => c.summary.tokens_per_s));
  const chatTtft = median(measured.map((c) => c.summary.ttft_ms));
  const retrieve = median(measured.map((c) => c.retrieveMs));
  process.stdout.write(
    `${JSON.stringify({
      model: values.model,
      tokens: Number(values.tokens),
      runs: RUNS,
      threads: config.threads,
      chat: { tokens_per_s: chatTps, ttft_ms: chatTtft, retrieve_ms: retrieve, completion_tokens: median(measured.map((c) => c.summary.completion_tokens)) },
      raw: { tokens_per_s: rawM.tokens_per_s, ttft_ms: rawM.ttft_ms, completion_tokens: rawM.completion_tokens, prompt_tokens: rawM.prompt_tokens },
      tokens_per_s_ratio: chatTps / rawM.tokens_per_s,
      ttft_overhead_minus_retrieval_ms: chatTtft - rawM.ttft_ms - retrieve,
    })}\n`,
  );
  fs.rmSync(dataDir, { recursive: true, force: true });
}

await main();
