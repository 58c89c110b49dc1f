/**
 * Upload throughput and the server's memory (issue 14): POST /v1/documents to a real `mneme serve`
 * process (SQLite, BM25 only: MNEME_EMBED_MODEL=none, so the figures are upload + load + chunk + FTS,
 * not embedding), for 100 markdown files of 1 MB in one request, then one 50 MB file. For each
 * phase: seconds until the 202 (the request streamed to disk), seconds until the job is done,
 * MB/s end to end, and the server's RSS: before, the peak sampled every 50 ms while uploading and
 * while ingesting (VmRSS from /proc), and VmHWM (the process's peak so far).
 *
 *   node --import tsx bench/upload.ts [--files 100] [--file-mb 1] [--big-mb 50] [--keep DIR]
 *
 * Files are generated on disk first (distinct text per file, headings every ~40 lines) and sent from
 * there (fs.openAsBlob): the client never holds them in memory either. Prints one JSON line on
 * stdout; progress goes to stderr.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { procMemory } from './lib.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg: string) => process.stderr.write(`[upload] ${msg}\n`);
const MB = 1_000_000;
/** RSS sampling period while a phase runs, in ms. */
const SAMPLE_MS = 50;
/** Job polling period, in ms. */
const POLL_MS = 200;

const SYLLABLES = 'ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu'.split(' ');
function word(i: number): string {
  let s = '';
  let n = i;
  do {
    s += SYLLABLES[n % SYLLABLES.length];
    n = Math.floor(n / SYLLABLES.length);
  } while (n > 0);
  return s;
}

/** Writes a markdown file of about `bytes` bytes, distinct per `seed`, in pieces (never whole in memory). */
function writeMarkdown(file: string, bytes: number, seed: number): void {
  const fd = fs.openSync(file, 'w');
  let written = 0;
  let x = seed * 2654435761 + 1;
  let line = 0;
  try {
    while (written < bytes) {
      let block = '';
      while (block.length < 64 * 1024) {
        if (line % 40 === 0) block += `\n## Section ${seed}.${line / 40}\n\n`;
        const words: string[] = [];
        for (let w = 0; w < 14; w++) {
          x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
          words.push(word(x % 20_000));
        }
        block += `${words.join(' ')}.\n`;
        line++;
      }
      fs.writeSync(fd, block);
      written += Buffer.byteLength(block);
    }
  } finally {
    fs.closeSync(fd);
  }
}

async function startServer(dataDir: string, maxFileBytes: number): Promise<{ url: string; pid: number; stop: () => Promise<void>; output: () => string }> {
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
    MNEME_EMBED_MODEL: 'none',
    MNEME_LLM: 'extractive',
    MNEME_RATE_LIMIT_PER_MIN: '0',
    MNEME_MAX_FILE_BYTES: String(maxFileBytes),
    MNEME_FEATURES_INTERVAL_S: '0',
  };
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
  const stop = async () => {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  };
  return { url, pid: server.pid!, stop, output: () => `${out}${err}` };
}

/** Max VmRSS of `pid` while `fn` runs, sampled every SAMPLE_MS. */
async function peakRss<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; peak_rss_mb: number }> {
  let peak = procMemory(pid).rss_mb;
  const timer = setInterval(() => (peak = Math.max(peak, procMemory(pid).rss_mb)), SAMPLE_MS);
  try {
    const value = await fn();
    return { value, peak_rss_mb: Math.max(peak, procMemory(pid).rss_mb) };
  } finally {
    clearInterval(timer);
  }
}

interface Job {
  state: string;
  files_done: number;
  files_failed: number;
  chunks_embedded: number;
  failures: Array<{ file: string; reason: string }>;
}

/** Resets of a kept-alive connection seen while polling (retried; reported). */
let pollResets = 0;
/** Slowest GET /v1/jobs/:id answer while a job ran, in ms (the server's event loop stalls during a commit). */
let maxPollMs = 0;

/** GET /v1/jobs/:id, retrying a connection reset up to 5 times. */
async function getJob(url: string, key: string, id: string): Promise<Job> {
  for (let attempt = 0; ; attempt++) {
    const t0 = performance.now();
    try {
      const job = (await (await fetch(`${url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as Job;
      maxPollMs = Math.max(maxPollMs, performance.now() - t0);
      return job;
    } catch (err) {
      log(`poll failed after ${Math.round(performance.now() - t0)} ms`);
      if (attempt >= 5) throw err;
      pollResets++;
      log(`poll: ${(err as Error).message} (${((err as Error).cause as Error | undefined)?.message ?? ''}); retrying`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}

/** One upload phase: POST the files, wait for the job; times and the server's memory. */
async function phase(srv: { url: string; pid: number }, key: string, files: string[], collection: string): Promise<Record<string, unknown>> {
  const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
  const before = procMemory(srv.pid);
  const t0 = performance.now();
  const up = await peakRss(srv.pid, async () => {
    const form = new FormData();
    form.append('collection', collection);
    for (const f of files) form.append('file', await fs.openAsBlob(f), path.basename(f));
    const r = await fetch(`${srv.url}/v1/documents`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
    if (r.status !== 202) throw new Error(`upload: HTTP ${r.status} ${await r.text()}`);
    return ((await r.json()) as { job_id: string }).job_id;
  });
  const uploadS = (performance.now() - t0) / 1000;
  const ingest = await peakRss(srv.pid, async () => {
    for (;;) {
      const job = await getJob(srv.url, key, up.value);
      if (job.state === 'done' || job.state === 'failed') return job;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  });
  const totalS = (performance.now() - t0) / 1000;
  const docs = (await (await fetch(`${srv.url}/v1/documents?collection=${collection}&limit=200`, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: Array<{ chunks: number }> };
  const after = procMemory(srv.pid);
  return {
    files: files.length,
    mb: Math.round(bytes / MB),
    job: { state: ingest.value.state, files_done: ingest.value.files_done, files_failed: ingest.value.files_failed, failures: ingest.value.failures.slice(0, 3) },
    documents: docs.data.length,
    chunks: docs.data.reduce((n, d) => n + d.chunks, 0),
    upload_s: Number(uploadS.toFixed(2)),
    upload_mb_s: Number((bytes / MB / uploadS).toFixed(1)),
    total_s: Number(totalS.toFixed(2)),
    total_mb_s: Number((bytes / MB / totalS).toFixed(2)),
    rss_before_mb: before.rss_mb,
    peak_rss_upload_mb: up.peak_rss_mb,
    peak_rss_ingest_mb: ingest.peak_rss_mb,
    rss_after_mb: after.rss_mb,
    hwm_after_mb: after.hwm_mb,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '100' },
      'file-mb': { type: 'string', default: '1' },
      'big-mb': { type: 'string', default: '50' },
      keep: { type: 'string' },
    },
  });
  const n = Number(values.files);
  const fileBytes = Number(values['file-mb']) * MB;
  const bigBytes = Number(values['big-mb']) * MB;
  const root = values.keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-upload-'));
  const dataDir = path.join(root, 'data');
  const src = path.join(root, 'files');
  fs.mkdirSync(dataDir, { recursive: true });
  fs.mkdirSync(src, { recursive: true });
  log(`writing ${n} files of ${values['file-mb']} MB and one of ${values['big-mb']} MB under ${src}`);
  const small = Array.from({ length: n }, (_, i) => path.join(src, `doc-${String(i).padStart(3, '0')}.md`));
  small.forEach((f, i) => writeMarkdown(f, fileBytes, i + 1));
  const big = path.join(src, 'big.md');
  writeMarkdown(big, bigBytes, 9999);

  const { openSqliteStore } = await import('../src/core/store/sqlite/index.ts');
  const { createUser } = await import('../src/chat/users.ts');
  const store = openSqliteStore(path.join(dataDir, 'mneme.sqlite'));
  const key = (await createUser(store, { name: `bench-${Date.now()}`, admin: true })).apiKey;
  await store.close();

  const srv = await startServer(dataDir, Math.max(bigBytes, fileBytes) + 16 * MB);
  const idle = procMemory(srv.pid);
  log(`server pid ${srv.pid}, idle RSS ${idle.rss_mb} MB`);
  try {
    const smallPhase = small.length > 0 ? await phase(srv, key, small, 'small') : null;
    log(`small files: ${JSON.stringify(smallPhase)}`);
    const bigPhase = await phase(srv, key, [big], 'big');
    log(`one big file: ${JSON.stringify(bigPhase)}`);
    process.stdout.write(`${JSON.stringify({ engine: 'sqlite', retrieval: 'bm25-only', cores: os.cpus().length, idle_rss_mb: idle.rss_mb, poll_resets: pollResets, max_poll_ms: Math.round(maxPollMs), small: smallPhase, big: bigPhase })}\n`);
  } catch (err) {
    log(`failed; the server's last output:\n${srv.output().slice(-4000)}`);
    throw err;
  } finally {
    await srv.stop();
    if (!values.keep) fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
