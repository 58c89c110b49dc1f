/**
 * Does `mneme serve` stall while an ingest commits? N clients ask /v1/chat and M poll /healthz, first
 * on an idle server, then while a concurrent `mneme ingest` writes one huge JSON file (one chunk per
 * record: a single document of `--records` chunks, written in bounded transactions) and, optionally,
 * a directory of real documents (`--docs DIR`, e.g. the unpacked postgresql-doc-15 HTML).
 *
 *   node --import tsx bench/serve-under-ingest.ts [--records 250000] [--docs DIR] [--clients 20]
 *        [--health-clients 2] [--seconds 30] [--model DIR] [--timeout-ms 30000] [--max-busy-seconds 900]
 *
 * The idle phase lasts `--seconds`; the busy phase lasts the whole ingest (capped); then, once the
 * server has applied every change, the same load runs `--seconds` again on the grown corpus
 * (`idle_after_ingest`): the busy p99 is given against both idle figures, the second one without the
 * corpus's growth (17 chunks before, ~260k after) in it.
 *
 * Targets (issue "One data layer"): chat and /healthz p99 during the ingest ≤ 2× the idle p99, no
 * request over 2 s, no timeouts. The server is its own process (as `mneme serve` runs); the ingest is
 * the real CLI; the model is the tiny BERT fixture by default (speed only). Prints one JSON line.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '250000' },
    docs: { type: 'string' },
    clients: { type: 'string', default: '20' },
    'health-clients': { type: 'string', default: '2' },
    seconds: { type: 'string', default: '30' },
    model: { type: 'string', default: path.join(repo, 'test/fixtures/models/tiny-bert') },
    'timeout-ms': { type: 'string', default: '30000' },
    'max-busy-seconds': { type: 'string', default: '900' },
  },
});
const RECORDS = Number(values.records);
const CLIENTS = Number(values.clients);
const HEALTH_CLIENTS = Number(values['health-clients']);
const SECONDS = Number(values.seconds);
const TIMEOUT_MS = Number(values['timeout-ms']);
const MAX_BUSY_SECONDS = Number(values['max-busy-seconds']);
/** A request slower than this counts as a stall (the bound), in ms. */
const STALL_MS = 2000;

const env: Record<string, string> = {
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? os.tmpdir(),
  MNEME_OFFLINE: '1',
  MNEME_EMBED_MODEL: path.resolve(values.model!),
  MNEME_LLM: 'extractive',
  MNEME_RATE_LIMIT_PER_MIN: '0',
  MNEME_FEATURES_INTERVAL_S: '5',
  // A diagnostics preload (e.g. an event-loop-delay logger) for the server and the ingest.
  ...(process.env.MNEME_BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.MNEME_BENCH_NODE_OPTIONS } : {}),
};
const QUESTIONS = [
  'What does error E-417 mean?',
  'Which part number is the Halcyon X3 filter cartridge?',
  'How does OrbiSync resolve conflicts?',
  'valve 42 gauge reading',
  'When does the Tidewater ferry leave on Sundays?',
];

const cli = (args: string[]) => spawnSync(process.execPath, [path.join(repo, 'bin/mneme.js'), ...args], { cwd: repo, env, encoding: 'utf8' });
const finished = (c: ChildProcess) => new Promise<number | null>((r) => c.on('exit', (code) => r(code)));

interface Phase {
  requests: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  over_2s: number;
  timeouts: number;
  errors: Record<string, number>;
}

function summarize(lat: number[], timeouts: number, errors: Record<string, number>): Phase {
  const s = [...lat].sort((a, b) => a - b);
  const q = (p: number) => Math.round(s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0);
  return { requests: s.length, p50_ms: q(0.5), p99_ms: q(0.99), max_ms: Math.round(s.at(-1) ?? 0), over_2s: s.filter((x) => x > STALL_MS).length, timeouts, errors };
}

/** Runs the clients for `seconds`, or until `until` resolves when given (then `seconds` is the cap). */
/** Where the slow requests (> 1 s) of a phase started, in seconds from `t0` (bucketed by 5 s → count). */
type SlowTimeline = Record<string, number>;

async function load(url: string, key: string, seconds: number, until?: Promise<unknown>, t0 = performance.now()): Promise<{ chat: Phase; health: Phase; slow_chat_by_5s: SlowTimeline; slow_chat_timings: object[] }> {
  const deadline = Date.now() + seconds * 1000;
  const slow: SlowTimeline = {};
  /** The server's own timings (`timings` of the answer) of the first slow chat requests. */
  const slowTimings: object[] = [];
  let done = false;
  void until?.then(() => (done = true));
  const loop = async (fn: (i: number) => Promise<Response>, lat: number[], errors: Record<string, number>, t: { n: number }) => {
    for (let i = 0; Date.now() < deadline && !done; i++) {
      const start = performance.now();
      try {
        const res = await fn(i);
        const body = await res.arrayBuffer();
        if (lat === chatLat && performance.now() - start > 1000 && slowTimings.length < 200) {
          try {
            slowTimings.push({ client_ms: Math.round(performance.now() - start), ...(JSON.parse(Buffer.from(body).toString()) as { timings?: object }).timings });
          } catch {
            // not JSON: counted as an error below
          }
        }
        if (res.status >= 400) errors[res.status] = (errors[res.status] ?? 0) + 1;
      } catch (err) {
        if ((err as Error).name === 'TimeoutError') t.n++;
        else errors[(err as Error).name] = (errors[(err as Error).name] ?? 0) + 1;
      }
      const ms = performance.now() - start;
      lat.push(ms);
      if (lat === chatLat && ms > 1000) {
        const bucket = String(Math.floor((start - t0) / 5000) * 5);
        slow[bucket] = (slow[bucket] ?? 0) + 1;
      }
    }
  };
  const chatLat: number[] = [];
  const chatErr: Record<string, number> = {};
  const chatT = { n: 0 };
  const hLat: number[] = [];
  const hErr: Record<string, number> = {};
  const hT = { n: 0 };
  await Promise.all([
    ...Array.from({ length: CLIENTS }, (_, c) =>
      loop(
        (i) =>
          fetch(`${url}/v1/chat`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ message: QUESTIONS[(c + i) % QUESTIONS.length] }),
            signal: AbortSignal.timeout(TIMEOUT_MS),
          }),
        chatLat,
        chatErr,
        chatT,
      ),
    ),
    ...Array.from({ length: HEALTH_CLIENTS }, () =>
      loop(async () => {
        const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
        await new Promise((res) => setTimeout(res, 50));
        return r;
      }, hLat, hErr, hT),
    ),
  ]);
  return { chat: summarize(chatLat, chatT.n, chatErr), health: summarize(hLat, hT.n, hErr), slow_chat_by_5s: slow, slow_chat_timings: slowTimings };
}

/** Waits (at most 5 min) until /healthz reports index_lag 0: the server applied every change of the ingest. */
async function waitIndexCaughtUp(url: string): Promise<void> {
  const until = performance.now() + 300_000;
  while (performance.now() < until) {
    const h = (await fetch(`${url}/healthz`)
      .then((r) => r.json())
      .catch(() => ({}))) as { index_lag?: number };
    if ((h.index_lag ?? 0) === 0) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

function hugeJson(dir: string, n: number): string {
  const file = path.join(dir, 'records.json');
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(JSON.stringify({ text: `Record ${i}: valve ${i % 997} reports gauge ${(i * 13) % 89} at station ${i % 211}.` }));
  fs.writeFileSync(file, `[${parts.join(',')}]`);
  return file;
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-stall-'));
  const corpusDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-huge-'));
  try {
    if (cli(['ingest', path.join(repo, 'test/fixtures/docs'), '--data-dir', dataDir]).status !== 0) throw new Error('seed ingest failed');
    const created = cli(['users', 'create', '--name', 'bench', '--json', '--data-dir', dataDir]);
    const key = (JSON.parse(created.stdout.trim().split('\n').pop()!) as { api_key: string }).api_key;
    if (RECORDS > 0) hugeJson(corpusDir, RECORDS);

    const server = spawn(process.execPath, [path.join(repo, 'bin/mneme.js'), 'serve', '--data-dir', dataDir, '--port', '0'], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    server.stdout!.on('data', (d) => (out += d));
    server.stderr!.on('data', (d) => {
      err += d;
      if (process.env.MNEME_BENCH_SERVER_LOG) fs.appendFileSync(process.env.MNEME_BENCH_SERVER_LOG, d);
    });
    const url = await new Promise<string>((resolve, reject) => {
      const t = setInterval(() => {
        const m = /(http:\/\/[\d.:[\]a-z]+)/.exec(out);
        if (m) {
          clearInterval(t);
          resolve(m[1]!);
        }
      }, 50);
      server.on('exit', () => reject(new Error(`server exited: ${err}`)));
    });

    await load(url, key, 2); // warm-up
    const idle = await load(url, key, SECONDS);
    const paths = [...(RECORDS > 0 ? [corpusDir] : []), ...(values.docs ? [path.resolve(values.docs)] : [])];
    const started = performance.now();
    const ingest = spawn(process.execPath, [path.join(repo, 'bin/mneme.js'), 'ingest', ...paths, '--data-dir', dataDir, '--json'], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let ingestOut = '';
    ingest.stdout!.on('data', (d) => (ingestOut += d));
    // The ingest's progress lines, stamped with seconds since it started (to read the slow-request timeline against).
    const ingestLog: string[] = [];
    ingest.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) if (line.trim()) ingestLog.push(`${((performance.now() - started) / 1000).toFixed(1)}s ${line.slice(0, 200)}`);
    });
    const ingestDone = finished(ingest).then((code) => ({ code, seconds: (performance.now() - started) / 1000 }));
    await new Promise((r) => setTimeout(r, 3000)); // past the ingest's model load
    // The whole ingest is the measured window (capped), including the server applying its changes.
    const busy = await load(url, key, MAX_BUSY_SECONDS, ingestDone, started);
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(TIMEOUT_MS) })
      .then((r) => r.json())
      .catch((e: unknown) => ({ error: String(e) }));
    const ing = await ingestDone;
    // The same load on the corpus the ingest left (the server caught up, nothing writing): what the
    // corpus's growth alone costs, so the busy/idle ratio can be read without it.
    await waitIndexCaughtUp(url);
    const idleAfter = await load(url, key, SECONDS);
    server.kill('SIGTERM');
    await finished(server);
    const summary = (() => {
      try {
        return JSON.parse(ingestOut.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
      } catch {
        return {};
      }
    })();
    const ratio = (a: number, b: number) => Math.round((a / Math.max(1, b)) * 100) / 100;
    console.log(
      JSON.stringify({
        bench: 'serve-under-ingest',
        clients: CLIENTS,
        health_clients: HEALTH_CLIENTS,
        seconds: SECONDS,
        records: RECORDS,
        docs: values.docs ?? null,
        idle,
        during_ingest: busy,
        chat_p99_ratio: ratio(busy.chat.p99_ms, idle.chat.p99_ms),
        health_p99_ratio: ratio(busy.health.p99_ms, idle.health.p99_ms),
        idle_after_ingest: idleAfter,
        chat_p99_ratio_to_idle_after: ratio(busy.chat.p99_ms, idleAfter.chat.p99_ms),
        health_p99_ratio_to_idle_after: ratio(busy.health.p99_ms, idleAfter.health.p99_ms),
        health_after_window: health,
        ingest: { exit_code: ing.code, seconds: Math.round(ing.seconds), chunks_added: summary.chunks_added ?? null, documents_added: summary.documents_added ?? null },
        ingest_log: ingestLog.slice(-40),
        cores: os.availableParallelism(),
        loadavg_1m: Math.round(os.loadavg()[0]! * 100) / 100,
      }),
    );
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(corpusDir, { recursive: true, force: true });
  }
}

await main();
