/**
 * The quality gate of the lexical speed-ups (issue 17): `mneme eval --mode bm25` on a BEIR-layout set
 * as the product runs it (query terms pruned by document frequency, pair cover / split, mneme_bm25)
 * and with plain BM25 (every term searched, one FTS5 query each), on the SQLite engine. The pruning
 * is the one lossy lever; the others are exact (their tests compare them with the plain query).
 *
 *   node --import tsx bench/beir-gate.ts DATASET_DIR [--split test]
 *
 * DATASET_DIR: test/fixtures/beir/tiny, or a public set (bench/beir-manpages.ts builds one from
 * Debian's man pages). Prints one JSON line: both runs' nDCG@10 / Recall@100 / MRR@10 and the
 * differences (gate: nDCG@10 may not drop by more than 0.005).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { runEval } from '../src/commands/eval.ts';
import { loadConfig } from '../src/core/config.ts';
import type { Store } from '../src/core/store/index.ts';
import { SqliteCorpusStore } from '../src/core/store/sqlite/corpus.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { split: { type: 'string', default: 'test' } } });
if (positionals[0] === undefined) throw new Error('usage: bench/beir-gate.ts DATASET_DIR [--split test]');
const dataset: string = positionals[0];
const round = (x: number) => Math.round(x * 10_000) / 10_000;
const stderr = new Writable({ write: (_c, _e, cb) => cb() });

async function run(label: string, tune: (store: Store) => void) {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-gate-'));
  try {
    // The embedded default engine, whatever this shell's MNEME_DATABASE_URL says.
    const config = loadConfig({ ...process.env, MNEME_DATABASE_URL: undefined, MNEME_OFFLINE: '1' }, { dataDir: path.join(workDir, 'unused') });
    const r = await runEval({ dataset, split: values.split!, requestedMode: 'bm25', config, workDir, io: { stdout: process.stdout, stderr, env: process.env, isTty: false }, tuneStore: tune });
    process.stderr.write(`[gate] ${label}: nDCG@10 ${round(r['ndcg@10'])}, ${r.queries} queries, search ${r.searchSeconds.toFixed(1)} s\n`);
    return { 'ndcg@10': round(r['ndcg@10']), 'recall@100': round(r['recall@100']), 'mrr@10': round(r['mrr@10']), queries: r.queries, passages: r.passages, search_ms_per_query: round((r.searchSeconds * 1000) / r.queries) };
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

const sqliteCorpus = (store: Store): SqliteCorpusStore => {
  if (!(store.corpus instanceof SqliteCorpusStore)) throw new Error('bench/beir-gate.ts: the SQLite engine only');
  return store.corpus;
};
const product = await run('product (pruned terms, cover, split)', (store) => void sqliteCorpus(store));
const plain = await run('plain BM25 (every term, one query)', (store) => {
  const corpus = sqliteCorpus(store);
  corpus.pruneQueryTerms = false;
  corpus.bm25SplitMinRows = null;
});
process.stdout.write(
  `${JSON.stringify({
    bench: 'beir-gate',
    dataset: path.resolve(dataset),
    product,
    plain,
    delta_ndcg_at_10: round(product['ndcg@10'] - plain['ndcg@10']),
    delta_mrr_at_10: round(product['mrr@10'] - plain['mrr@10']),
    gate_ok: product['ndcg@10'] - plain['ndcg@10'] >= -0.005,
  })}\n`,
);
