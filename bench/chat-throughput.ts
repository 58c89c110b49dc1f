/**
 * Chat throughput: POST /v1/chat with the extractive answerer under N concurrent clients, first on an
 * idle server, then while a concurrent `mneme ingest` of a larger generated corpus writes to the same
 * data dir (the server keeps serving and picks the new chunks up as they land).
 *
 *   node --import tsx bench/chat-throughput.ts [--seconds 30] [--clients 50] [--files 2000] [--model DIR]
 *
 * Defaults: model ../shared/models/minilm-l6-shape-random (all-MiniLM-L6-v2 shape, random weights:
 * valid for speed only) when present, else the tiny BERT test fixture. The server runs as its own
 * process (`mneme serve` through serveCommand) so the load generator does not share its event loop;
 * the ingest is the real CLI. Prints one JSON line of figures.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const sharedModel = path.resolve(repo, '../shared/models/minilm-l6-shape-random');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    clients: { type: 'string', default: '50' },
    files: { type: 'string', default: '2000' },
    model: { type: 'string', default: fs.existsSync(sharedModel) ? sharedModel : path.join(repo, 'test/fixtures/models/tiny-bert') },
  },
});
const SECONDS = Number(values.seconds);
const CLIENTS = Number(values.clients);
const FILES = Number(values.files);
const MODEL = path.resolve(values.model!);
/** Longest wait for the background ingest to finish after the measured window, in ms. */
const INGEST_WAIT_MS = 15 * 60_000;

const QUESTIONS = [
  'Which part number is the Halcyon X3 filter cartridge?',
  'How long should a new cartridge be flushed?',
  'What does kestrelctl do?',
  'What does error E-417 mean?',
  'How does OrbiSync resolve conflicts?',
  'When does the Tidewater ferry leave on Sundays?',
  'What grows in Vexmoor lunar gardens?',
  'How do I reset the gateway profile?',
];

const env: Record<string, string> = {
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? os.tmpdir(),
  MNEME_OFFLINE: '1',
  MNEME_EMBED_MODEL: MODEL,
  MNEME_LLM: 'extractive',
  MNEME_RATE_LIMIT_PER_MIN: '0',
};

function run(args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [path.join(repo, 'bin/mneme.js'), ...args], { cwd: repo, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
}

function finished(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

/** Deterministic pseudo-random generator (mulberry32), so every run ingests the same corpus. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VOCAB = (
  'valve pump filter sensor gateway archive ridge station ferry harbour schedule garden lunar soil seed ' +
  'cartridge firmware profile network telemetry reading calibration pressure flow sediment carbon lamp ' +
  'install configure replace reset inspect measure record forward collect drain flush mount connect ' +
  'daily weekly monthly quickly carefully safely manual automatic primary secondary northern southern ' +
  'the a of to and in for with on at by from into over under after before during while because'
).split(' ');

/** Writes `n` markdown files of 2-5 sections each into a temp dir. */
function generateCorpus(n: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-corpus-'));
  const rand = rng(42);
  const word = () => VOCAB[Math.floor(rand() * VOCAB.length)]!;
  const sentence = () => {
    const words = Array.from({ length: 8 + Math.floor(rand() * 14) }, word);
    return `${words.join(' ').replace(/^./, (c) => c.toUpperCase())}.`;
  };
  for (let i = 0; i < n; i++) {
    const sections = 2 + Math.floor(rand() * 4);
    let text = `# Field note ${i}: ${word()} ${word()}\n\n`;
    for (let s = 0; s < sections; s++) {
      text += `## ${word()} ${word()} ${s}\n\n`;
      for (let p = 0; p < 2; p++) text += `${Array.from({ length: 3 + Math.floor(rand() * 4) }, sentence).join(' ')}\n\n`;
    }
    fs.writeFileSync(path.join(dir, `note-${String(i).padStart(5, '0')}.md`), text);
  }
  return dir;
}

interface Phase {
  requests: number;
  ok: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: Record<string, number>;
}

async function load(url: string, key: string, seconds: number, clients: number): Promise<Phase> {
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let ok = 0;
  const t0 = performance.now();
  const deadline = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; Date.now() < deadline; i++) {
        const start = performance.now();
        try {
          const res = await fetch(`${url}/v1/chat`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ message: QUESTIONS[(c + i) % QUESTIONS.length] }),
          });
          await res.arrayBuffer();
          if (res.status === 200) ok++;
          else errors[res.status] = (errors[res.status] ?? 0) + 1;
        } catch (err) {
          errors[(err as Error).name] = (errors[(err as Error).name] ?? 0) + 1;
        }
        latencies.push(performance.now() - start);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  return { requests: latencies.length, ok, rps: Math.round((ok / elapsed) * 10) / 10, p50_ms: q(0.5), p99_ms: q(0.99), errors };
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-chat-'));
  const seed = run(['ingest', path.join(repo, 'test/fixtures/docs'), '--data-dir', dataDir, '--json']);
  if ((await finished(seed)) !== 0) throw new Error('seed ingest failed');

  const { openSqliteStore } = await import('../src/core/store/sqlite/index.ts');
  const { createUser } = await import('../src/chat/users.ts');
  const store = openSqliteStore(path.join(dataDir, 'mneme.sqlite'));
  const key = (await createUser(store, { name: 'bench' })).apiKey;
  // Probes of the prediction log read the engine's tables directly (a bench, not product code).
  const db = store.connection.db;
  const count = () => db.prepare("SELECT count(*) FROM responses WHERE status = 'ok'").pluck().get() as number;
  const lastSeq = () => (db.prepare('SELECT coalesce(max(seq), 0) FROM responses').pluck().get() as number);
  /** Server-side mean stage times (ms) of the answers logged after `afterSeq`, up to `untilSeq`. */
  const serverTimings = (afterSeq: number, untilSeq: number) => {
    const row = db
      .prepare(
        `SELECT avg(json_extract(timings_json, '$.features_ms')) AS features_ms, avg(json_extract(timings_json, '$.embed_ms')) AS embed_ms,
                avg(json_extract(timings_json, '$.retrieve_ms')) AS retrieve_ms, avg(json_extract(timings_json, '$.generate_ms')) AS generate_ms,
                avg(json_extract(timings_json, '$.total_ms')) AS total_ms
         FROM responses WHERE seq > ? AND seq <= ? AND status = 'ok'`,
      )
      .get(afterSeq, untilSeq) as Record<string, number | null>;
    return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === null ? null : Math.round(v * 10) / 10]));
  };

  // The server in its own process, started exactly as `mneme serve` runs.
  const runner = path.join(dataDir, 'serve.mts');
  fs.writeFileSync(
    runner,
    `import { serveCommand } from ${JSON.stringify(path.join(repo, 'src/commands/serve.ts'))};\n` +
      'process.exitCode = await serveCommand.run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, isTty: false });\n',
  );
  const server = spawn(process.execPath, ['--import', 'tsx', runner, '--data-dir', dataDir, '--port', '0', '--host', '127.0.0.1'], {
    cwd: repo,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let serverOut = '';
  let serverErr = '';
  server.stdout!.on('data', (d) => (serverOut += d));
  server.stderr!.on('data', (d) => (serverErr += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(serverOut);
      if (m) {
        clearInterval(timer);
        resolve(m[1]!);
      }
    }, 50);
    server.on('exit', () => reject(new Error(`server exited: ${serverErr}`)));
  });

  // Warm-up (JIT, tokenizer caches) outside the measured window.
  await load(url, key, 2, 4);
  const rowsBefore = count();
  const seq0 = lastSeq();
  const idle = await load(url, key, SECONDS, CLIENTS);
  const seq1 = lastSeq();

  const corpus = generateCorpus(FILES);
  const ingestStart = performance.now();
  const ingest = run(['ingest', corpus, '--data-dir', dataDir, '--json', '--wait']);
  let ingestOut = '';
  ingest.stdout!.on('data', (d) => (ingestOut += d));
  const ingestDone = finished(ingest).then((code) => ({ code, seconds: (performance.now() - ingestStart) / 1000 }));
  let ingestFinishedInWindow = false;
  void ingestDone.then(() => (ingestFinishedInWindow = true));
  // Let the ingest get past start-up (model load) so the window measures real contention.
  await new Promise((r) => setTimeout(r, 3000));
  const seq2 = lastSeq();
  const busy = await load(url, key, SECONDS, CLIENTS);
  const seq3 = lastSeq();
  const finishedDuringWindow = ingestFinishedInWindow;
  const ing = await Promise.race([ingestDone, new Promise<null>((r) => setTimeout(() => r(null), INGEST_WAIT_MS))]);
  const summary = (() => {
    try {
      return JSON.parse(ingestOut.trim().split('\n').pop() ?? '{}') as { chunks_added?: number; documents_added?: number };
    } catch {
      return {};
    }
  })();
  const rowsLogged = count() - rowsBefore;
  const idleServer = serverTimings(seq0, seq1);
  const busyServer = serverTimings(seq2, seq3);

  server.kill('SIGTERM');
  const serverExit = await finished(server);
  await store.close();
  fs.rmSync(corpus, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });

  console.log(
    JSON.stringify({
      bench: 'chat-throughput',
      clients: CLIENTS,
      seconds: SECONDS,
      model: path.basename(MODEL),
      llm: 'extractive',
      idle: { ...idle, server_mean_ms: idleServer },
      during_ingest: { ...busy, server_mean_ms: busyServer },
      slowdown_rps_pct: Math.round((1 - busy.rps / idle.rps) * 1000) / 10,
      p50_ratio: Math.round((busy.p50_ms / Math.max(1, idle.p50_ms)) * 100) / 100,
      ingest: {
        files: FILES,
        documents_added: summary.documents_added ?? null,
        chunks_added: summary.chunks_added ?? null,
        seconds: ing ? Math.round(ing.seconds * 10) / 10 : null,
        exit_code: ing ? ing.code : null,
        finished_during_window: finishedDuringWindow,
      },
      log_rows_match: rowsLogged === idle.ok + busy.ok,
      server_exit_code: serverExit,
      cores: os.availableParallelism(),
      loadavg_1m: Math.round(os.loadavg()[0]! * 100) / 100,
    }),
  );
}

await main();
