/**
 * Streaming through /v1/chat vs mneme's in-process backend vs node-llama-cpp itself, same model, same
 * prompts, same run:
 *
 *   node --import tsx bench/chat-llm.ts [--model smollm2-360m-q8_0|tinyllama-1.1b-q4_0] [--tokens 64] [--runs 6] [--client-process]
 *
 * 1. chat: `mneme serve` (in this process, real HTTP on 127.0.0.1) with MNEME_LLM=gguf:<stand-in> over
 *    the fixture corpus (BM25 only, so no embedding competes for the 2 cores). The client streams
 *    /v1/chat through node:http from this process with a timestamp per socket read and nothing else per
 *    token: the closest this one machine gets to a client on another machine (`--client-process`: from
 *    a child process instead, whose per-token wake-ups take CPU from llama.cpp's threads on the same cores).
 * 2. wrapper: a second in-process instance of the same GGUF through mneme's own GgufChatModel (its own
 *    context), given exactly the prompt the server logged for the question (responses.rendered_prompt_json)
 *    with the logged sampling parameters.
 * 3. raw: node-llama-cpp called directly (bench/llama-direct.ts: getLlama → loadModel → createContext →
 *    LlamaChat.generateResponse, no mneme code), same file, threads, context size, chat template and
 *    sampling as GgufChatModel uses, so the wrapper's own cost is measured too.
 * Warm-up asks every question once through the server (learning its prompt), then the wrapper and the
 * raw side once. Then `--runs` triplets on the same prompt, rotating which side goes first, so machine
 * drift cancels. Reports medians over the triplets of the tokens/s ratios (chat/raw: target ≥ 0.95;
 * wrapper/raw; chat/wrapper) and of the TTFT overheads: chat TTFT − raw TTFT − retrieval time (target
 * < 20 ms), wrapper TTFT − raw TTFT, and the chat overhead decomposed (client TTFT − the server's own
 * generation-to-first-token time − retrieval), which is free of prompt-eval noise. Prints one JSON line.
 */
import { fork, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { createUser } from '../src/chat/users.ts';
import { startServer } from '../src/commands/serve.ts';
import { loadConfig } from '../src/core/config.ts';
import { GgufChatModel } from '../src/core/llm/gguf.ts';
import type { ChatMessage, SamplingParams } from '../src/core/llm/types.ts';
import { DirectLlama } from './llama-direct.ts';
import type { StreamSummary } from './llm.ts';
import { measureRaw, median, standInGguf, summarizeStream } from './llm.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'smollm2-360m-q8_0' },
    tokens: { type: 'string', default: '64' },
    runs: { type: 'string', default: '6' },
    // Run the HTTP client in a child process instead of this one (to see what a second process
    // waking up for every token on the same 2 cores costs).
    'client-process': { type: 'boolean', default: false },
    // Internal: this process is the client child (see ClientProcess).
    client: { type: 'boolean', default: false },
  },
});
const RUNS = Number(values.runs);
const CONTEXT_TOKENS = 2048;

const round2 = (x: number) => Math.round(x * 100) / 100;

const QUESTIONS = [
  'What does error E-417 mean on the Halcyon X3?',
  'How often should the Halcyon X3 cartridge be replaced?',
  'Which ferry goes to Marrowby Island in winter?',
  'How do I list resources with kestrelctl?',
  'What is OrbiSync conflict resolution?',
  'When should Vexmoor lunar gardeners plant?',
];

/**
 * One streamed /v1/chat turn through node:http with as little client work per token as possible (a
 * timestamp and a buffer per socket read; SSE parsed after the end), so the figure is the server's.
 */
function chatRun(url: string, key: string, message: string): Promise<ChatRunResult> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ message, stream: true });
    const reads: Array<{ at: number; data: Buffer }> = [];
    const start = performance.now();
    const req = http.request(`${url}/v1/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      res.on('data', (data: Buffer) => reads.push({ at: performance.now(), data }));
      res.on('error', reject);
      res.on('end', () => {
        const end = performance.now();
        if (res.statusCode !== 200) return reject(new Error(`chat failed: ${res.statusCode} ${Buffer.concat(reads.map((r) => r.data)).toString()}`));
        // Each token event is timed by the read that completed it.
        const tokenTimes: number[] = [];
        let done: { id: string; usage: { completion_tokens: number }; timings: Record<string, number | null> } | null = null;
        let buf = '';
        for (const r of reads) {
          buf += r.data.toString('utf8');
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const type = /^event: (.*)$/m.exec(event)?.[1];
            const data = /^data: (.*)$/m.exec(event)?.[1];
            if (type === 'token') tokenTimes.push(r.at);
            else if (type === 'done' && data) done = JSON.parse(data);
            else if (type === 'error') return reject(new Error(`stream error: ${data}`));
          }
        }
        if (!done) return reject(new Error('no done event'));
        resolve({
          summary: summarizeStream(start, tokenTimes, done.usage.completion_tokens, end),
          id: done.id,
          retrieveMs: done.timings.retrieve_ms ?? 0,
          firstTokenMs: done.timings.first_token_ms ?? Number.NaN,
        });
      });
    });
    req.end(body);
  });
}

type ChatRunResult = { summary: StreamSummary; id: string; retrieveMs: number; firstTokenMs: number };
type ClientRequest = { url: string; key: string; message: string };

/**
 * The streaming client in a child process (`--client-process`): off the server's event loop, but its
 * wake-up for every token competes with llama.cpp for the same cores. Requests go over the IPC channel.
 */
class ClientProcess {
  private readonly child = fork(fileURLToPath(import.meta.url), ['--client'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  run(req: ClientRequest): Promise<ChatRunResult> {
    return new Promise((resolve, reject) => {
      this.child.once('message', (m: { ok: true; result: ChatRunResult } | { ok: false; error: string }) => (m.ok ? resolve(m.result) : reject(new Error(m.error))));
      this.child.send(req);
    });
  }
  close(): void {
    this.child.disconnect();
  }
}

/** The three sides measured on one prompt, in the order given. */
type Side = 'chat' | 'wrapper' | 'raw';
const ROTATIONS: Side[][] = [
  ['chat', 'wrapper', 'raw'],
  ['wrapper', 'raw', 'chat'],
  ['raw', 'chat', 'wrapper'],
];

interface Triplet {
  chat: ChatRunResult;
  wrapper: StreamSummary;
  raw: StreamSummary;
  promptTokens: number;
  order: Side[];
}

if (values.client) {
  process.on('message', (req: ClientRequest) => {
    chatRun(req.url, req.key, req.message).then(
      (result) => process.send!({ ok: true, result }),
      (err: Error) => process.send!({ ok: false, error: err.message }),
    );
  });
} else {
  await main();
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
  const { apiKey } = await createUser(server.deps.store, { name: 'bench' });
  for (let i = 0; i < 600; i++) {
    if ((await fetch(`${server.url}/healthz`)).ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // The wrapper and raw sides are two more instances of the same model file, each with its own
  // context, measured with the server in triplets on exactly the same prompt (the one the server
  // logged for that question, with the logged sampling parameters). The order within a triplet
  // rotates so no side always runs first on a shared, noisy machine.
  const wrapper = await GgufChatModel.load({ modelPath: file, threads: config.threads, contextTokens: CONTEXT_TOKENS });
  const raw = await DirectLlama.load(file, config.threads, CONTEXT_TOKENS);
  // Read-only probe of the prediction log (a bench, not product code).
  const logDb = new Database(config.dbFile, { readonly: true });
  const logRow = logDb.prepare('SELECT rendered_prompt_json, sampling_json FROM responses WHERE id = ?');
  const client = values['client-process'] ? new ClientProcess() : null;
  const ask = (message: string) => (client ? client.run({ url: server.url, key: apiKey, message }) : chatRun(server.url, apiKey, message));
  const logged = (id: string) => {
    const row = logRow.get(id) as { rendered_prompt_json: string; sampling_json: string };
    const sampling: SamplingParams = { maxTokens: Number(values.tokens), temperature: 0.2, topP: 0.95, seed: 42, stop: [], ...(JSON.parse(row.sampling_json) as Partial<SamplingParams>) };
    return { promptJson: row.rendered_prompt_json, messages: JSON.parse(row.rendered_prompt_json) as ChatMessage[], sampling };
  };
  const prompts = new Map<string, ReturnType<typeof logged>>();
  for (const q of QUESTIONS) prompts.set(q, logged((await ask(q)).id));
  const wrapperOnce = async (q: string) => {
    const p = prompts.get(q)!;
    const r = await measureRaw(wrapper, { messages: () => p.messages, sampling: p.sampling, runs: 1, warmup: 0 });
    return { summary: r.samples[0]!, promptTokens: r.prompt_tokens };
  };
  const rawOnce = (q: string) => raw.run(prompts.get(q)!.messages, prompts.get(q)!.sampling);
  const last = QUESTIONS[QUESTIONS.length - 1]!;
  await wrapperOnce(last);
  await rawOnce(last);

  const triplets: Triplet[] = [];
  for (let i = 0; i < RUNS; i++) {
    const q = QUESTIONS[i % QUESTIONS.length]!;
    const order = ROTATIONS[i % ROTATIONS.length]!;
    const got: Partial<Omit<Triplet, 'order'>> = {};
    for (const side of order) {
      if (side === 'chat') got.chat = await ask(q);
      else if (side === 'wrapper') got.wrapper = (await wrapperOnce(q)).summary;
      else {
        const r = await rawOnce(q);
        got.raw = r.summary;
        got.promptTokens = r.promptTokens;
      }
    }
    // Retrieval and rendering are deterministic here, so the other sides ran exactly this prompt.
    if (logged(got.chat!.id).promptJson !== prompts.get(q)!.promptJson) throw new Error(`the server rendered a different prompt for "${q}" than in the warm-up`);
    triplets.push({ ...(got as Omit<Triplet, 'order'>), order });
  }
  client?.close();
  logDb.close();
  await wrapper.close();
  await raw.close();
  await server.shutdown({ force: true });
  process.stdout.write(`${JSON.stringify(report(triplets, config.threads))}\n`);
  fs.rmSync(dataDir, { recursive: true, force: true });
}

/** The JSON line: per-side medians, the ratios and overheads (medians over the triplets), each triplet. */
function report(triplets: Triplet[], threads: number): Record<string, unknown> {
  const med = (f: (t: Triplet) => number) => round2(median(triplets.map(f)));
  return {
    model: values.model,
    tokens: Number(values.tokens),
    runs: RUNS,
    client: values['client-process'] ? 'child process' : 'in process',
    threads,
    prompt_tokens: median(triplets.map((t) => t.promptTokens)),
    chat: { tokens_per_s: med((t) => t.chat.summary.tokens_per_s), ttft_ms: med((t) => t.chat.summary.ttft_ms), retrieve_ms: med((t) => t.chat.retrieveMs), completion_tokens: median(triplets.map((t) => t.chat.summary.completion_tokens)) },
    wrapper: { tokens_per_s: med((t) => t.wrapper.tokens_per_s), ttft_ms: med((t) => t.wrapper.ttft_ms), completion_tokens: median(triplets.map((t) => t.wrapper.completion_tokens)) },
    raw: { tokens_per_s: med((t) => t.raw.tokens_per_s), ttft_ms: med((t) => t.raw.ttft_ms), completion_tokens: median(triplets.map((t) => t.raw.completion_tokens)) },
    // Targets: chat/raw tokens/s ratio ≥ 0.95; chat TTFT overhead − retrieval < 20 ms.
    tokens_per_s_ratio: med((t) => t.chat.summary.tokens_per_s / t.raw.tokens_per_s),
    wrapper_tokens_per_s_ratio: med((t) => t.wrapper.tokens_per_s / t.raw.tokens_per_s),
    chat_vs_wrapper_tokens_per_s_ratio: med((t) => t.chat.summary.tokens_per_s / t.wrapper.tokens_per_s),
    ttft_overhead_minus_retrieval_ms: med((t) => t.chat.summary.ttft_ms - t.raw.ttft_ms - t.chat.retrieveMs),
    wrapper_ttft_overhead_ms: med((t) => t.wrapper.ttft_ms - t.raw.ttft_ms),
    // The chat overhead without the noise of two prompt evaluations: the client's TTFT minus the
    // server's own time from the start of generation to the first token (first_token_ms), i.e. HTTP,
    // auth, features, retrieval, prompt fitting and rendering, queue, SSE delivery.
    ttft_overhead_decomposed_minus_retrieval_ms: med((t) => t.chat.summary.ttft_ms - t.chat.firstTokenMs - t.chat.retrieveMs),
    triplets: triplets.map((t) => ({
      order: t.order.join(','),
      chat_tokens_per_s: round2(t.chat.summary.tokens_per_s),
      wrapper_tokens_per_s: round2(t.wrapper.tokens_per_s),
      raw_tokens_per_s: round2(t.raw.tokens_per_s),
      chat_ttft_ms: round2(t.chat.summary.ttft_ms),
      wrapper_ttft_ms: round2(t.wrapper.ttft_ms),
      raw_ttft_ms: round2(t.raw.ttft_ms),
      server_first_token_ms: t.chat.firstTokenMs,
    })),
  };
}
