/**
 * Ingestion throughput with `MNEME_EMBED_MODEL=openai:` against a local stub embedding server
 * (test/helpers/embed-server.ts, deterministic vectors), in three runs on the same generated corpus:
 *   - `none`:    MNEME_EMBED_MODEL=none (BM25 only): the pipeline without any embedding work;
 *   - `instant`: a stub that answers at once: chunks/s bound by mneme itself (HTTP client, JSON,
 *                normalization, SQLite, HNSW);
 *   - `sleep`:   a stub that sleeps --delay-ms (default 50) per request, --concurrency (default 4) in flight.
 *
 *   node --import tsx bench/embed-openai.ts [--files 300] [--file-kb 8] [--delay-ms 50] [--concurrency 4] [--dim 384]
 *
 * The stub server and each ingest run are separate child processes (the server never shares mneme's
 * event loop or its CPU accounting). Prints one JSON line.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    files: { type: 'string', default: '300' },
    'file-kb': { type: 'string', default: '8' },
    'delay-ms': { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '4' },
    dim: { type: 'string', default: '384' },
    phase: { type: 'string' },
    url: { type: 'string' },
    'data-dir': { type: 'string' },
    corpus: { type: 'string' },
  },
});

const WORDS = (
  'the harbour ferry timetable lists crossings between the northern quay and the island village each morning ' +
  'engineers inspect the hull pumps and log every reading before the first sailing passengers with bicycles ' +
  'board through the side ramp while freight waits on the lower deck storms delay departures and the harbour ' +
  'master posts notices at the ticket office winter schedules reduce evening trips to two crossings'
).split(' ');

/** Deterministic markdown corpus: `files` files of about `kb` KiB, headings every few paragraphs. */
function makeCorpus(dir: string, files: number, kb: number): number {
  let x = 2463534242;
  const rand = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
  let bytes = 0;
  for (let f = 0; f < files; f++) {
    const parts: string[] = [`# Document ${f}`];
    let size = 0;
    for (let p = 0; size < kb * 1024; p++) {
      if (p % 4 === 0) parts.push(`## Section ${p / 4} of document ${f}`);
      const words = Array.from({ length: 40 + Math.floor(rand() * 60) }, () => WORDS[Math.floor(rand() * WORDS.length)]!);
      const para = `${words.join(' ')} (ref ${f}-${p}).`;
      parts.push(para);
      size += para.length;
    }
    const text = `${parts.join('\n\n')}\n`;
    fs.writeFileSync(path.join(dir, `doc-${String(f).padStart(5, '0')}.md`), text);
    bytes += text.length;
  }
  return bytes;
}

/** Child: the stub server; prints its URL, then its counters when stdin closes. */
async function phaseServer(): Promise<void> {
  const { startStubEmbedServer } = await import('../test/helpers/embed-server.ts');
  const server = await startStubEmbedServer({ dim: Number(values.dim), delayMs: Number(values['delay-ms']) });
  process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);
  process.stdin.resume();
  process.stdin.on('end', async () => {
    const sizes = server.batchSizes;
    process.stdout.write(`${JSON.stringify({ requests: server.requests, max_in_flight: server.maxInFlight, mean_batch: sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length) })}\n`);
    await server.close();
    process.exit(0);
  });
}

/** Child: one ingest run, in process (runIngest, as `mneme ingest` does). */
async function phaseIngest(): Promise<void> {
  const { loadConfig } = await import('../src/core/config.ts');
  const { openStore, openVectorStack } = await import('../src/core/deps.ts');
  const { runIngest } = await import('../ingest/pipeline.ts');
  const dataDir = values['data-dir']!;
  const env: Record<string, string> = { MNEME_DATA_DIR: dataDir, MNEME_OFFLINE: '1', MNEME_EMBED_CONCURRENCY: values.concurrency! };
  if (values.url) Object.assign(env, { MNEME_EMBED_MODEL: `openai:${values.url}`, MNEME_EMBED_MODEL_NAME: 'stub' });
  else env.MNEME_EMBED_MODEL = 'none';
  const config = loadConfig(env);
  const store = await openStore(config);
  const t0 = performance.now();
  let stack: ReturnType<typeof openVectorStack> | null = null;
  const vectors = () => (stack ??= openVectorStack(store, config));
  const s = await runIngest({ store, dataDir, paths: [values.corpus!], collection: 'default', prune: false, maxFileBytes: config.maxFileBytes, vectors, configuredModel: config.embed.model });
  const seconds = (performance.now() - t0) / 1000;
  const opened = stack as ReturnType<typeof openVectorStack> | null;
  if (opened) await (await opened).embedder?.close();
  await store.close();
  const cpu = process.cpuUsage();
  process.stdout.write(
    `${JSON.stringify({ seconds, documents: s.documents_added, chunks: s.chunks_added, embedded: s.chunks_embedded, chunks_per_s: s.chunks_added / seconds, cpu_s: (cpu.user + cpu.system) / 1e6, peak_rss_mb: process.resourceUsage().maxRSS / 1024 })}\n`,
  );
}

/** Runs this script as a child with `args`; resolves its first stdout JSON line and the process. */
function child(args: string[]): { first: Promise<Record<string, unknown>>; lines: AsyncIterableIterator<string>; proc: ReturnType<typeof spawn> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const first = lines.next().then((r) => {
    if (r.done) throw new Error(`child ${args.join(' ')} printed nothing`);
    return JSON.parse(r.value) as Record<string, unknown>;
  });
  return { first, lines, proc };
}

async function run(name: string, corpus: string, delayMs: number | null): Promise<Record<string, unknown>> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `mneme-bench-embed-${name}-`));
  const common = ['--corpus', corpus, '--data-dir', dataDir, '--concurrency', values.concurrency!];
  if (delayMs === null) return (await child(['--phase', 'ingest', ...common]).first) as Record<string, unknown>;
  const server = child(['--phase', 'server', '--delay-ms', String(delayMs), '--dim', values.dim!]);
  const { url } = (await server.first) as { url: string };
  const result = await child(['--phase', 'ingest', ...common, '--url', url]).first;
  server.proc.stdin!.end();
  const stats = await server.lines.next();
  fs.rmSync(dataDir, { recursive: true, force: true });
  return { ...result, server_delay_ms: delayMs, server: stats.done ? null : JSON.parse(stats.value) };
}

async function main(): Promise<void> {
  if (values.phase === 'server') return phaseServer();
  if (values.phase === 'ingest') return phaseIngest();
  const corpus = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-embed-corpus-'));
  const bytes = makeCorpus(corpus, Number(values.files), Number(values['file-kb']));
  const out: Record<string, unknown> = {
    bench: 'embed-openai',
    cores: os.availableParallelism(),
    load_avg_1m_before: Number(os.loadavg()[0]!.toFixed(2)),
    corpus: { files: Number(values.files), bytes },
    concurrency: Number(values.concurrency),
    dim: Number(values.dim),
  };
  out.none = await run('none', corpus, null);
  out.instant = await run('instant', corpus, 0);
  out.sleep = await run('sleep', corpus, Number(values['delay-ms']));
  out.load_avg_1m_after = Number(os.loadavg()[0]!.toFixed(2));
  fs.rmSync(corpus, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

await main();
