/**
 * Streaming through /v1/chat vs the raw in-process backend, same model, same prompts, same run:
 *
 *   node --import tsx bench/chat-llm.ts [--model smollm2-360m-q8_0|tinyllama-1.1b-q4_0] [--tokens 64] [--runs 6] [--client-process]
 *
 * 1. `mneme serve` (in this process, real HTTP on 127.0.0.1) with MNEME_LLM=gguf:<stand-in> over the fixture
 *    corpus (BM25 only, so no embedding competes for the 2 cores). The client streams /v1/chat through
 *    node:http from this process with a timestamp per socket read and nothing else per token: the
 *    closest this one machine gets to a client on another machine (`--client-process`: from a child
 *    process instead, whose per-token wake-ups take CPU from llama.cpp's threads on the same cores).
 * 2. The raw backend is a second in-process instance of the same GGUF (its own context), given exactly
 *    the prompt the server logged for the question (responses.rendered_prompt_json) with the logged
 *    sampling parameters. Warm-up asks every question once (learning its prompt); then `--runs` pairs
 *    (chat, raw) on the same prompt, alternating which goes first, so machine drift cancels.
 * Reports medians over the pairs of the tokens/s ratio (target ≥ 0.95) and of the TTFT overhead:
 * chat TTFT − raw TTFT − retrieval time (target < 20 ms), and the same overhead decomposed (client TTFT
 * − the server's own generation-to-first-token time − retrieval), which is free of prompt-eval noise.
 * Prints one JSON line.
 */
import { fork, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createUser } from '../src/chat/users.ts';
import { startServer } from '../src/commands/serve.ts';
import { loadConfig } from '../src/core/config.ts';
import { GgufChatModel } from '../src/core/llm/gguf.ts';
import type { ChatMessage, SamplingParams } from '../src/core/llm/types.ts';
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
  const { apiKey } = createUser(server.deps.db, { name: 'bench' });
  for (let i = 0; i < 600; i++) {
    if ((await fetch(`${server.url}/healthz`)).ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // The raw backend is a second instance of the same model file with its own context, and the two
  // are measured in pairs on exactly the same prompt (the one the server logged for that question,
  // with the logged sampling parameters). Pairing cancels the drift of a shared, noisy machine, and
  // the order within a pair alternates so neither side always runs first.
  // Warm-up: every question once through the server (this also learns each question's prompt), then
  // the raw instance on the last of those prompts, so both KV caches hold the same text.
  const raw = await GgufChatModel.load({ modelPath: file, threads: config.threads, contextTokens: CONTEXT_TOKENS });
  const logRow = server.deps.db.prepare('SELECT rendered_prompt_json, sampling_json FROM responses WHERE id = ?');
  const client = values['client-process'] ? new ClientProcess() : null;
  const ask = (message: string) => (client ? client.run({ url: server.url, key: apiKey, message }) : chatRun(server.url, apiKey, message));
  const logged = (id: string) => {
    const row = logRow.get(id) as { rendered_prompt_json: string; sampling_json: string };
    return { promptJson: row.rendered_prompt_json, messages: JSON.parse(row.rendered_prompt_json) as ChatMessage[], sampling: JSON.parse(row.sampling_json) as Partial<SamplingParams> };
  };
  const prompts = new Map<string, ReturnType<typeof logged>>();
  for (const q of QUESTIONS) prompts.set(q, logged((await ask(q)).id));
  const rawOnce = async (q: string) => {
    const p = prompts.get(q)!;
    const r = await measureRaw(raw, { messages: () => p.messages, sampling: p.sampling, runs: 1, warmup: 0 });
    return { summary: r.samples[0]!, promptTokens: r.prompt_tokens };
  };
  await rawOnce(QUESTIONS[QUESTIONS.length - 1]!);

  const pairs: Array<{ chat: ChatRunResult; raw: StreamSummary; promptTokens: number; chatFirst: boolean }> = [];
  for (let i = 0; i < RUNS; i++) {
    const q = QUESTIONS[i % QUESTIONS.length]!;
    const chatFirst = i % 2 === 0;
    const r1 = chatFirst ? null : await rawOnce(q);
    const c = await ask(q);
    const r = r1 ?? (await rawOnce(q));
    // Retrieval and rendering are deterministic here, so the raw side ran exactly this prompt.
    if (logged(c.id).promptJson !== prompts.get(q)!.promptJson) throw new Error(`the server rendered a different prompt for "${q}" than in the warm-up`);
    pairs.push({ chat: c, raw: r.summary, promptTokens: r.promptTokens, chatFirst });
  }
  client?.close();
  await raw.close();
  await server.shutdown({ force: true });

  const chatTps = median(pairs.map((p) => p.chat.summary.tokens_per_s));
  const rawTps = median(pairs.map((p) => p.raw.tokens_per_s));
  const chatTtft = median(pairs.map((p) => p.chat.summary.ttft_ms));
  const rawTtft = median(pairs.map((p) => p.raw.ttft_ms));
  const retrieve = median(pairs.map((p) => p.chat.retrieveMs));
  process.stdout.write(
    `${JSON.stringify({
      model: values.model,
      tokens: Number(values.tokens),
      runs: RUNS,
      client: client ? 'child process' : 'in process',
      threads: config.threads,
      prompt_tokens: median(pairs.map((p) => p.promptTokens)),
      chat: { tokens_per_s: round2(chatTps), ttft_ms: round2(chatTtft), retrieve_ms: retrieve, completion_tokens: median(pairs.map((p) => p.chat.summary.completion_tokens)) },
      raw: { tokens_per_s: round2(rawTps), ttft_ms: round2(rawTtft), completion_tokens: median(pairs.map((p) => p.raw.completion_tokens)) },
      // Targets: tokens/s ratio ≥ 0.95; TTFT overhead − retrieval < 20 ms. Medians over the pairs.
      tokens_per_s_ratio: round2(median(pairs.map((p) => p.chat.summary.tokens_per_s / p.raw.tokens_per_s))),
      ttft_overhead_minus_retrieval_ms: round2(median(pairs.map((p) => p.chat.summary.ttft_ms - p.raw.ttft_ms - p.chat.retrieveMs))),
      // The same overhead without the noise of two prompt evaluations (~6 s each): the client's TTFT
      // minus the server's own time from the start of generation to the first token (first_token_ms),
      // i.e. HTTP, auth, features, retrieval, prompt fitting and rendering, queue, SSE delivery.
      ttft_overhead_decomposed_minus_retrieval_ms: round2(median(pairs.map((p) => p.chat.summary.ttft_ms - p.chat.firstTokenMs - p.chat.retrieveMs))),
      pairs: pairs.map((p) => ({
        chat_first: p.chatFirst,
        chat_tokens_per_s: round2(p.chat.summary.tokens_per_s),
        raw_tokens_per_s: round2(p.raw.tokens_per_s),
        chat_ttft_ms: round2(p.chat.summary.ttft_ms),
        raw_ttft_ms: round2(p.raw.ttft_ms),
        server_first_token_ms: p.chat.firstTokenMs,
      })),
    })}\n`,
  );
  fs.rmSync(dataDir, { recursive: true, force: true });
}
