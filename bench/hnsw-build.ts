/**
 * HNSW build choices side by side (issue 17 item 3): shard count × ef_construction, on the same
 * clustered vectors as bench/retrieval.ts, without SQLite. For each configuration: build wall time
 * and CPU time of all threads (the parallel build runs one worker thread per shard, as `mneme
 * reindex` does), open time, then recall@10 against an exact scan and dense search latency
 * (k = 10 and k = DENSE_CANDIDATES) at each ef of a ladder.
 *
 *   node --import tsx bench/hnsw-build.ts [--vectors 100000] [--dim 384] [--configs 1x200,1x100,2x100,2x200]
 *                                         [--queries 200] [--seed 1]
 *
 * A configuration is SHARDSxEF_CONSTRUCTION. On a shared machine the wall time depends on the
 * neighbours: CPU time / min(shards, cores) is what an idle machine takes. Prints one JSON line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DENSE_CANDIDATES } from '../src/chat/retrieve.ts';
import { buildShardedIndex } from '../src/core/hnsw-build.ts';
import { ShardedHnswIndex } from '../src/core/sharded-index.ts';
import { ExactTopK, HNSW_M } from '../src/core/vector-index.ts';

const { values } = parseArgs({
  options: {
    vectors: { type: 'string', default: '100000' },
    dim: { type: 'string', default: '384' },
    clusters: { type: 'string', default: '1000' },
    configs: { type: 'string', default: '1x200,1x100,2x100,2x200' },
    queries: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
  },
});
const N = Number(values.vectors);
const DIM = Number(values.dim);
const CLUSTERS = Number(values.clusters);
const Q = Number(values.queries);
const EF_LADDER = [16, 24, 32, 48, 64, 96, 128, 192];
const NOISE_NORM = 0.7;
const PAGE = 4096;
const log = (msg: string) => process.stderr.write(`[hnsw-build] ${msg}\n`);

let a = Number(values.seed) >>> 0;
function rand(): number {
  a = (a + 0x6d2b79f5) >>> 0;
  let t = a;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  for (let i = 0; i < v.length; i++) v[i]! /= n;
  return v;
}
const centers = Array.from({ length: CLUSTERS }, () => normalize(Float32Array.from({ length: DIM }, gauss)));
const around = (c: Float32Array) => normalize(Float32Array.from(c, (x) => x + (NOISE_NORM / Math.sqrt(DIM)) * gauss()));

// One flat buffer (N × DIM floats): the corpus, generated once for every configuration.
const corpus = new Float32Array(N * DIM);
for (let i = 0; i < N; i++) corpus.set(around(centers[Math.floor(rand() * CLUSTERS)]!), i * DIM);
const vectorAt = (i: number) => corpus.subarray(i * DIM, (i + 1) * DIM);
const queries = Array.from({ length: Q }, () => around(centers[Math.floor(rand() * CLUSTERS)]!));
log(`${N} × ${DIM}-d generated; exact neighbours of ${Q} queries`);
const exact = new ExactTopK(queries.map((vector) => ({ self: -1, vector })), 10);
for (let i = 0; i < N; i++) exact.add(i + 1, vectorAt(i));
const truth = exact.results().map((t) => new Set(t));

async function* pages(): AsyncGenerator<Array<[number, Float32Array]>> {
  for (let i = 0; i < N; i += PAGE) {
    const page: Array<[number, Float32Array]> = [];
    for (let j = i; j < Math.min(N, i + PAGE); j++) page.push([j + 1, vectorAt(j)]);
    yield page;
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return Math.round(s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! * 1000) / 1000;
}

async function run(shards: number, efConstruction: number): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-hnsw-build-'));
  try {
    const file = path.join(dir, 'hnsw.bin');
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await buildShardedIndex(file, pages(), { dimension: DIM, m: HNSW_M, efConstruction, shards, expected: N });
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const t1 = performance.now();
    const ix = ShardedHnswIndex.load(file, { dimension: DIM });
    const openS = (performance.now() - t1) / 1000;
    const ladder: Record<string, { recall_at_10: number; k10_p50_ms: number; k100_p50_ms: number; k100_p99_ms: number }> = {};
    for (const ef of EF_LADDER) {
      ix.setEfSearch(ef);
      let found = 0;
      const k10: number[] = [];
      const k100: number[] = [];
      queries.forEach((q, i) => {
        let s = performance.now();
        const hits = ix.search(q, 10);
        k10.push(performance.now() - s);
        for (const h of hits) if (truth[i]!.has(h.label)) found++;
        s = performance.now();
        ix.search(q, DENSE_CANDIDATES);
        k100.push(performance.now() - s);
      });
      ladder[ef] = { recall_at_10: Math.round((found / (Q * 10)) * 10_000) / 10_000, k10_p50_ms: pct(k10, 50), k100_p50_ms: pct(k100, 50), k100_p99_ms: pct(k100, 99) };
    }
    const result = { shards, ef_construction: efConstruction, build_wall_s: Math.round(wall * 10) / 10, build_cpu_s: Math.round(((cpu.user + cpu.system) / 1e6) * 10) / 10, open_s: Math.round(openS * 100) / 100, ladder };
    log(JSON.stringify(result));
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const c of values.configs.split(',')) {
  const [s, e] = c.split('x').map(Number);
  results.push(await run(s!, e!));
}
process.stdout.write(`${JSON.stringify({ bench: 'hnsw-build', vectors: N, dim: DIM, m: HNSW_M, cpus: os.availableParallelism(), load_avg_1m: Math.round(os.loadavg()[0]! * 100) / 100, results })}\n`);
