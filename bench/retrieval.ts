/**
 * Retrieval latency and HNSW recall on a synthetic corpus.
 *
 *   node --import tsx bench/retrieval.ts [--chunks 100000] [--queries 1000] [--dim 384] [--clusters 1000]
 *                                        [--recall-queries 300] [--seed 1] [--threads CORES] [--shards N]
 *                                        [--ef-construction 100] [--keep DIR] [--plain-bm25] [--no-search-thread] [--no-fts-native] [--ab-fts-native]
 *                                        [--reuse DIR [--reuse-index]] [--bm25-only [--dump F] [--baseline F] [--dump-queries F]]
 *
 * Corpus: N chunks of 384-d unit vectors drawn around C Gaussian cluster centres, each with ~80 words
 * of text (70% from a Zipf-distributed 50k-word vocabulary, 30% from its cluster's 20 topic words),
 * inserted straight into a scratch data dir through the real schema (documents, chunks → FTS5
 * triggers, embeddings, index_meta). Vectors are generated and written page by page, never held
 * all at once. The index is then built exactly as `mneme reindex` builds it (rebuildIndex: stored
 * vectors streamed to one HNSW shard per worker thread, sharded files committed, loaded back,
 * ef_search calibrated): build, open and calibration times are reported.
 * Queries: a perturbed cluster centre as the vector (query embedding is excluded from the timings)
 * and 3 topic words + 1 mid-frequency word as text.
 *
 * Reports p50/p99 in ms of: BM25 search, dense search (HNSW, DENSE_CANDIDATES), BM25-only retrieval
 * (search + live check + loading texts, no vector) and hybrid retrieval (BM25 + dense + RRF +
 * hydration + near-duplicate removal), dense at the calibrated ef (the default a server uses); and
 * HNSW recall@10 of the bench queries against an exact scan of the stored vectors at the calibrated
 * ef, then at larger ef values until recall ≥ 0.99; the product's calibration as `calibration`; the
 * process's peak RSS (`peak_rss_mb`) and RSS/heap after each stage (`memory`), which says what
 * dominates (the HNSW shards are native memory, outside the JS heap).
 * With `--keep DIR` the data dir is moved to DIR instead of deleted, its model id being the one
 * bench/serve-memory.ts serves (so `mneme serve` can open it with that stand-in embedder).
 * Latencies are wall-clock per call after WARMUP_QUERIES untimed ones; on a shared machine p99 mostly
 * measures the neighbours (run it on an idle machine for release figures).
 * With `--postgres URL` (a scratch database; its mneme tables are filled), the same documents, vectors
 * and queries also go through the PostgreSQL engine (pgvector HNSW, tsvector full text), and the
 * JSON gets a `postgres` object with the same figures, in the same run.
 * Prints one JSON line on stdout; progress goes to stderr.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DENSE_CANDIDATES, BM25_CANDIDATES, HybridRetriever } from '../src/chat/retrieve.ts';
import { nowIso } from '../src/core/clock.ts';
import { openSqliteStore } from '../src/core/store/sqlite/index.ts';
import { vectorToBlob } from '../src/core/store/sqlite/codec.ts';
import { rebuildIndex } from '../src/commands/reindex.ts';
import { calibrateStoreSearch, createGeneration, indexFile, indexOptions } from '../src/core/index-store.ts';
import type { IndexGeneration } from '../src/core/index-store.ts';
import { shardCountFor, ShardedHnswIndex } from '../src/core/sharded-index.ts';
import { ExactTopK, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M } from '../src/core/vector-index.ts';
import { BENCH_EMBED_MODEL_ID } from './serve-memory.ts';
import { corpusWord } from './lib.ts';

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '100000' },
    queries: { type: 'string', default: '1000' },
    dim: { type: 'string', default: '384' },
    clusters: { type: 'string', default: '1000' },
    'recall-queries': { type: 'string', default: '300' },
    seed: { type: 'string', default: '1' },
    /** Cores for the HNSW build (one shard per core, each ≥ 50k vectors). */
    threads: { type: 'string', default: String(os.availableParallelism()) },
    /** Shard count forced (default: as `mneme reindex` chooses it for --threads). */
    shards: { type: 'string' },
    'ef-construction': { type: 'string', default: String(HNSW_EF_CONSTRUCTION) },
    /** Keep the data dir here (moved) for bench/serve-memory.ts. */
    keep: { type: 'string' },
    /** A data dir this bench seeded before (same --chunks/--seed/…): its rows are reused, not written again. */
    reuse: { type: 'string' },
    /** With --reuse: open the index a previous run of this bench built and calibrated in that dir instead of building one (build figures are then null). */
    'reuse-index': { type: 'boolean', default: false },
    /** Only the full-text figures (BM25 search, BM25-only retrieval): no HNSW build. */
    'bm25-only': { type: 'boolean', default: false },
    /** With --bm25-only: write each query's BM25 top 10 here (JSON), to compare a change against with --baseline. */
    dump: { type: 'string' },
    /** With --bm25-only: write the timed queries' texts here (JSON), for experiments on a kept data dir. */
    'dump-queries': { type: 'string' },
    /** With --bm25-only: a --dump file of the same queries; reports the top-10 overlap with it. */
    baseline: { type: 'string' },
    /** Every BM25 search as one plain FTS5 query (no MaxScore split, src/core/store/sqlite/bm25-split.ts): the figures before it. */
    'plain-bm25': { type: 'boolean', default: false },
    /** The pair cover's row threshold (bm25-split.ts COVER_MIN_ROWS; 'off': never), for comparing values: the calling thread's connection only, so use it with --no-search-thread. */
    'cover-min-rows': { type: 'string' },
    /** Full-text searches on the calling thread instead of a reader thread (serve's MNEME_SEARCH_THREAD=false; implied by --plain-bm25). */
    'no-search-thread': { type: 'boolean', default: false },
    /** Rank with FTS5's bm25() instead of mneme's FTS5 extension (serve's MNEME_FTS_NATIVE=0), on every connection. */
    'no-fts-native': { type: 'boolean', default: false },
    /**
     * One more timed phase: hybrid retrieval with the extension and with bm25(), a second store (own
     * connection and reader thread) for the latter, the two taking turns query by query (which goes
     * first alternates), so both see the same machine: `hybrid_ab_ms`.
     */
    'ab-fts-native': { type: 'boolean', default: false },
    /** A scratch PostgreSQL database (emptied first): the same corpus, queries and vectors on the PostgreSQL engine. */
    postgres: { type: 'string' },
  },
});
const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`);
  return n;
};
const N = int('chunks', values.chunks, 10);
const Q = int('queries', values.queries, 1);
const DIM = int('dim', values.dim, 2);
const CLUSTERS = Math.min(int('clusters', values.clusters, 1), N);
const RECALL_Q = Math.min(int('recall-queries', values['recall-queries'], 1), Q);
const SEED = int('seed', values.seed, 0);
const THREADS = int('threads', values.threads, 1);
const SHARDS = values.shards === undefined ? shardCountFor(N, THREADS) : int('shards', values.shards, 1);
const EF_CONSTRUCTION = int('ef-construction', values['ef-construction'], 4);

/** Vocabulary size and Zipf exponent of the synthetic text. */
const VOCAB = 50_000;
const ZIPF_S = 1.0;
const WORDS_PER_CHUNK = 80;
const TOPIC_WORDS = 20;
const TOPIC_SHARE = 0.3;
const CHUNKS_PER_DOC = 10;
/** Norm of the Gaussian noise added to a cluster centre (centre norm 1) before normalizing. */
const NOISE_NORM = 0.7;
const WARMUP_QUERIES = 50;
const EF_LADDER = [16, 24, 32, 48, HNSW_EF_SEARCH, 96, 128, 192, 256, 400];
const RECALL_TARGET = 0.99;
const MODEL_ID = values.keep || values.reuse ? BENCH_EMBED_MODEL_ID : `bench-random-${DIM}d`;
/** Stored vectors read per page by the exact scan. */
const EXACT_PAGE = 4096;

const MB = 1024 * 1024;
/** RSS now (VmRSS), peak (VmHWM) and the JS heap, in MB. */
function memory(): { rss_mb: number; hwm_mb: number; heap_used_mb: number; external_mb: number } {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  const m = process.memoryUsage();
  return { rss_mb: Math.round(kb('VmRSS') / 1024), hwm_mb: Math.round(kb('VmHWM') / 1024), heap_used_mb: Math.round(m.heapUsed / MB), external_mb: Math.round(m.external / MB) };
}

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(SEED);
function gauss(): number {
  // Box-Muller; 1 - rand() avoids log(0).
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}
function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const n = Math.sqrt(s) || 1;
  for (let i = 0; i < v.length; i++) v[i]! /= n;
  return v;
}
function randomUnit(): Float32Array {
  return normalize(Float32Array.from({ length: DIM }, gauss));
}
function around(center: Float32Array): Float32Array {
  const sigma = NOISE_NORM / Math.sqrt(DIM);
  return normalize(Float32Array.from(center, (c) => c + sigma * gauss()));
}

const vocab = Array.from({ length: VOCAB }, (_, i) => corpusWord(i));
const zipfCdf = (() => {
  const w = Array.from({ length: VOCAB }, (_, i) => 1 / (i + 1) ** ZIPF_S);
  const total = w.reduce((a, b) => a + b, 0);
  const cdf = new Float64Array(VOCAB);
  let acc = 0;
  w.forEach((x, i) => (cdf[i] = acc += x / total));
  return cdf;
})();
function zipfRank(minRank = 0): number {
  for (;;) {
    const u = rand();
    let lo = 0;
    let hi = VOCAB - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (zipfCdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= minRank) return lo;
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const stats = (xs: number[]) => ({ p50: round(pct(xs, 50)), p99: round(pct(xs, 99)), mean: round(xs.reduce((a, b) => a + b, 0) / xs.length) });
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

async function main() {
  const dir = values.reuse ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-'));
  // Reusing a seeded dir: the generator still runs (same random stream, so the same queries), nothing is written.
  const seeding = values.reuse === undefined;
  try {
    log(`scratch data dir ${dir}; ${N} chunks × ${DIM}-d, ${CLUSTERS} clusters, ${Q} queries`);
    const store = openSqliteStore(path.join(dir, 'mneme.sqlite'), { ftsNative: !values['no-fts-native'] });
    const ftsNative = store.connection.fts.loaded;
    log(`ranking: ${store.connection.fts.loaded ? 'mneme_bm25 (FTS5 extension)' : `bm25() (${store.connection.fts.reason})`}`);
    if (values['plain-bm25']) store.corpus.bm25SplitMinRows = null;
    if (values['cover-min-rows'] !== undefined) store.corpus.bm25CoverMinRows = values['cover-min-rows'] === 'off' ? null : int('cover-min-rows', values['cover-min-rows'], 0);
    // Seeding writes rows straight through the engine's schema (triggers fill FTS5 and the feed): a
    // bench of retrieval, not of ingestion.
    const db = store.connection.db;
    const centers = Array.from({ length: CLUSTERS }, randomUnit);
    const topics = centers.map(() => Array.from({ length: TOPIC_WORDS }, () => vocab[200 + Math.floor(rand() * (VOCAB - 200))]!));

    // ---- SQLite + FTS5 + embeddings
    let t0 = performance.now();
    const insertDoc = db.prepare(
      "INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES ('bench', ?, ?, ?, 'text/plain', 0, ?, ?)",
    );
    const insertChunk = db.prepare('INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (?, ?, ?, ?, ?, ?)');
    const insertVec = db.prepare('INSERT INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)');
    // Only the PostgreSQL comparison needs the corpus in memory (it replays it through its engine).
    const keepCorpus = values.postgres !== undefined;
    const vectors: Float32Array[] = keepCorpus ? new Array(N) : [];
    const texts: string[] = keepCorpus ? new Array(N) : [];
    const docTitles: string[] = [];
    const BATCH = 5000;
    for (let start = 0; start < N; start += BATCH) {
      const batch = () => {
        let docId = 0;
        for (let i = start; i < Math.min(N, start + BATCH); i++) {
          const c = Math.floor(rand() * CLUSTERS);
          if (i % CHUNKS_PER_DOC === 0) {
            const now = nowIso();
            const title = `${topics[c]![0]} ${topics[c]![1]} notes`;
            if (keepCorpus) docTitles.push(title);
            docId = seeding ? Number(insertDoc.run(`/bench/doc-${i / CHUNKS_PER_DOC}.txt`, `sha-${i}`, title, now, now).lastInsertRowid) : 0;
          }
          const words: string[] = [];
          for (let w = 0; w < WORDS_PER_CHUNK; w++) {
            words.push(rand() < TOPIC_SHARE ? topics[c]![Math.floor(rand() * TOPIC_WORDS)]! : vocab[zipfRank()]!);
          }
          const v = around(centers[c]!);
          if (seeding) {
            const id = Number(insertChunk.run(docId, i % CHUNKS_PER_DOC, words.join(' '), `${topics[c]![2]} > part ${i % CHUNKS_PER_DOC}`, WORDS_PER_CHUNK, `h${i}`).lastInsertRowid);
            insertVec.run(id, MODEL_ID, vectorToBlob(v));
          }
          if (keepCorpus) {
            vectors[i] = v;
            texts[i] = words.join(' ');
          }
        }
      };
      if (seeding) db.transaction(batch).immediate();
      else batch();
      if ((start / BATCH) % 20 === 0) log(`sqlite: ${Math.min(N, start + BATCH)} chunks`);
    }
    const sqliteSeconds = (performance.now() - t0) / 1000;
    log(`sqlite+fts insert ${sqliteSeconds.toFixed(1)} s`);
    // FTS5 merged as an ingest leaves it (optimize after bulk ingests).
    t0 = performance.now();
    if (seeding) await store.corpus.optimizeFullText();
    const ftsOptimizeSeconds = (performance.now() - t0) / 1000;
    const mem: Record<string, ReturnType<typeof memory>> = { after_insert: memory() };
    if (values['bm25-only']) {
      await bm25Only(store, topics, mem, sqliteSeconds, seeding);
      keepDir(dir);
      return;
    }

    // ---- HNSW: built, committed, loaded and calibrated exactly as `mneme reindex` does it.
    const previous = values['reuse-index'] && !seeding ? await store.corpus.activeGeneration() : null;
    if (values['reuse-index'] && previous?.calibration == null) throw new Error('--reuse-index: the --reuse dir has no calibrated index of an earlier run');
    // A reused data dir keeps the index of its first run: retired, so this run builds its own.
    if (!seeding && !previous) db.prepare("UPDATE index_meta SET status = 'retired' WHERE status = 'active'").run();
    const meta =
      previous ??
      (await store.corpus.createGeneration(
        { modelId: MODEL_ID, dimension: DIM, maxTokens: 256, pooling: 'mean', normalized: true, hnswM: HNSW_M, hnswEfConstruction: EF_CONSTRUCTION, hnswEfSearch: HNSW_EF_SEARCH },
        'active',
      ));
    log(previous ? `hnsw: opening generation ${meta.generation}` : `hnsw: building ${SHARDS} shard(s) on ${THREADS} core(s), M ${HNSW_M}, ef_construction ${EF_CONSTRUCTION}`);
    t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const built = previous ? openBuilt(dir, previous) : await rebuildIndex(store, dir, meta, { shards: SHARDS });
    // CPU of every thread of the process (the shard workers included): on a shared machine the wall
    // time depends on the neighbours, CPU / min(shards, cores) is what an idle machine would take.
    const cpu = process.cpuUsage(cpu0);
    const rebuildCpuSeconds = (cpu.user + cpu.system) / 1e6;
    const rebuildSeconds = (performance.now() - t0) / 1000;
    const hnsw = built.index!;
    const calibration = (await store.corpus.activeGeneration())!.calibration;
    const calibrationSeconds = rebuildSeconds - built.buildSeconds - built.loadSeconds;
    mem.after_build = memory();
    log(`hnsw build ${built.buildSeconds.toFixed(1)} s, open ${built.loadSeconds.toFixed(2)} s, calibration ef ${calibration?.ef} recall@10 ${calibration?.recall} in ${calibrationSeconds.toFixed(1)} s`);
    const efDefault = hnsw.efSearch;

    t0 = performance.now();
    const { head } = await store.corpus.feedBounds();
    // As `mneme serve` runs by default (MNEME_SEARCH_THREAD): FTS5 on a reader thread, the graph
    // search on this one meanwhile.
    if (!values['no-search-thread'] && !values['plain-bm25']) {
      store.startReader();
      if (!(await store.readerReady())) throw new Error('the reader thread did not start');
    }
    const retriever = new HybridRetriever({ store, embedder: null, index: { meta, hnsw, feedSeq: head } });
    const retrieverInitSeconds = (performance.now() - t0) / 1000;

    // ---- Queries
    const queries = Array.from({ length: Q + WARMUP_QUERIES }, () => {
      const c = Math.floor(rand() * CLUSTERS);
      const t = topics[c]!;
      const pick = () => t[Math.floor(rand() * TOPIC_WORDS)]!;
      return { text: `${pick()} ${pick()} ${pick()} ${vocab[zipfRank(100)]}`, vector: around(centers[c]!) };
    });
    const time = async (fn: (q: (typeof queries)[number]) => unknown) => {
      for (const q of queries.slice(0, WARMUP_QUERIES)) await fn(q);
      const out: number[] = [];
      for (const q of queries.slice(WARMUP_QUERIES)) {
        const s = performance.now();
        await fn(q);
        out.push(performance.now() - s);
      }
      return out;
    };
    log('timing bm25 search');
    const bm25Search = await time((q) => retriever.searchBm25(q.text, BM25_CANDIDATES));
    log(`timing dense search at the calibrated ef ${efDefault}`);
    const denseSearch = await time((q) => retriever.searchDense(q.vector, DENSE_CANDIDATES));
    log('timing bm25-only retrieval');
    const bm25Retrieve = await time((q) => retriever.retrieveWithVector({ query: q.text, topK: 10 }, null));
    log('timing hybrid retrieval');
    let hybridReturned = 0;
    const stages = { bm25_ms: 0, dense_ms: 0, fuse_ms: 0 };
    const hybridRetrieve = await time(async (q) => {
      const r = await retriever.retrieveWithVector({ query: q.text, topK: 10 }, q.vector);
      hybridReturned += r.chunks.length;
      stages.bm25_ms += r.timings.bm25_ms;
      stages.dense_ms += r.timings.dense_ms;
      stages.fuse_ms += r.timings.fuse_ms;
    });
    // Issue 13 added a document-level full-text list to hybrid retrieval: the same queries without it.
    log('timing hybrid retrieval without the document-level list');
    const noDocList = new HybridRetriever({ store, embedder: null, index: { meta, hnsw, feedSeq: head }, documentCandidates: 0 });
    const hybridNoDocList = await time((q) => noDocList.retrieveWithVector({ query: q.text, topK: 10 }, q.vector));
    noDocList.close();
    const hybridAb = values['ab-fts-native'] ? await timeAb(dir, queries.slice(WARMUP_QUERIES), (store2) => new HybridRetriever({ store: store2, embedder: null, index: { meta, hnsw, feedSeq: head } }), retriever, !values['no-search-thread']) : null;
    mem.after_queries = memory();

    // ---- Recall@10 vs an exact scan of the stored vectors (paged: no copy of the corpus)
    log(`exact search for ${RECALL_Q} queries`);
    const recallQueries = queries.slice(WARMUP_QUERIES, WARMUP_QUERIES + RECALL_Q);
    t0 = performance.now();
    const exact = new ExactTopK(recallQueries.map((q) => ({ self: -1, vector: q.vector })), 10);
    for (let after = 0; ; ) {
      const page = await store.corpus.embeddingsPage(MODEL_ID, after, EXACT_PAGE);
      if (page.length === 0) break;
      for (const [id, v] of page) exact.add(id, v);
      after = page[page.length - 1]![0];
    }
    const truth = exact.results().map((t) => new Set(t));
    const exactMs = (performance.now() - t0) / RECALL_Q;
    const recallAt = () => {
      let found = 0;
      recallQueries.forEach((q, i) => {
        for (const h of hnsw.search(q.vector, 10)) if (truth[i]!.has(h.label)) found++;
      });
      return found / (RECALL_Q * 10);
    };
    const recall: Record<string, number> = {};
    const denseAtEf: Record<string, { p50: number; p99: number; mean: number }> = {};
    let efNeeded: number | null = null;
    for (const ef of [efDefault, ...EF_LADDER.filter((e) => e > efDefault)]) {
      hnsw.setEfSearch(ef);
      recall[ef] = round(recallAt(), 4);
      denseAtEf[ef] = stats(
        recallQueries.map((q) => {
          const s = performance.now();
          hnsw.search(q.vector, DENSE_CANDIDATES);
          return performance.now() - s;
        }),
      );
      log(`ef=${ef}: recall@10 ${recall[ef]}, dense p50 ${denseAtEf[ef]!.p50} ms`);
      if (recall[ef]! >= RECALL_TARGET) {
        efNeeded = ef;
        break;
      }
    }
    hnsw.setEfSearch(efDefault);
    mem.end = memory();
    const paths = await store.corpus.searchPaths();
    const searchThread = await store.readerReady();
    await store.close();
    const postgres = values.postgres ? await benchPostgres(values.postgres, { texts, vectors, docTitles, queries, truth, recallQueries, time }) : undefined;

    const out = {
      bench: 'retrieval',
      fts_native: ftsNative,
      chunks: N,
      dim: DIM,
      clusters: CLUSTERS,
      queries: Q,
      recall_queries: RECALL_Q,
      node: process.version,
      cpus: os.availableParallelism(),
      load_avg_1m: round(os.loadavg()[0]!, 2),
      sqlite_insert_s: round(sqliteSeconds, 1),
      fts_optimize_s: round(ftsOptimizeSeconds, 1),
      hnsw: { m: HNSW_M, ef_construction: EF_CONSTRUCTION, shards: built.shards, threads: THREADS },
      reused_index: previous !== null,
      hnsw_build_s: previous ? null : round(built.buildSeconds, 1),
      hnsw_open_s: round(built.loadSeconds, 2),
      hnsw_rebuild_total_s: round(rebuildSeconds, 1),
      hnsw_rebuild_cpu_s: round(rebuildCpuSeconds, 1),
      retriever_init_ms: round(retrieverInitSeconds * 1000, 1),
      calibration: calibration ? { ef: calibration.ef, recall_at_10: calibration.recall, seconds: round(calibrationSeconds, 1) } : null,
      ef_search: efDefault,
      recall_at_10_default: recall[efDefault],
      peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
      memory: mem,
      bm25_search_ms: stats(bm25Search),
      dense_search_ms: stats(denseSearch),
      bm25_retrieve_ms: stats(bm25Retrieve),
      hybrid_retrieve_ms: stats(hybridRetrieve),
      hybrid_stage_mean_ms: {
        bm25: round(stages.bm25_ms / (Q + WARMUP_QUERIES)),
        dense: round(stages.dense_ms / (Q + WARMUP_QUERIES)),
        fuse_hydrate_dedupe: round(stages.fuse_ms / (Q + WARMUP_QUERIES)),
      },
      hybrid_without_document_list_ms: stats(hybridNoDocList),
      hybrid_ab_ms: hybridAb && { fts_native: stats(hybridAb.native), bm25: stats(hybridAb.bm25) },
      search_thread: searchThread,
      bm25_paths: paths.chunks,
      bm25_document_paths: paths.documents,
      hybrid_avg_returned: round(hybridReturned / (Q + WARMUP_QUERIES), 2),
      recall_at_10: recall,
      dense_ms_at_ef: denseAtEf,
      ef_for_recall_0_99: efNeeded,
      exact_search_ms: round(exactMs, 1),
      ...(postgres ? { postgres } : {}),
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
    keepDir(dir);
  } finally {
    if (seeding) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** --reuse-index: the calibrated index of an earlier run, opened as rebuildIndex would return it (no build time). */
function openBuilt(dir: string, meta: IndexGeneration): Awaited<ReturnType<typeof rebuildIndex>> {
  const t0 = performance.now();
  const index = ShardedHnswIndex.load(indexFile(dir, meta), indexOptions(meta));
  index.setEfSearch(meta.calibration!.ef);
  return { vectors: index.size(), index, shards: index.shardCount, buildSeconds: 0, loadSeconds: (performance.now() - t0) / 1000 };
}

/**
 * --ab-fts-native: hybrid retrieval through `native` (this run's retriever, extension loaded) and
 * through a retriever on a second store ranking with bm25(), turn about per query, after one untimed
 * pass over the queries for each (so both have their frequency caches and the extension its sizes).
 */
async function timeAb(
  dir: string,
  queries: Array<{ text: string; vector: Float32Array }>,
  make: (store: ReturnType<typeof openSqliteStore>) => HybridRetriever,
  native: HybridRetriever,
  reader: boolean,
): Promise<{ native: number[]; bm25: number[] }> {
  log('timing hybrid retrieval, mneme_bm25 and bm25() taking turns');
  const store2 = openSqliteStore(path.join(dir, 'mneme.sqlite'), { ftsNative: false });
  if (reader) {
    store2.startReader();
    if (!(await store2.readerReady())) throw new Error('the second reader thread did not start');
  }
  const plain = make(store2);
  const out = { native: [] as number[], bm25: [] as number[] };
  for (const q of queries) await plain.retrieveWithVector({ query: q.text, topK: 10 }, q.vector);
  for (const [i, q] of queries.entries()) {
    for (const which of i % 2 === 0 ? (['native', 'bm25'] as const) : (['bm25', 'native'] as const)) {
      const s = performance.now();
      await (which === 'native' ? native : plain).retrieveWithVector({ query: q.text, topK: 10 }, q.vector);
      out[which].push(performance.now() - s);
    }
  }
  plain.close();
  await store2.close();
  return out;
}

/** With --keep: the seeded data dir moved there (a --reuse dir stays where it is). */
function keepDir(dir: string): void {
  if (!values.keep || values.reuse !== undefined) return;
  fs.rmSync(values.keep, { recursive: true, force: true });
  fs.renameSync(dir, values.keep);
  log(`data dir kept at ${values.keep} (model ${MODEL_ID})`);
}

/** `--bm25-only`: the full-text figures on the seeded corpus (no HNSW), same queries as a full run. */
async function bm25Only(store: ReturnType<typeof openSqliteStore>, topics: string[][], mem: Record<string, ReturnType<typeof memory>>, sqliteSeconds: number, seeded: boolean): Promise<void> {
  const retriever = new HybridRetriever({ store, embedder: null, index: null });
  const clusterOf: number[] = [];
  const queries = Array.from({ length: Q + WARMUP_QUERIES }, () => {
    const c = Math.floor(rand() * CLUSTERS);
    clusterOf.push(c);
    const t = topics[c]!;
    const pick = () => t[Math.floor(rand() * TOPIC_WORDS)]!;
    return `${pick()} ${pick()} ${pick()} ${vocab[zipfRank(100)]}`;
  });
  const time = async (fn: (q: string) => unknown) => {
    for (const q of queries.slice(0, WARMUP_QUERIES)) await fn(q);
    const out: number[] = [];
    for (const q of queries.slice(WARMUP_QUERIES)) {
      const s = performance.now();
      await fn(q);
      out.push(performance.now() - s);
    }
    return out;
  };
  if (values['dump-queries']) fs.writeFileSync(values['dump-queries'], JSON.stringify(queries.slice(WARMUP_QUERIES)));
  log('timing bm25 search');
  const bm25Search = await time((q) => retriever.searchBm25(q, BM25_CANDIDATES));
  log('timing bm25-only retrieval');
  const bm25Retrieve = await time((q) => retriever.retrieveWithVector({ query: q, topK: 10 }, null));
  // Quality proxy: the share of each query's BM25 top 10 from the query's own cluster (its chunks'
  // heading path starts with the cluster's third topic word), and the overlap with --baseline.
  const top10: number[][] = [];
  let onTopic = 0;
  let listed = 0;
  for (const [i, q] of queries.slice(WARMUP_QUERIES).entries()) {
    const ids = (await retriever.searchBm25(q, 10)).map((h) => h.chunkId);
    top10.push(ids);
    const prefix = `${topics[clusterOf[i + WARMUP_QUERIES]!]![2]} >`;
    for (const r of await store.corpus.chunkRecords(ids)) if (r.headingPath.startsWith(prefix)) onTopic++;
    listed += ids.length;
  }
  if (values.dump) fs.writeFileSync(values.dump, JSON.stringify(top10));
  let overlap: number | null = null;
  if (values.baseline) {
    const base = JSON.parse(fs.readFileSync(values.baseline, 'utf8')) as number[][];
    let shared = 0;
    let total = 0;
    top10.forEach((ids, i) => {
      const b = new Set(base[i] ?? []);
      shared += ids.filter((id) => b.has(id)).length;
      total += Math.max(b.size, ids.length);
    });
    overlap = total === 0 ? null : round(shared / total);
  }
  retriever.close();
  mem.end = memory();
  const bm25Paths = { ...store.corpus.bm25Paths };
  await store.close();
  const out = {
    bench: 'retrieval',
    mode: 'bm25-only',
    fts_native: store.connection.fts.loaded,
    chunks: N,
    queries: Q,
    load_avg_1m: round(os.loadavg()[0]!, 2),
    ...(seeded ? { sqlite_insert_s: round(sqliteSeconds, 1) } : { reused: values.reuse }),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    memory: mem,
    bm25_search_ms: stats(bm25Search),
    bm25_retrieve_ms: stats(bm25Retrieve),
    bm25_top10_on_topic: listed === 0 ? null : round(listed === 0 ? 0 : onTopic / listed),
    bm25_top10_overlap_with_baseline: overlap,
    bm25_paths: bm25Paths,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

interface PgInput {
  texts: string[];
  vectors: Float32Array[];
  docTitles: string[];
  queries: Array<{ text: string; vector: Float32Array }>;
  truth: Array<Set<number>>;
  recallQueries: Array<{ text: string; vector: Float32Array }>;
  time: (fn: (q: { text: string; vector: Float32Array }) => unknown) => Promise<number[]>;
}

/** The same corpus through the PostgreSQL engine: insert, index build, search and recall figures. */
async function benchPostgres(url: string, d: PgInput): Promise<Record<string, unknown>> {
  const { openPostgresStore } = await import('../src/core/store/postgres/index.ts');
  const pgStore = await openPostgresStore(url);
  try {
    if ((await pgStore.corpus.feedBounds()).head > 0) throw new Error(`--postgres ${url}: use an empty scratch database`);
    log('postgres: inserting documents, chunks, vectors');
    let t0 = performance.now();
    // Chunk ids follow insertion order from 1, as in the SQLite file: truth sets (SQLite labels) carry over.
    for (let doc = 0; doc * CHUNKS_PER_DOC < N; doc++) {
      const chunks = [];
      for (let i = doc * CHUNKS_PER_DOC; i < Math.min(N, (doc + 1) * CHUNKS_PER_DOC); i++) {
        chunks.push({ ord: i % CHUNKS_PER_DOC, text: d.texts[i]!, headingPath: `part ${i % CHUNKS_PER_DOC}`, tokenCount: WORDS_PER_CHUNK, contentSha256: `h${i}`, vector: d.vectors[i] });
      }
      const title = d.docTitles[doc] ?? 'notes';
      await pgStore.corpus.replaceDocument({ collection: 'bench', sourceUri: `/bench/doc-${doc}.txt`, contentSha256: `sha-${doc}`, title, kind: 'text/plain', bytes: 0 }, chunks, null, MODEL_ID);
      if (doc % 2000 === 0) log(`postgres: ${doc * CHUNKS_PER_DOC} chunks`);
    }
    const insertSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    // Created after the rows: pgvector builds the HNSW index in bulk.
    const meta = await createGeneration(pgStore, { modelId: MODEL_ID, dimension: DIM, maxTokens: 256, pooling: 'mean', normalized: true }, 'active');
    const indexSeconds = (performance.now() - t0) / 1000;
    log(`postgres: insert ${insertSeconds.toFixed(1)} s, hnsw index ${indexSeconds.toFixed(1)} s`);
    // As an ingest's end does: statistics (else the planner scans instead of using the index), then
    // pgvector's ef_search calibrated, searchVector's default from then on.
    t0 = performance.now();
    await pgStore.corpus.optimizeFullText();
    const analyzeSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const calibration = await calibrateStoreSearch(pgStore, meta);
    const calibrationSeconds = (performance.now() - t0) / 1000;
    log(`postgres: calibrated ef ${calibration?.ef} (recall@10 ${calibration?.recall} on stored vectors) in ${calibrationSeconds.toFixed(1)} s`);
    const retriever = new HybridRetriever({ store: pgStore, embedder: null, index: { meta, hnsw: null, feedSeq: 0 }, syncIntervalMs: 60_000 });
    const bm25Search = await d.time((q) => retriever.searchBm25(q.text, BM25_CANDIDATES));
    const denseSearch = await d.time((q) => retriever.searchDense(q.vector, DENSE_CANDIDATES));
    const hybridRetrieve = await d.time((q) => retriever.retrieveWithVector({ query: q.text, topK: 10 }, q.vector));
    let foundAtDefault = 0;
    for (const [i, q] of d.recallQueries.entries()) {
      for (const h of await pgStore.corpus.searchVector(MODEL_ID, q.vector, { limit: 10 })) if (d.truth[i]!.has(h.chunkId)) foundAtDefault++;
    }
    const recall: Record<string, number> = {};
    for (const ef of EF_LADDER) {
      let found = 0;
      for (const [i, q] of d.recallQueries.entries()) {
        for (const h of await pgStore.corpus.searchVector(MODEL_ID, q.vector, { limit: 10, efSearch: ef })) if (d.truth[i]!.has(h.chunkId)) found++;
      }
      recall[ef] = round(found / (d.recallQueries.length * 10), 4);
      log(`postgres ef=${ef}: recall@10 ${recall[ef]}`);
      if (recall[ef]! >= RECALL_TARGET) break;
    }
    return {
      insert_s: round(insertSeconds, 1),
      hnsw_index_s: round(indexSeconds, 1),
      analyze_s: round(analyzeSeconds, 1),
      calibration: calibration ? { ef: calibration.ef, recall_at_10: calibration.recall, seconds: round(calibrationSeconds, 1) } : null,
      recall_at_10_default: round(foundAtDefault / (d.recallQueries.length * 10), 4),
      bm25_search_ms: stats(bm25Search),
      dense_search_ms: stats(denseSearch),
      hybrid_retrieve_ms: stats(hybridRetrieve),
      recall_at_10: recall,
    };
  } finally {
    await pgStore.close();
  }
}

await main();
