// The sharded HNSW layout (ShardedHnswIndex, buildShardedIndex): save/load, the legacy single file,
// atomicity of a save killed at any point, the parallel worker build, and the product paths that
// use it (rebuild + calibration, change-feed patching, doctor). The behavioural VectorIndex suite
// runs against a 3-shard index in vector-index.test.ts.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { diagnose } from '../../../src/commands/doctor.ts';
import { rebuildIndex } from '../../../src/commands/reindex.ts';
import { buildShardedIndex } from '../../../src/core/hnsw-build.ts';
import { indexFile, loadIndex, saveIndex } from '../../../src/core/index-store.ts';
import { IndexSyncer } from '../../../src/core/index-sync.ts';
import { manifestPath, readManifest, shardCountFor, shardK, ShardedHnswIndex, HNSW_MIN_VECTORS_PER_SHARD } from '../../../src/core/sharded-index.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { ExactVectorIndex, HnswVectorIndex } from '../../../src/core/vector-index.ts';
import { REPO, tempDir } from '../../helpers/cli.ts';

const DIM = 16;

function rng(seed: number): () => number {
  let s = seed;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
}
function vectors(n: number, seed: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const v = Float32Array.from({ length: DIM }, () => r() - 0.5);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const filesIn = (dir: string) => fs.readdirSync(dir).sort();

describe('ShardedHnswIndex on disk', () => {
  it('save + load round trip: labels, deleted labels, ef and searches survive; only the manifest and one file per shard remain', () => {
    const dir = tempDir();
    const file = path.join(dir, 'index', 'hnsw-g1.bin');
    const vs = vectors(300, 1);
    const ix = ShardedHnswIndex.create({ dimension: DIM, shards: 3, initialCapacity: 64 });
    vs.forEach((v, i) => ix.upsert(i + 1, v));
    for (const gone of [5, 6, 7, 100]) ix.remove(gone);
    ix.save(file);
    expect(filesIn(path.dirname(file))).toHaveLength(4);
    for (const f of filesIn(path.dirname(file))) expect(fs.statSync(path.join(path.dirname(file), f)).mode & 0o777).toBe(0o600);
    const m = readManifest(file);
    expect(m.shards.map((s) => s.vectors)).toEqual([99, 98, 99]);
    expect(sorted(m.shards.flatMap((s) => s.deleted))).toEqual([5, 6, 7, 100]);

    const loaded = ShardedHnswIndex.load(file, { dimension: DIM, efSearch: 40 });
    expect(loaded.shardCount).toBe(3);
    expect(loaded.efSearch).toBe(40);
    expect(loaded.size()).toBe(296);
    expect(sorted(loaded.labels())).toEqual(sorted(ix.labels()));
    expect(loaded.has(6)).toBe(false);
    for (const i of [0, 150, 299]) expect(loaded.search(vs[i]!, 1)[0]).toMatchObject({ label: i + 1 });
    expect(loaded.search(vs[5]!, 300).map((h) => h.label)).not.toContain(6);
    // Deleted slots are reused after load (capacity unchanged).
    const cap = loaded.capacity();
    loaded.upsert(6, vs[5]!);
    expect(loaded.capacity()).toBe(cap);
    expect(loaded.search(vs[5]!, 1)[0]).toMatchObject({ label: 6 });
  });

  it('a filter runs in every shard: k hits of the allowed labels come back, merged best first', () => {
    const ix = ShardedHnswIndex.create({ dimension: DIM, shards: 4 });
    const vs = vectors(400, 3);
    vs.forEach((v, i) => ix.upsert(i, v));
    const exact = new ExactVectorIndex({ dimension: DIM });
    vs.forEach((v, i) => exact.upsert(i, v));
    const allowed = (l: number) => l % 10 === 3; // spread over all four shards
    const hits = ix.search(vs[17]!, 10, allowed);
    expect(hits).toHaveLength(10);
    expect(hits.every((h) => allowed(h.label))).toBe(true);
    for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
    expect(hits.map((h) => h.label)).toEqual(exact.search(vs[17]!, 10, allowed).map((h) => h.label));
  });

  it('a legacy single-file index opens as one shard; the next save writes the sharded layout and removes it', async () => {
    const dir = tempDir();
    const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
    try {
      const meta = await store.corpus.createGeneration({ modelId: 'm', dimension: DIM, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 100, hnswEfSearch: 64 }, 'active');
      const file = indexFile(dir, meta);
      const legacy = HnswVectorIndex.create({ dimension: DIM });
      vectors(50, 2).forEach((v, i) => legacy.upsert(i + 1, v));
      legacy.remove(3);
      legacy.save(file); // the pre-sharding format
      const { index, loadedFromFile, problem } = loadIndex(dir, meta);
      expect({ loadedFromFile, problem, shards: index.shardCount, size: index.size(), has3: index.has(3) }).toEqual({ loadedFromFile: true, problem: null, shards: 1, size: 49, has3: false });
      await saveIndex(store, dir, meta, index);
      expect(fs.existsSync(file)).toBe(false);
      expect(fs.existsSync(manifestPath(file))).toBe(true);
      expect(loadIndex(dir, meta).index.size()).toBe(49);
      // An unreadable manifest is reported, and the caller rebuilds from the store.
      fs.writeFileSync(manifestPath(file), '{"version": 99}');
      expect(loadIndex(dir, meta).problem).toMatch(/version 99/);
    } finally {
      await store.close();
    }
  });

  it('a save killed before its manifest leaves the previous index in force; the next save removes the orphans', () => {
    const dir = tempDir();
    const file = path.join(dir, 'hnsw-g2.bin');
    const vs = vectors(60, 4);
    const ix = ShardedHnswIndex.create({ dimension: DIM, shards: 2 });
    vs.slice(0, 30).forEach((v, i) => ix.upsert(i, v));
    ix.save(file);
    const before = filesIn(dir);
    // What a kill between the shard writes and the manifest rename leaves: new shard files, a temp manifest.
    vs.slice(30).forEach((v, i) => ix.upsert(30 + i, v));
    fs.writeFileSync(path.join(dir, 'hnsw-g2.bin.s0-zz-1-0.bin'), 'half a shard');
    fs.writeFileSync(`${manifestPath(file)}.tmp-12345`, '{"vers');
    expect(ShardedHnswIndex.load(file, { dimension: DIM }).size()).toBe(30);
    ix.save(file);
    const after = filesIn(dir);
    expect(after.filter((f) => f.endsWith('.bin'))).toHaveLength(2);
    expect(after.some((f) => before.includes(f) && f.endsWith('.bin'))).toBe(false);
    expect(ShardedHnswIndex.load(file, { dimension: DIM }).size()).toBe(60);
  });

  it('kill -9 while saving in a loop: the index on disk always loads whole (one of the saved states)', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'hnsw-g3.bin');
    const script = path.join(dir, 'saver.ts');
    const mod = (p: string) => JSON.stringify(path.join(REPO, p));
    fs.writeFileSync(
      script,
      `import { ShardedHnswIndex } from ${mod('src/core/sharded-index.ts')};
const dim = ${DIM};
const ix = ShardedHnswIndex.create({ dimension: dim, shards: 3, initialCapacity: 30000 });
let label = 0;
for (let round = 0; ; round++) {
  for (let i = 0; i < 2000; i++) ix.upsert(label++, Float32Array.from({ length: dim }, (_, j) => Math.sin(label * 0.37 + j)));
  ix.save(${JSON.stringify(file)});
  process.stdout.write(label + '\\n');
}
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // Let a few saves complete, then kill at an arbitrary point of a later one.
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (out.split('\n').filter(Boolean).length >= 3) {
          clearInterval(t);
          setTimeout(resolve, 37);
        }
      }, 5);
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const saved = out.split('\n').filter(Boolean).map(Number);
    const loaded = ShardedHnswIndex.load(file, { dimension: DIM });
    // The state on disk is the last save reported, or the one after it (killed after its rename, before its print).
    expect([saved[saved.length - 1], saved[saved.length - 1]! + 2000]).toContain(loaded.size());
    expect(loaded.shardCount).toBe(3);
  }, 60_000);
});

describe('parallel build (worker threads)', () => {
  it("each shard is asked for its share of the top k (binomial mean + 3 sigma): the merged top 100 is the full merge's", () => {
    expect(shardK(100, 1)).toBe(100);
    expect(shardK(100, 2)).toBe(65);
    expect(shardK(100, 4)).toBe(38);
    expect(shardK(10, 2)).toBe(10); // small k: every shard is asked for all of it
    const shards = 2;
    const ix = ShardedHnswIndex.create({ dimension: DIM, shards, efSearch: 200 });
    const vs = vectors(4000, 11);
    vs.forEach((v, i) => ix.upsert(i, v));
    const exact = new ExactVectorIndex({ dimension: DIM });
    vs.forEach((v, i) => exact.upsert(i, v));
    const qs = vectors(60, 12);
    let found = 0;
    for (const q of qs) {
      const got = ix.search(q, 100);
      expect(got).toHaveLength(100);
      const truth = new Set(exact.search(q, 100).map((h) => h.label));
      found += got.filter((h) => truth.has(h.label)).length;
    }
    // ef 200 on 2,000 vectors a shard is close to exact: what is missed would be the shard-share cut.
    expect(found / (qs.length * 100)).toBeGreaterThanOrEqual(0.995);
  });

  it('shard count: one per core, never below HNSW_MIN_VECTORS_PER_SHARD vectors a shard', () => {
    expect(shardCountFor(10, 4)).toBe(1);
    expect(shardCountFor(HNSW_MIN_VECTORS_PER_SHARD * 2, 4)).toBe(2);
    expect(shardCountFor(1_000_000, 2)).toBe(2);
    expect(shardCountFor(1_000_000, 1)).toBe(1);
  });

  it('two workers build the shards from streamed pages; the result matches the input and replaces the old index at commit', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'index', 'hnsw-g4.bin');
    const old = ShardedHnswIndex.create({ dimension: DIM });
    old.upsert(999_999, vectors(1, 9)[0]!);
    old.save(file);
    const vs = vectors(3000, 5);
    async function* pages() {
      for (let i = 0; i < vs.length; i += 512) yield vs.slice(i, i + 512).map((v, j): [number, Float32Array] => [i + j + 1, v]);
    }
    const built = await buildShardedIndex(file, pages(), { dimension: DIM, m: 16, efConstruction: 100, shards: 2, expected: vs.length });
    expect(built).toMatchObject({ vectors: 3000, shards: 2 });
    const ix = ShardedHnswIndex.load(file, { dimension: DIM, efSearch: 64 });
    expect(ix.shardCount).toBe(2);
    expect(ix.size()).toBe(3000);
    expect(ix.has(999_999)).toBe(false);
    expect(filesIn(path.dirname(file))).toHaveLength(3);
    // Shard i holds exactly the labels ≡ i (mod 2): adding and removing after load route the same way.
    for (const i of [0, 1, 1500, 2999]) expect(ix.search(vs[i]!, 1)[0]).toMatchObject({ label: i + 1 });
    const exact = new ExactVectorIndex({ dimension: DIM });
    vs.forEach((v, i) => exact.upsert(i + 1, v));
    let found = 0;
    for (const q of vectors(30, 77)) {
      const truth = new Set(exact.search(q, 10).map((h) => h.label));
      found += ix.search(q, 10).filter((h) => truth.has(h.label)).length;
    }
    expect(found / 300).toBeGreaterThanOrEqual(0.95);
  }, 60_000);

  it('rebuildIndex (mneme reindex) builds 2 shards, calibrates; the change feed patches them; doctor agrees; a save/load keeps the patches', async () => {
    const dir = tempDir();
    const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
    try {
      const meta = await store.corpus.createGeneration({ modelId: 'm', dimension: DIM, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 100, hnswEfSearch: 64 }, 'active');
      const vs = vectors(1200, 6);
      const doc = (name: string, from: number, n: number) =>
        store.corpus.replaceDocument(
          { collection: 'c', sourceUri: `/${name}`, contentSha256: name, title: name, kind: 'text/plain', bytes: 1 },
          vs.slice(from, from + n).map((vector, ord) => ({ ord, text: `chunk ${name} ${ord}`, headingPath: '', tokenCount: 3, contentSha256: `${name}-${ord}`, vector })),
          null,
          'm',
        );
      await doc('a', 0, 600);
      const b = await doc('b', 600, 500);
      const r = await rebuildIndex(store, dir, meta, { shards: 2 });
      expect(r).toMatchObject({ vectors: 1100, shards: 2 });
      const active = (await store.corpus.activeGeneration())!;
      expect(active.calibration?.recall).toBeGreaterThanOrEqual(0.99);
      expect((await diagnose(store, dir)).counts).toMatchObject({ index_vectors: 1100, index_shards: 2 });

      // A server: load, then follow the feed (a new document, a removed one).
      const { index } = loadIndex(dir, active);
      expect(index.efSearch).toBe(active.calibration!.ef);
      const syncer = new IndexSyncer({ store, index: { meta: active, hnsw: index }, appliedSeq: active.savedFeedSeq! });
      await doc('c', 1100, 100);
      await store.corpus.deleteDocument(b.documentId);
      await syncer.catchUp();
      expect(index.size()).toBe(700);
      await saveIndex(store, dir, active, index, syncer.appliedSeq);
      const report = await diagnose(store, dir);
      expect(report.problems).toEqual([]);
      expect(report.counts).toMatchObject({ index_vectors: 700, index_shards: 2 });
      const reloaded = loadIndex(dir, active).index;
      expect(sorted(reloaded.labels())).toEqual(sorted(index.labels()));
    } finally {
      await store.close();
    }
  }, 120_000);
});
