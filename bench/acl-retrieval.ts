/**
 * Retrieval latency with a collection ACL filter (issue 14, item 4) vs no filter, same corpus and queries.
 *
 *   node --import tsx bench/acl-retrieval.ts [--chunks 100000] [--queries 500] [--dim 384] [--collections 10] [--clusters 1000] [--seed 1]
 *
 * Corpus: N chunks of DIM-d unit vectors around C cluster centres with ~80 words of text each (as
 * bench/retrieval.ts), documents of 10 chunks spread round-robin over K collections (col-0 … col-K-1;
 * every 500th document instead goes to the private collection "tiny" (0.2 %), every 100th (offset 49)
 * to "small" (1 %)),
 * so every topic cluster has chunks in every collection: a query's nearest neighbours and best BM25
 * hits are mostly in collections the user cannot read (the hard case for a filter). Rows go
 * straight through the SQLite schema; the HNSW index is built as `mneme reindex` builds it.
 * The user reads 1 collection of K (10 % at K = 10): every other collection is private without a
 * grant, so retrieval runs with excludeCollections = the K-1 others (what /v1/chat passes for them).
 *
 * Reports p50/p99 (ms) of BM25 search, dense search (HNSW, DENSE_CANDIDATES; as the retriever
 * chooses, forced to the filtered graph search, and the previous per-collection Set filter as a
 * baseline; the graph search's recall@10 against an exact scan of the admitted vectors) and hybrid
 * retrieval (topK 10), unfiltered vs filtered; then small scopes (the private collections "tiny",
 * 0.2 % of the corpus, and "small", 1 %, requested by name) searched by the filtered graph, by the
 * exact scan and as the retriever chooses (DENSE_EXACT_SCAN_MAX); the ratio filtered/unfiltered, the hits returned (a filter that
 * starves returns fewer than asked), a check that no returned chunk is outside the readable
 * collection, and the per-request cost of reading the user's scope (CollectionStore.accessOf).
 * Prints one JSON line on stdout; progress on stderr.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BM25_CANDIDATES, DENSE_CANDIDATES, DENSE_EXACT_SCAN_MAX, HybridRetriever } from '../src/chat/retrieve.ts';
import { collectionScope, excludedBy } from '../src/chat/access.ts';
import { nowIso } from '../src/core/clock.ts';
import { rebuildIndex } from '../src/commands/reindex.ts';
import { vectorToBlob } from '../src/core/store/sqlite/codec.ts';
import { openSqliteStore } from '../src/core/store/sqlite/index.ts';
import { HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, HNSW_M } from '../src/core/vector-index.ts';

const { values } = parseArgs({
  options: {
    chunks: { type: 'string', default: '100000' },
    queries: { type: 'string', default: '500' },
    dim: { type: 'string', default: '384' },
    collections: { type: 'string', default: '10' },
    clusters: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '1' },
  },
});
const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`);
  return n;
};
const N = int('chunks', values.chunks, 100);
const Q = int('queries', values.queries, 1);
const DIM = int('dim', values.dim, 2);
const K = int('collections', values.collections, 2);
const CLUSTERS = Math.min(int('clusters', values.clusters, 1), N);
const SEED = int('seed', values.seed, 0);

const VOCAB = 50_000;
const WORDS_PER_CHUNK = 80;
const TOPIC_WORDS = 20;
const TOPIC_SHARE = 0.3;
const CHUNKS_PER_DOC = 10;
const NOISE_NORM = 0.7;
const WARMUP_QUERIES = 30;
const BATCH = 5000;
const MODEL_ID = `bench-acl-${DIM}d`;
/** Every TINY_EVERY-th document goes to the private collection "tiny" (0.2 % of the corpus: 200 chunks at 100k), taken from col-(K-1). */
const TINY_EVERY = 500;
const TINY = 'tiny';
/** Queries whose filtered graph results are compared with the exact scan (its truth costs ~1 s a query at 10k admitted). */
const RECALL_QUERIES = 50;
/** Every SMALL_EVERY-th document (offset 49) goes to the private collection "small" (1 %: 1 000 chunks at 100k). */
const SMALL_EVERY = 100;
const SMALL = 'small';
const collectionOf = (d: number) => (d % TINY_EVERY === TINY_EVERY - 1 ? TINY : d % SMALL_EVERY === 49 ? SMALL : `col-${d % K}`);
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
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  for (let i = 0; i < v.length; i++) v[i]! /= n;
  return v;
}
const randomUnit = () => normalize(Float32Array.from({ length: DIM }, gauss));
const around = (c: Float32Array) => normalize(Float32Array.from(c, (x) => x + (NOISE_NORM / Math.sqrt(DIM)) * gauss()));
const SYL = 'ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo vu'.split(' ');
function word(i: number): string {
  let s = '';
  let n = i;
  do {
    s += SYL[n % SYL.length];
    n = Math.floor(n / SYL.length);
  } while (n > 0);
  return `${s}x`;
}
const vocab = Array.from({ length: VOCAB }, (_, i) => word(i));
/** Zipf(1) rank by inverse CDF (approximate: exp of a uniform over log ranks). */
const zipfRank = (min = 0) => Math.min(VOCAB - 1, Math.max(min, Math.floor(Math.exp(rand() * Math.log(VOCAB))) - 1));
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;
const stats = (xs: number[]) => ({ p50: round(pct(xs, 50)), p99: round(pct(xs, 99)) });

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-acl-'));
  try {
    const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
    const db = store.connection.db;
    const centers = Array.from({ length: CLUSTERS }, randomUnit);
    const topics = centers.map(() => Array.from({ length: TOPIC_WORDS }, () => vocab[200 + Math.floor(rand() * (VOCAB - 200))]!));
    const insertDoc = db.prepare("INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES (?, ?, ?, ?, 'text/plain', 0, ?, ?)");
    const insertChunk = db.prepare('INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (?, ?, ?, ?, ?, ?)');
    const insertVec = db.prepare('INSERT INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)');
    let t0 = performance.now();
    for (let start = 0; start < N; start += BATCH) {
      db.transaction(() => {
        let docId = 0;
        for (let i = start; i < Math.min(N, start + BATCH); i++) {
          const c = Math.floor(rand() * CLUSTERS);
          if (i % CHUNKS_PER_DOC === 0) {
            const d = i / CHUNKS_PER_DOC;
            docId = Number(insertDoc.run(collectionOf(d), `/bench/doc-${d}.txt`, `sha-${d}`, `${topics[c]![0]} notes`, nowIso(), nowIso()).lastInsertRowid);
          }
          const words: string[] = [];
          for (let w = 0; w < WORDS_PER_CHUNK; w++) words.push(rand() < TOPIC_SHARE ? topics[c]![Math.floor(rand() * TOPIC_WORDS)]! : vocab[zipfRank()]!);
          const id = Number(insertChunk.run(docId, i % CHUNKS_PER_DOC, words.join(' '), `part ${i % CHUNKS_PER_DOC}`, WORDS_PER_CHUNK, `h${i}`).lastInsertRowid);
          insertVec.run(id, MODEL_ID, vectorToBlob(around(centers[c]!)));
        }
      }).immediate();
    }
    await store.corpus.optimizeFullText();
    log(`inserted ${N} chunks in ${K} collections in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const meta = await store.corpus.createGeneration(
      { modelId: MODEL_ID, dimension: DIM, maxTokens: 256, pooling: 'mean', normalized: true, hnswM: HNSW_M, hnswEfConstruction: HNSW_EF_CONSTRUCTION, hnswEfSearch: HNSW_EF_SEARCH },
      'active',
    );
    t0 = performance.now();
    const built = await rebuildIndex(store, dir, meta, {});
    log(`hnsw built in ${((performance.now() - t0) / 1000).toFixed(1)} s (ef_search ${built.index!.efSearch})`);
    const { head } = await store.corpus.feedBounds();
    const retriever = new HybridRetriever({ store, embedder: null, index: { meta, hnsw: built.index!, feedSeq: head } });

    // The user: reads col-0 only (every other collection private, no grant).
    const user = await store.users.create({ name: 'bench', apiKeyHash: 'bench', keyPrefix: 'mn_bench', isAdmin: false, createdAt: nowIso() });
    for (let k = 1; k < K; k++) await store.collections.create({ name: `col-${k}`, visibility: 'private', createdBy: null, createdAt: nowIso() });
    await store.collections.create({ name: TINY, visibility: 'private', createdBy: null, createdAt: nowIso() });
    await store.collections.create({ name: SMALL, visibility: 'private', createdBy: null, createdAt: nowIso() });
    const exclude = excludedBy(await collectionScope(store, { id: user.id, isAdmin: false }));
    if (exclude?.length !== K + 1) throw new Error(`expected ${K + 1} hidden collections, got ${exclude?.length}`);
    const readable = new Set((await store.corpus.chunkIdsOfCollection('col-0')));
    log(`readable: ${readable.size} of ${N} chunks (${round((100 * readable.size) / N, 1)} %)`);

    const queries = Array.from({ length: Q + WARMUP_QUERIES }, () => {
      const c = Math.floor(rand() * CLUSTERS);
      const t = topics[c]!;
      const pick = () => t[Math.floor(rand() * TOPIC_WORDS)]!;
      return { text: `${pick()} ${pick()} ${pick()} ${vocab[zipfRank(100)]}`, vector: around(centers[c]!) };
    });
    let leaked = 0;
    const time = async (fn: (q: (typeof queries)[number]) => Promise<Array<{ chunkId: number }>>, filtered: boolean) => {
      const ms: number[] = [];
      let hits = 0;
      for (const [i, q] of queries.entries()) {
        const s = performance.now();
        const r = await fn(q);
        if (i < WARMUP_QUERIES) continue;
        ms.push(performance.now() - s);
        hits += r.length;
        if (filtered) leaked += r.filter((h) => !readable.has(h.chunkId)).length;
      }
      return { ...stats(ms), mean_hits: round(hits / Q, 1) };
    };
    const runs: Record<string, { unfiltered: Record<string, number>; filtered: Record<string, number>; ratio_p50: number; ratio_p99: number }> = {};
    const pair = async (name: string, fn: (q: (typeof queries)[number], ex: readonly string[] | undefined) => Promise<Array<{ chunkId: number }>>) => {
      log(`timing ${name}`);
      const unfiltered = await time((q) => fn(q, undefined), false);
      const filtered = await time((q) => fn(q, exclude), true);
      runs[name] = { unfiltered, filtered, ratio_p50: round(filtered.p50 / unfiltered.p50, 2), ratio_p99: round(filtered.p99 / unfiltered.p99, 2) };
    };
    await pair('bm25_search', (q, ex) => retriever.searchBm25(q.text, BM25_CANDIDATES, undefined, ex));
    await pair('dense_search', (q, ex) => retriever.searchDense(q.vector, DENSE_CANDIDATES, undefined, ex));
    // The two ways a scoped dense search can run, forced: the filtered graph search (O(1) ordinal
    // filter) and the exact scan of the admitted chunks' stored vectors; and the previous filter
    // (one Set of chunk ids per hidden collection, each tested per visited label) as a baseline.
    const graphOnly = new HybridRetriever({ store, embedder: null, index: { meta, hnsw: built.index!, feedSeq: head }, denseExactScanMax: 0 });
    const exactAlways = new HybridRetriever({ store, embedder: null, index: { meta, hnsw: built.index!, feedSeq: head }, denseExactScanMax: Number.MAX_SAFE_INTEGER, denseExactScanMaxShare: 1 });
    await pair('dense_search_forced_graph', (q, ex) => graphOnly.searchDense(q.vector, DENSE_CANDIDATES, undefined, ex));
    const hiddenSets = await Promise.all(exclude.map(async (c) => new Set(await store.corpus.chunkIdsOfCollection(c))));
    const setFilter = (label: number) => {
      for (const h of hiddenSets) if (h.has(label)) return false;
      return true;
    };
    await pair('dense_search_previous_set_filter', async (q, ex) => built.index!.search(q.vector, DENSE_CANDIDATES, ex ? setFilter : undefined).map((h) => ({ chunkId: h.label })));
    // Recall@10 of the filtered graph search against the exact scan (same scope).
    let agree = 0;
    for (const q of queries.slice(WARMUP_QUERIES, WARMUP_QUERIES + RECALL_QUERIES)) {
      const truth = new Set((await exactAlways.searchDense(q.vector, 10, undefined, exclude)).map((h) => h.chunkId));
      agree += (await graphOnly.searchDense(q.vector, 10, undefined, exclude)).filter((h) => truth.has(h.chunkId)).length;
    }
    const graphRecall10 = round(agree / (10 * Math.min(RECALL_QUERIES, Q)));
    // Small scopes (a private collection requested by an admin): graph vs exact, and the graph's recall.
    const smallScopes: Record<string, Record<string, unknown>> = {};
    for (const name of [TINY, SMALL]) {
      const ids = new Set(await store.corpus.chunkIdsOfCollection(name));
      log(`timing the ${name} scope (${ids.size} chunks)`);
      const out: Record<string, unknown> = { chunks: ids.size };
      for (const [how, r] of [['graph', graphOnly], ['exact', exactAlways], ['auto', retriever]] as const) {
        out[how] = await time(async (q) => {
          const hits = await r.searchDense(q.vector, DENSE_CANDIDATES, name);
          leaked += hits.filter((h) => !ids.has(h.chunkId)).length;
          return hits;
        }, false);
      }
      let agreeSmall = 0;
      for (const q of queries.slice(WARMUP_QUERIES, WARMUP_QUERIES + RECALL_QUERIES)) {
        const truth = new Set((await exactAlways.searchDense(q.vector, 10, name)).map((h) => h.chunkId));
        agreeSmall += (await graphOnly.searchDense(q.vector, 10, name)).filter((h) => truth.has(h.chunkId)).length;
      }
      out.graph_recall_at_10 = round(agreeSmall / (10 * Math.min(RECALL_QUERIES, Q)));
      smallScopes[name] = out;
    }
    await pair('hybrid_retrieve_top10', async (q, ex) => (await retriever.retrieveWithVector({ query: q.text, topK: 10, excludeCollections: ex }, q.vector)).chunks);
    const scopeMs: number[] = [];
    for (let i = 0; i < Q; i++) {
      const s = performance.now();
      await collectionScope(store, { id: user.id, isAdmin: false });
      scopeMs.push(performance.now() - s);
    }
    await store.close();
    const out = {
      chunks: N, dim: DIM, collections: K, readable_share: round(readable.size / N, 3), readable_chunks: readable.size, queries: Q,
      dense_exact_scan_max: DENSE_EXACT_SCAN_MAX, runs, filtered_graph_recall_at_10: graphRecall10, small_scopes: smallScopes, scope_read_ms: stats(scopeMs), leaked_chunks: leaked,
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
