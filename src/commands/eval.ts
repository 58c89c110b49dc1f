/**
 * `mneme eval --dataset DIR [--mode bm25|dense|hybrid] [--split test] [--work-dir DIR] [--json]`
 *
 * Measures retrieval quality on a BEIR-layout dataset with the product's own path: every corpus
 * passage is written as a one-record JSON file and ingested by `runIngest` (the real loader, chunker,
 * embedder and SQLite/FTS5/HNSW store) into a scratch data dir; each query then runs through
 * `HybridRetriever.candidates` (BM25 over FTS5, dense over HNSW, RRF), and a passage scores as its
 * best chunk. Reports nDCG@10, Recall@100 and MRR@10 (see src/eval/metrics.ts).
 *
 * The scratch data dir is a temp dir removed afterwards, unless `--work-dir` names one to keep
 * (re-running on it only re-embeds what changed). `--data-dir` (or MNEME_DATA_DIR) is read only to
 * find the models dir, so a model cached there is reused.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { runIngest } from '../../ingest/pipeline.ts';
import { HybridRetriever } from '../chat/retrieve.ts';
import type { RetrievalMode } from '../chat/retrieve.ts';
import type { Config } from '../core/config.ts';
import { loadConfig } from '../core/config.ts';
import type { Store } from '../core/store/index.ts';
import type { VectorStack } from '../core/deps.ts';
import { openStore, openVectorStack } from '../core/deps.ts';
import { ModelLoadError, ValidationError } from '../core/errors.ts';
import { acquireLock } from '../core/lock.ts';
import type { BeirDataset } from '../eval/beir.ts';
import { loadBeirDataset } from '../eval/beir.ts';
import type { EvalScores } from '../eval/metrics.ts';
import { evaluateRuns } from '../eval/metrics.ts';
import { releaseNameSchema } from '../chat/release-parts.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import { runRegressionEval } from './releases.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

/**
 * Chunks taken from each list (BM25, dense) per query. Deeper than the chat path's 100 so that at
 * least the 100 passages Recall@100 needs survive chunk → passage aggregation; the top ranks, which
 * decide nDCG@10 and MRR@10, are the same as with 100-deep lists except for rare fusion ties.
 */
export const EVAL_CANDIDATES = 1000;
/** Passages kept per query for scoring (Recall@100 is the deepest cut). */
export const EVAL_RANK_DEPTH = 100;
/** Passage files per sub-directory of the scratch corpus (keeps directories small). */
export const EVAL_FILES_PER_DIR = 1000;
/** Collection the passages are ingested into. */
export const EVAL_COLLECTION = 'beir';

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  dataset: z.string().min(1, 'give the dataset directory').optional(),
  regression: z.boolean().default(false),
  release: z.array(releaseNameSchema).default([]),
  mode: z.enum(['bm25', 'dense', 'hybrid']).optional(),
  split: z.string().regex(/^[\w.-]{1,64}$/, 'a qrels file name without .tsv, e.g. test or dev').default('test'),
  'work-dir': z.string().min(1).optional(),
  'database-url': z.string().regex(/^postgres(ql)?:\/\/.+/, 'a postgres:// URL of a scratch database').optional(),
});

export interface EvalResult extends EvalScores {
  mode: RetrievalMode;
}

/** Ranks passages for one query: each passage scores as its best chunk, best first. */
export function rankPassages(chunkScores: ReadonlyArray<{ chunkId: number; score: number }>, passageOf: ReadonlyMap<number, string>, depth = EVAL_RANK_DEPTH): string[] {
  const best = new Map<string, number>();
  for (const c of chunkScores) {
    const pid = passageOf.get(c.chunkId);
    if (pid === undefined) continue;
    const prev = best.get(pid);
    if (prev === undefined || c.score > prev) best.set(pid, c.score);
  }
  // Map order = first appearance in the (already best-first) chunk list: a stable tie-break.
  return [...best.entries()]
    .map(([pid, score], i) => ({ pid, score, i }))
    .sort((a, b) => b.score - a.score || a.i - b.i)
    .slice(0, depth)
    .map((e) => e.pid);
}

/** Writes each passage as a one-record JSON file; returns absolute path → passage id. */
function writePassages(dataset: BeirDataset, dir: string): { files: Map<string, string>; skipped: number } {
  const files = new Map<string, string>();
  let skipped = 0;
  dataset.corpus.forEach((p, i) => {
    if (p.title === '' && p.text === '') {
      skipped++;
      return;
    }
    const stem = String(i).padStart(8, '0');
    const sub = path.join(dir, String(Math.floor(i / EVAL_FILES_PER_DIR)).padStart(4, '0'));
    if (i % EVAL_FILES_PER_DIR === 0) fs.mkdirSync(sub, { recursive: true });
    const file = path.join(sub, `${stem}.json`);
    // The JSON loader makes "title" the document title and the record label (heading path). An
    // untitled passage gets its numeric file stem as label instead of a generic "record 1": a
    // token no natural query contains. A title-only passage is searchable by its title.
    const record = p.title !== '' ? { title: p.title, text: p.text || p.title } : { id: stem, text: p.text };
    const body = JSON.stringify(record);
    // Rewriting identical bytes would still be a no-op for ingest (hash-skip); skipping saves I/O.
    if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== body) fs.writeFileSync(file, body);
    files.set(file, p.id);
  });
  return { files, skipped };
}

/**
 * The evaluation's own store: a scratch SQLite file in the work dir, never the configured database
 * (MNEME_DATABASE_URL is ignored: an eval must not write into a team's store), unless `databaseUrl`
 * names a scratch PostgreSQL database on purpose (`--database-url`, to compare engines).
 */
function scratchConfig(base: Config, dataDir: string, databaseUrl: string | null): Config {
  return { ...base, dataDir, dbFile: path.join(dataDir, 'mneme.sqlite'), indexDir: path.join(dataDir, 'index'), databaseUrl };
}

/**
 * Runs the evaluation. `requestedMode` undefined: hybrid when an embedding model loads, else BM25
 * with a warning on stderr.
 * @throws ModelLoadError when dense/hybrid is requested and no embedding model can be loaded.
 * @throws ValidationError for a malformed dataset.
 */
export async function runEval(opts: {
  dataset: string;
  split: string;
  requestedMode: RetrievalMode | undefined;
  config: Config;
  workDir: string;
  io: CommandIo;
  /** A scratch PostgreSQL database to evaluate on instead of a scratch SQLite file. */
  databaseUrl?: string | undefined;
  /** Called with the store once opened, before the ingest (a benchmark's ablation: bench/beir-gate.ts). */
  tuneStore?: ((store: Store) => void) | undefined;
}): Promise<EvalResult & { passages: number; ingestSeconds: number; searchSeconds: number; model: string | null }> {
  const { io } = opts;
  const dataset = await loadBeirDataset(opts.dataset, opts.split);
  for (const w of dataset.warnings) io.stderr.write(`warning: ${w}\n`);
  const config = scratchConfig(opts.config, path.join(opts.workDir, 'data'), opts.databaseUrl ?? null);
  const lock = await acquireLock(config.dataDir, 'ingest', 'mneme eval');
  let store: Store | null = null;
  let stack: VectorStack = { embedder: null, index: null, warnings: [] };
  try {
    store = await openStore(config);
    opts.tuneStore?.(store);
    let mode: RetrievalMode = opts.requestedMode ?? 'hybrid';
    if (mode !== 'bm25') {
      stack = await openVectorStack(store, config);
      if (!stack.embedder) {
        const why = stack.warnings.join('; ');
        if (opts.requestedMode) {
          throw new ModelLoadError(`eval --mode ${mode} needs an embedding model (set MNEME_EMBED_MODEL, or use --mode bm25); ${why}`);
        }
        io.stderr.write(`warning: ${why}\nwarning: evaluating BM25 only\n`);
        mode = 'bm25';
      } else {
        for (const w of stack.warnings) io.stderr.write(`warning: ${w}\n`);
      }
    }

    const passagesDir = path.join(opts.workDir, 'passages');
    const { files, skipped } = writePassages(dataset, passagesDir);
    if (skipped > 0) io.stderr.write(`warning: ${skipped} passage(s) have neither title nor text and were skipped\n`);
    io.stderr.write(`eval: ingesting ${files.size} passages (${mode}) into ${config.dataDir}\n`);
    const summary = await runIngest({
      store,
      dataDir: config.dataDir,
      paths: [passagesDir],
      collection: EVAL_COLLECTION,
      // A reused work dir may hold passages of another dataset: drop what this one does not have.
      prune: true,
      maxFileBytes: config.maxFileBytes,
      // Already loaded (or deliberately none for bm25): the run must use exactly this stack.
      vectors: async () => stack,
      configuredModel: stack.embedder?.info.modelId ?? null,
    });
    if (summary.documents_failed > 0) {
      const first = summary.failed[0];
      io.stderr.write(`warning: ${summary.documents_failed} passage(s) could not be ingested${first ? ` (first: ${first.reason}: ${first.message})` : ''}\n`);
    }

    const passageOf = new Map<number, string>();
    for (const r of await store.corpus.chunkSources(EVAL_COLLECTION)) {
      const pid = files.get(r.sourceUri);
      if (pid !== undefined) passageOf.set(r.id, pid);
    }

    const started = performance.now();
    // The ingest above applied its own changes to the loaded index: it is current at the feed head.
    const { head } = await store.corpus.feedBounds();
    const retriever = new HybridRetriever({ store, embedder: stack.embedder, index: stack.index ? { ...stack.index, feedSeq: head } : null });
    const qids = [...dataset.queries.keys()];
    const texts = qids.map((q) => dataset.queries.get(q)!);
    // Embed all queries in one call: the embedder batches by length.
    const vectors = mode !== 'bm25' && stack.embedder ? await stack.embedder.embed(texts) : [];
    const runs = new Map<string, string[]>();
    for (const [i, qid] of qids.entries()) {
      const { candidates } = await retriever.candidates(texts[i]!, vectors[i] ?? null, { mode, bm25Limit: EVAL_CANDIDATES, denseLimit: EVAL_CANDIDATES });
      runs.set(qid, rankPassages(candidates, passageOf));
    }
    const searchSeconds = (performance.now() - started) / 1000;
    return {
      ...evaluateRuns(runs, dataset.qrels),
      mode,
      passages: files.size,
      ingestSeconds: summary.seconds,
      searchSeconds,
      model: stack.embedder?.info.modelId ?? null,
    };
  } finally {
    await stack.embedder?.close();
    await store?.close();
    lock.release();
  }
}

/** The option table of `mneme eval` (parsing and --help). */
export const EVAL_SPEC: CommandSpec = {
  name: 'eval',
  summary: 'measure retrieval quality (nDCG@10, Recall@100, MRR@10) on a BEIR-layout dataset with the product\'s own ingest and search',
  options: [
    { name: 'dataset', type: 'string', value: 'DIR', description: 'BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv); required' },
    { name: 'mode', type: 'string', value: 'bm25|dense|hybrid', description: 'retrieval mode (default: hybrid when an embedding model loads, else bm25)' },
    { name: 'split', type: 'string', value: 'NAME', default: 'test', description: 'qrels file to score against, without .tsv' },
    { name: 'work-dir', type: 'string', value: 'DIR', description: 'keep the scratch data dir here (re-runs only re-embed what changed); default: a temp dir, removed' },
    { name: 'database-url', type: 'string', value: 'URL', description: 'evaluate on this scratch PostgreSQL database (its eval collection is replaced) instead of a scratch SQLite file; MNEME_DATABASE_URL is never used' },
    { name: 'regression', type: 'boolean', default: false, description: 'instead of a dataset: score releases (hit@5, MRR@10) on the regression set built from the prediction log (rated answers), without the LLM' },
    { name: 'release', type: 'string', multiple: true, value: 'NAME', description: '--regression: the release to score (default: the live release and the candidate)' },
  ],
  examples: ['eval --dataset test/fixtures/beir/tiny --mode bm25', 'eval --regression --json', 'eval --dataset ~/beir/scifact --split test --work-dir /tmp/scifact --json'],
};

export const evalCommand: Command = {
  name: 'eval',
  usage: synopsis(EVAL_SPEC),
  specs: [EVAL_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(EVAL_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    if (opts.regression) return runRegressionEval(config, opts.release, opts.json, io);
    if (!opts.dataset) throw new ValidationError('eval: --dataset DIR is required (or --regression)');
    const dataset = opts.dataset;
    const keep = opts['work-dir'] !== undefined;
    const workDir = keep ? path.resolve(opts['work-dir']!) : fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-eval-'));
    fs.mkdirSync(workDir, { recursive: true });
    try {
      const r = await runEval({ dataset, split: opts.split, requestedMode: opts.mode, config, workDir, io, databaseUrl: opts['database-url'] });
      if (opts.json) {
        printJson(io.stdout, { 'ndcg@10': r['ndcg@10'], 'recall@100': r['recall@100'], 'mrr@10': r['mrr@10'], queries: r.queries, mode: r.mode });
      } else {
        const f = (x: number) => x.toFixed(4);
        io.stdout.write(
          `dataset     ${path.resolve(dataset)} (${r.passages} passages, split ${opts.split})\n` +
            `mode        ${r.mode}${r.model ? ` (${r.model})` : ''}\n` +
            `queries     ${r.queries}\n` +
            `nDCG@10     ${f(r['ndcg@10'])}\n` +
            `Recall@100  ${f(r['recall@100'])}\n` +
            `MRR@10      ${f(r['mrr@10'])}\n` +
            `time        ingest ${r.ingestSeconds.toFixed(2)} s, search ${r.searchSeconds.toFixed(2)} s` +
            ` (${r.queries > 0 ? ((r.searchSeconds * 1000) / r.queries).toFixed(2) : '0'} ms/query)\n` +
            (keep ? `work dir    ${workDir}\n` : ''),
        );
      }
      return 0;
    } finally {
      if (!keep) fs.rmSync(workDir, { recursive: true, force: true });
    }
  },
};
