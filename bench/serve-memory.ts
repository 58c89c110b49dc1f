/**
 * Memory of `mneme serve` on a large data dir: start-up time, RSS after opening it and after
 * answering N questions, and the JS heap share (issue 17: < 3 GB RSS at 1M chunks).
 *
 *   node --import tsx bench/retrieval.ts --chunks 1000000 --keep /tmp/mneme-1m   # builds the data dir
 *   node --import tsx bench/serve-memory.ts --data-dir /tmp/mneme-1m [--queries 1000] [--clients 4]
 *
 * The server runs in its own process exactly as `mneme serve` (serveCommand), extractive answers,
 * with a stand-in OpenAI-compatible embedding server started here on BENCH_EMBED_PORT (a
 * deterministic unit vector per text, `--dim` dimensions): the data dir's index generation carries
 * BENCH_EMBED_MODEL_ID, which `retrieval.ts --keep` writes. Questions are made of the corpus's own
 * words. Memory is read from /proc/PID/status (VmRSS, VmHWM) and the server's /metrics (heap).
 * Prints one JSON line on stdout; progress goes to stderr.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { openAIApiBase, openAIEmbedModelId } from '../src/core/config.ts';
import { corpusWord as word, procMemory } from './lib.ts';

/** Port of the stand-in embedding server (part of the kept data dir's model id). */
export const BENCH_EMBED_PORT = 18817;
export const BENCH_EMBED_MODEL_NAME = 'bench-random';
export const BENCH_EMBED_MODEL_ID = openAIEmbedModelId(openAIApiBase(`http://127.0.0.1:${BENCH_EMBED_PORT}/v1`), BENCH_EMBED_MODEL_NAME);

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg: string) => process.stderr.write(`[serve-memory] ${msg}\n`);

/** Deterministic unit vector of `text` (sha256-seeded xorshift). */
function vectorOf(text: string, dim: number): number[] {
  let x = createHash('sha256').update(text).digest().readUInt32LE(0) || 1;
  const v: number[] = [];
  for (let i = 0; i < dim; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    v.push(x / 2 ** 31 - 1);
  }
  const n = Math.hypot(...v) || 1;
  return v.map((e) => e / n);
}

function startEmbedServer(dim: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const input = (JSON.parse(body) as { input: string | string[] }).input;
      const list = Array.isArray(input) ? input : [input];
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ object: 'list', data: list.map((t, index) => ({ object: 'embedding', index, embedding: vectorOf(t, dim) })) }));
    });
  });
  return new Promise((resolve) => server.listen(BENCH_EMBED_PORT, '127.0.0.1', () => resolve(server)));
}


async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      queries: { type: 'string', default: '1000' },
      clients: { type: 'string', default: '4' },
      dim: { type: 'string', default: '384' },
    },
  });
  const dataDir = values['data-dir'];
  if (!dataDir) throw new Error('--data-dir is required (a dir kept by `bench/retrieval.ts --keep DIR`)');
  const Q = Number(values.queries);
  const clients = Number(values.clients);
  const embed = await startEmbedServer(Number(values.dim));

  const { openSqliteStore } = await import('../src/core/store/sqlite/index.ts');
  const { createUser } = await import('../src/chat/users.ts');
  const store = openSqliteStore(path.join(dataDir, 'mneme.sqlite'));
  const key = (await createUser(store, { name: `bench-${Date.now()}`, admin: true })).apiKey;
  await store.close();

  const runner = path.join(dataDir, 'serve.mts');
  fs.writeFileSync(
    runner,
    `import { serveCommand } from ${JSON.stringify(path.join(repo, 'src/commands/serve.ts'))};\n` +
      'process.exitCode = await serveCommand.run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, isTty: false });\n',
  );
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    MNEME_OFFLINE: '1',
    MNEME_EMBED_MODEL: `openai:http://127.0.0.1:${BENCH_EMBED_PORT}/v1#${BENCH_EMBED_MODEL_NAME}`,
    MNEME_LLM: 'extractive',
    MNEME_RATE_LIMIT_PER_MIN: '0',
  };
  const t0 = performance.now();
  const server = spawn(process.execPath, ['--import', 'tsx', runner, '--data-dir', dataDir, '--port', '0', '--host', '127.0.0.1'], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  server.stdout.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearInterval(timer);
        resolve(m[1]!);
      }
    }, 50);
    server.on('exit', () => reject(new Error(`server exited: ${err}${out}`)));
  });
  const startSeconds = (performance.now() - t0) / 1000;
  const atStart = procMemory(server.pid!);
  log(`listening after ${startSeconds.toFixed(1)} s, RSS ${atStart.rss_mb} MB`);

  let seed = 7;
  const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
  const latencies: number[] = [];
  const status: Record<string, number> = {};
  let next = 0;
  let modes: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < Q) {
        next++;
        const message = Array.from({ length: 4 }, () => word(200 + Math.floor(rand() * 5000))).join(' ');
        const s = performance.now();
        const res = await fetch(`${url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ message }) });
        const body = (await res.json()) as { retrieval_mode?: string };
        latencies.push(performance.now() - s);
        status[res.status] = (status[res.status] ?? 0) + 1;
        const mode = body.retrieval_mode ?? 'unknown';
        modes = { ...modes, [mode]: (modes[mode] ?? 0) + 1 };
      }
    }),
  );
  const afterQueries = procMemory(server.pid!);
  const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).text();
  const metric = (name: string) => Math.round(Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) / 1024 / 1024);
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  embed.close();
  fs.rmSync(runner, { force: true });
  latencies.sort((a, b) => a - b);
  const q = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! * 10) / 10;
  process.stdout.write(
    `${JSON.stringify({
      bench: 'serve-memory',
      data_dir: dataDir,
      queries: Q,
      clients,
      start_s: Math.round(startSeconds * 10) / 10,
      rss_after_start_mb: atStart.rss_mb,
      rss_after_queries_mb: afterQueries.rss_mb,
      peak_rss_mb: afterQueries.hwm_mb,
      heap_used_mb: metric('nodejs_heap_size_used_bytes'),
      external_mb: metric('nodejs_external_memory_bytes'),
      status,
      retrieval_modes: modes,
      chat_ms: { p50: q(0.5), p99: q(0.99) },
    })}\n`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
