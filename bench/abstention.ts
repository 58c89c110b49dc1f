/**
 * Abstention calibration (issue 13, item 2): for every question of bench/pgdoc-questions.json, the
 * key-term coverage that src/chat/evidence.ts computes from a BM25 retrieval over an ingested
 * PostgreSQL manual, and how many on-topic / off-topic questions abstain at several thresholds.
 *
 *   apt-get download postgresql-doc-15 && dpkg-deb -x postgresql-doc-15*.deb x
 *   MNEME_EMBED_MODEL=none npx mneme ingest x/usr/share/doc/postgresql-doc-15/html --data-dir /tmp/pgdata
 *   npx tsx bench/abstention.ts /tmp/pgdata [--verbose]
 */
import fs from 'node:fs';
import path from 'node:path';
import { HybridRetriever } from '../src/chat/retrieve.ts';
import { assessEvidence, uncoveredTerms } from '../src/chat/evidence.ts';
import { loadConfig } from '../src/core/config.ts';
import { openSqliteStore } from '../src/core/store/sqlite/index.ts';

const THRESHOLDS = [0.5, 0.6, 0.65, 0.7];
const TOP_K = 6;

async function main(): Promise<void> {
  const dataDir = process.argv[2];
  if (!dataDir) throw new Error('usage: abstention.ts DATA_DIR [--verbose]');
  const config = loadConfig({ MNEME_EMBED_MODEL: 'none', MNEME_DATA_DIR: dataDir });
  const store = openSqliteStore(config.dbFile);
  const retriever = new HybridRetriever({ store, embedder: null, index: null, syncIntervalMs: 0 });
  const set = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'pgdoc-questions.json'), 'utf8')) as { on_topic: Array<{ q: string }>; off_topic: Array<{ q: string } | string> };
  const questions = [...set.on_topic.map((x) => ({ q: x.q, on: true })), ...set.off_topic.map((x) => ({ q: typeof x === 'string' ? x : x.q, on: false }))];
  const rows: Array<{ q: string; on: boolean; coverage: number; covered: string[]; absent: string[]; terms: string[] }> = [];
  for (const { q, on } of questions) {
    const chunks = (await retriever.retrieve({ query: q, topK: TOP_K })).chunks;
    const first = assessEvidence(q, chunks, { minCoverage: 0 });
    const absent = new Set<string>();
    for (const t of uncoveredTerms(first)) if ((await store.corpus.searchText(t, { limit: 1 })).length === 0) absent.add(t);
    const e = assessEvidence(q, chunks, { minCoverage: 0 }, absent);
    rows.push({ q, on, coverage: e.coverage, covered: e.covered, absent: e.absent, terms: e.terms });
  }
  const on = rows.filter((r) => r.on);
  const off = rows.filter((r) => !r.on);
  for (const t of THRESHOLDS) {
    console.log(`min_coverage ${t}: on-topic abstain ${on.filter((r) => r.coverage < t).length}/${on.length}, off-topic abstain ${off.filter((r) => r.coverage < t).length}/${off.length}`);
  }
  if (process.argv.includes('--verbose')) for (const r of rows) console.log(r.on ? 'on ' : 'off', r.coverage.toFixed(2), r.q, JSON.stringify({ covered: r.covered, absent: r.absent, terms: r.terms }));
  await store.close();
}

await main();
