/**
 * Training-data export benchmark: export rate (rows/s) and peak RSS at 100k and 1M logged responses.
 *
 *   node --import tsx bench/export.ts [--sizes 100000,1000000] [--formats sft,preference] [--keep]
 *
 * For each size a scratch data dir gets a synthetic but realistically shaped prediction log (generated
 * in its own child process): ~2 KB rendered prompts in prompts/answer.md's shape (system message with
 * personalization notes; user message with "Conversation so far", three context passages, question),
 * conversations of 1-5 turns interleaved, ~15% of answers rated (a third of the rated-down ones
 * corrected), 1.5% errored/cancelled, ~1% exact repeats, ~0.5% re-asked prompts rated the other way,
 * ~2% of questions carrying an email or phone number. Each export then runs in a fresh child process
 * (`runExport`, the command's code path), so peak RSS (VmHWM) is the export's own. Prints one JSON line.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const self = fileURLToPath(import.meta.url);
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100000,1000000' },
    formats: { type: 'string', default: 'sft,preference' },
    keep: { type: 'boolean', default: false },
    phase: { type: 'string' },
    'data-dir': { type: 'string' },
    rows: { type: 'string' },
    format: { type: 'string' },
  },
});

function status(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 2 ** 20;
}

/** xorshift32: deterministic data, fast. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const WORDS = (
  'the a of to and in is for on with that by this be are from at as it or an was can which when your you will not if each ' +
  'controller pump seal pressure coolant loop firmware image recovery bank standby status lamp amber button reset cable console ' +
  'ferry pier weekday timetable winter summer schedule departure arrival harbour ticket fare passenger vehicle deck ' +
  'garden lunar soil seed frost moon phase planting harvest compost moisture sensor valve relay channel sync dashboard ' +
  'error code warning threshold bar volt ampere watt cycle interval minute second hour daily weekly config option flag ' +
  'install upgrade rollback snapshot backup restore volume partition mount path file directory permission owner group'
).split(' ');

async function generate(dataDir: string, rows: number): Promise<Record<string, number>> {
  const { loadConfig } = await import('../src/core/config.ts');
  const { openSqliteStore } = await import('../src/core/store/sqlite/index.ts');
  const config = loadConfig({ MNEME_DATA_DIR: dataDir });
  // Seeding writes rows directly through the store connection's raw handle (benchmarks may).
  const seed = openSqliteStore(config.dbFile);
  const db = seed.connection.db;
  db.pragma('synchronous = OFF');
  const rand = rng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const sentence = (n: number): string => {
    const w: string[] = [];
    for (let i = 0; i < n; i++) w.push(pick(WORDS));
    const s = w.join(' ');
    return `${s[0]?.toUpperCase()}${s.slice(1)}.`;
  };
  // A pool of retrieved chunks (~450 chars each), as a corpus would have.
  const chunks = Array.from({ length: 20_000 }, (_, i) => ({
    header: `[n] ${pick(['Halcyon X3 manual', 'kestrelctl reference', 'Tidewater ferry timetable', 'Vexmoor lunar gardening', 'OrbiSync FAQ'])} › Section ${i % 97} (source: doc-${i % 500}.md)`,
    text: Array.from({ length: 5 }, () => sentence(10 + Math.floor(rand() * 8))).join(' '),
  }));
  const system =
    "You are mneme, an assistant that answers questions using only the numbered context passages supplied with each question. The passages come from the user's own document collection.\n\nRules:\n1. Use only facts stated in the context passages. Do not rely on outside knowledge, and do not guess.\n2. Cite every factual claim with the number of the passage that supports it, in square brackets.";
  const personalization = ['Preferred answer length: short (about 40 words).', 'Preferred answer length: medium (about 150 words).\nFrequently asked about collections: manuals.', ''];
  const USERS = 1000;
  const insUser = db.prepare('INSERT INTO users (id, name, api_key_hash, key_prefix, is_admin, created_at) VALUES (?, ?, ?, ?, 0, ?)');
  const insConv = db.prepare('INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)');
  const insResp = db.prepare(
    `INSERT INTO responses (id, user_id, conversation_id, turn_index, created_at, endpoint, request_json, query, history_json, collection, top_k,
       retrieved_json, features_json, prompt_name, prompt_sha256, rendered_prompt_json, model_backend, model_id, sampling_json, answer,
       citations_json, timings_json, prompt_tokens, completion_tokens, status, error_code, error_message)
     VALUES (?, ?, ?, ?, ?, 'chat', ?, ?, ?, ?, 6, ?, '{}', 'answer', ?, ?, ?, ?, '{"temperature":0.2,"top_p":0.95,"seed":42}', ?, '[]', '{}', ?, ?, ?, ?, ?)`,
  );
  const insFb = db.prepare('INSERT INTO feedback (response_id, user_id, rating, correction, created_at) VALUES (?, ?, ?, ?, ?)');
  const promptSha = crypto.createHash('sha256').update('answer-v1').digest('hex');
  const t0 = Date.parse('2025-01-01T00:00:00.000Z');
  let clock = t0;
  const iso = () => new Date((clock += 1000)).toISOString();
  db.transaction(() => {
    for (let u = 1; u <= USERS; u++) insUser.run(u, `user${u}`, crypto.createHash('sha256').update(`k${u}`).digest('hex'), `k${u}`, iso());
  })();

  interface Conv {
    id: string;
    user: number;
    turns: string[];
    left: number;
    pers: string;
  }
  const active: Conv[] = [];
  const firstTurns: Array<{ rendered: string; query: string; answer: string }> = [];
  let convN = 0;
  let bytes = 0;
  let written = 0;
  const BATCH = 5000;
  while (written < rows) {
    db.transaction(() => {
      for (let b = 0; b < BATCH && written < rows; b++) {
        while (active.length < 64) {
          const user = 1 + Math.floor(rand() * USERS);
          const id = `conv_${(convN++).toString(16).padStart(12, '0')}`;
          insConv.run(id, user, iso(), iso());
          active.push({ id, user, turns: [], left: 1 + Math.floor(rand() * 5), pers: pick(personalization) });
        }
        const ci = Math.floor(rand() * active.length);
        const conv = active[ci] as Conv;
        let query = `${sentence(8 + Math.floor(rand() * 8)).slice(0, -1)}?`;
        if (rand() < 0.01) query += ` Reach me at user${conv.user}@example.com.`;
        if (rand() < 0.01) query += ` Call +1 415 555 ${String(1000 + Math.floor(rand() * 8999))}.`;
        const answer = Array.from({ length: 2 + Math.floor(rand() * 3) }, () => `${sentence(12 + Math.floor(rand() * 8)).slice(0, -1)} [${1 + Math.floor(rand() * 3)}].`).join(' ');
        const context = [pick(chunks), pick(chunks), pick(chunks)].map((c, i) => `${c.header.replace('[n]', `[${i + 1}]`)}\n${c.text}`).join('\n\n');
        const history = conv.turns.length ? `Conversation so far:\n${conv.turns.slice(-6).join('\n')}\n\n` : '';
        let rendered = JSON.stringify([
          { role: 'system', content: conv.pers ? `${system}\n\nAdapt your style to the notes below about this user.\n\n${conv.pers}` : system },
          { role: 'user', content: `${history}Context passages:\n\n${context}\n\nQuestion: ${query}` },
        ]);
        let thisAnswer = answer;
        const r = rand();
        // ~1% exact repeats (same prompt, same answer) and ~0.5% re-asked prompts with another answer.
        const reuse = firstTurns.length > 100 && conv.turns.length === 0 && r < 0.015 ? pick(firstTurns) : null;
        if (reuse) {
          rendered = reuse.rendered;
          query = reuse.query;
          if (r < 0.01) thisAnswer = reuse.answer;
        }
        const s = rand();
        const st = s < 0.01 ? 'error' : s < 0.015 ? 'cancelled' : 'ok';
        const id = `resp_${crypto.randomUUID()}`;
        insResp.run(
          id,
          conv.user,
          conv.id,
          conv.turns.length / 2,
          iso(),
          JSON.stringify({ message: query, conversation_id: conv.id }),
          query,
          JSON.stringify(conv.turns),
          rand() < 0.7 ? 'manuals' : null,
          JSON.stringify([{ chunk_id: 1, score: 0.031 }, { chunk_id: 2, score: 0.029 }, { chunk_id: 3, score: 0.02 }]),
          promptSha,
          rendered,
          rand() < 0.8 ? 'openai' : 'extractive',
          rand() < 0.8 ? 'qwen2.5-7b-instruct' : 'extractive-v1',
          st === 'error' ? null : st === 'cancelled' ? thisAnswer.slice(0, 40) : thisAnswer,
          500,
          120,
          st,
          st === 'ok' ? null : st,
          st === 'ok' ? null : 'failed',
        );
        bytes += rendered.length;
        const f = rand();
        if (reuse) insFb.run(id, conv.user, -1, null, iso());
        else if (f < 0.1) insFb.run(id, conv.user, 1, null, iso());
        else if (f < 0.15) insFb.run(id, conv.user, -1, f < 0.1167 ? `${sentence(20)} [1].` : null, iso());
        if (conv.turns.length === 0 && !reuse && firstTurns.length < 5000 && f < 0.1) firstTurns.push({ rendered, query, answer: thisAnswer });
        conv.turns.push(`User: ${query}`, `Assistant: ${thisAnswer.replace(/\s*\[\d+\]/g, '')}`);
        if (--conv.left === 0) active.splice(ci, 1);
        written++;
      }
    })();
  }
  await seed.close();
  return { rows: written, avg_rendered_prompt_bytes: Math.round(bytes / written), db_mb: Math.round(fs.statSync(config.dbFile).size / 2 ** 20) };
}

async function exportPhase(dataDir: string, format: 'sft' | 'preference'): Promise<Record<string, number | string>> {
  const { loadConfig } = await import('../src/core/config.ts');
  const { openSqliteStore } = await import('../src/core/store/sqlite/index.ts');
  const { runExport } = await import('../src/export/run.ts');
  const config = loadConfig({ MNEME_DATA_DIR: dataDir });
  const store = openSqliteStore(config.dbFile);
  const baseline = status('VmRSS');
  let sampledPeak = baseline;
  const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, process.memoryUsage().rss / 2 ** 20)), 100);
  const out = path.join(dataDir, `${format}.jsonl`);
  const t0 = performance.now();
  const r = await runExport({ store, format, out, valFraction: 0.1 });
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  await store.close();
  const c = r.manifest.counts;
  return {
    format,
    seconds: Number(seconds.toFixed(1)),
    // The log rows the export covered (all of them, every status), per second of export.
    log_rows_per_s: Math.round(r.manifest.log.snapshot_seq / seconds),
    // Rows turned into (or tried as) examples: every ok response for sft, every rated-down one for preference.
    rows_read: c.rows_read,
    rows_read_per_s: Math.round(c.rows_read / seconds),
    examples: c.examples,
    examples_per_s: Math.round(c.examples / seconds),
    duplicates: c.duplicates_exact + c.duplicates_near,
    scrubbed: r.manifest.scrub.total,
    output_mb: Number((r.manifest.files.reduce((n, f) => n + f.bytes, 0) / 2 ** 20).toFixed(1)),
    baseline_rss_mb: Math.round(baseline),
    peak_rss_mb: Math.round(Math.max(status('VmHWM'), sampledPeak)),
    dedupe_index_mb: Number((r.manifest.dedupe.index_bytes / 2 ** 20).toFixed(1)),
  };
}

function child(args: string[]): Record<string, unknown> {
  const stdout = execFileSync(process.execPath, ['--import', 'tsx', self, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 * 2 ** 20 });
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] as string) as Record<string, unknown>;
}

if (values.phase === 'generate') {
  console.log(JSON.stringify(await generate(values['data-dir'] as string, Number(values.rows))));
} else if (values.phase === 'export') {
  console.log(JSON.stringify(await exportPhase(values['data-dir'] as string, values.format as 'sft' | 'preference')));
} else {
  const results: Record<string, unknown>[] = [];
  for (const size of (values.sizes ?? '').split(',').map(Number)) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-export-'));
    try {
      const tg = performance.now();
      const gen = child(['--phase', 'generate', '--data-dir', dir, '--rows', String(size)]);
      process.stderr.write(`generated ${size} rows in ${((performance.now() - tg) / 1000).toFixed(0)} s: ${JSON.stringify(gen)}\n`);
      for (const format of (values.formats ?? '').split(',')) {
        const r = child(['--phase', 'export', '--data-dir', dir, '--format', format]);
        process.stderr.write(`${size} ${format}: ${JSON.stringify(r)}\n`);
        results.push({ size, ...gen, ...r });
      }
    } finally {
      if (!values.keep) fs.rmSync(dir, { recursive: true, force: true });
      else process.stderr.write(`kept ${dir}\n`);
    }
  }
  console.log(JSON.stringify({ bench: 'export', node: process.version, cpus: os.cpus().length, results }));
}
