// One behavioural suite run against both VectorIndex implementations, plus the HNSW-only parts
// (capacity growth, slot reuse, save/load).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { VectorIndex } from '../../../src/core/vector-index.ts';
import { ExactVectorIndex, HnswVectorIndex } from '../../../src/core/vector-index.ts';
import { ShardedHnswIndex } from '../../../src/core/sharded-index.ts';

const DIM = 8;

/** Deterministic pseudo-random unit vectors (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function unit(v: number[]): Float32Array {
  const n = Math.hypot(...v) || 1;
  return Float32Array.from(v, (x) => x / n);
}

function randomVectors(n: number, seed = 1, dim = DIM): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => unit(Array.from({ length: dim }, () => r() * 2 - 1)));
}

/** Basis vector e_i (plus a small tilt so no two are identical). */
function axis(i: number, tilt = 0): Float32Array {
  const v = new Array<number>(DIM).fill(0);
  v[i % DIM] = 1;
  v[(i + 1) % DIM] = tilt;
  return unit(v);
}

const factories: Array<[string, (initialCapacity?: number) => VectorIndex]> = [
  ['HnswVectorIndex', (initialCapacity = 8) => HnswVectorIndex.create({ dimension: DIM, initialCapacity })],
  ['ExactVectorIndex', () => new ExactVectorIndex({ dimension: DIM })],
  // The product's layout: labels routed to shards by label % 3, every search merges the three.
  ['ShardedHnswIndex (3 shards)', (initialCapacity = 8) => ShardedHnswIndex.create({ dimension: DIM, initialCapacity, shards: 3 })],
];

for (const [name, make] of factories) {
  describe(`VectorIndex contract: ${name}`, () => {
    it('upsert / has / labels / size', () => {
      const ix = make();
      expect(ix.size()).toBe(0);
      expect(ix.labels()).toEqual([]);
      ix.upsert(5, axis(0));
      ix.upsert(9, axis(1));
      expect(ix.size()).toBe(2);
      expect(ix.has(5)).toBe(true);
      expect(ix.has(6)).toBe(false);
      expect(ix.labels().sort((a, b) => a - b)).toEqual([5, 9]);
    });

    it('search returns nearest first with cosine scores', () => {
      const ix = make();
      for (let i = 0; i < DIM; i++) ix.upsert(100 + i, axis(i));
      const hits = ix.search(axis(3, 0.2), 3);
      expect(hits[0]!.label).toBe(103);
      expect(hits[0]!.score).toBeCloseTo(1 / Math.hypot(1, 0.2), 5);
      expect(hits[1]!.label).toBe(104);
      expect(hits[1]!.score).toBeGreaterThan(hits[2]!.score);
      expect(hits).toHaveLength(3);
      expect(ix.search(axis(3), 100)).toHaveLength(DIM);
    });

    it('replace: upsert of an existing label moves it', () => {
      const ix = make();
      ix.upsert(1, axis(0));
      ix.upsert(2, axis(1));
      ix.upsert(1, axis(5));
      expect(ix.size()).toBe(2);
      expect(ix.search(axis(5), 1)[0]).toMatchObject({ label: 1 });
      expect(ix.search(axis(0, 0.3), 1)[0]!.label).toBe(2);
    });

    it('remove: gone from search, has, labels and size; removing twice is a no-op', () => {
      const ix = make();
      for (let i = 0; i < 4; i++) ix.upsert(i, axis(i));
      ix.remove(2);
      ix.remove(2);
      ix.remove(999);
      expect(ix.size()).toBe(3);
      expect(ix.has(2)).toBe(false);
      expect(ix.labels().sort()).toEqual([0, 1, 3]);
      expect(ix.search(axis(2), 4).map((h) => h.label)).not.toContain(2);
    });

    it('filter restricts candidates', () => {
      const ix = make();
      const vs = randomVectors(50, 7);
      vs.forEach((v, i) => ix.upsert(i, v));
      const hits = ix.search(vs[0]!, 10, (l) => l % 2 === 1);
      expect(hits).toHaveLength(10);
      expect(hits.every((h) => h.label % 2 === 1)).toBe(true);
      expect(ix.search(vs[0]!, 10, () => false)).toEqual([]);
      expect(ix.search(vs[0]!, 10, (l) => l === 3).map((h) => h.label)).toEqual([3]);
    });

    it('grows past its initial capacity', () => {
      const ix = make(8);
      const vs = randomVectors(100, 3);
      vs.forEach((v, i) => ix.upsert(i + 1, v));
      expect(ix.size()).toBe(100);
      for (const i of [0, 17, 63, 99]) expect(ix.search(vs[i]!, 1)[0]).toMatchObject({ label: i + 1 });
    });

    it('throws RangeError on a wrong dimension (upsert and search)', () => {
      const ix = make();
      expect(() => ix.upsert(1, new Float32Array(DIM + 1))).toThrow(RangeError);
      ix.upsert(1, axis(0));
      expect(() => ix.search(new Float32Array(DIM - 1), 1)).toThrow(RangeError);
    });

    it('agrees with brute force on random data', () => {
      const ix = make(16);
      const exact = new ExactVectorIndex({ dimension: DIM });
      const vs = randomVectors(300, 11);
      vs.forEach((v, i) => {
        ix.upsert(i, v);
        exact.upsert(i, v);
      });
      let found = 0;
      const queries = randomVectors(20, 99);
      for (const q of queries) {
        const truth = new Set(exact.search(q, 10).map((h) => h.label));
        found += ix.search(q, 10).filter((h) => truth.has(h.label)).length;
      }
      expect(found / (queries.length * 10)).toBeGreaterThanOrEqual(0.95);
    });
  });
}

describe('HnswVectorIndex specifics', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('grows geometrically, never to the exact size', () => {
    const ix = HnswVectorIndex.create({ dimension: DIM, initialCapacity: 8 });
    expect(ix.capacity()).toBe(8);
    randomVectors(100, 5).forEach((v, i) => ix.upsert(i, v));
    expect(ix.capacity()).toBeGreaterThanOrEqual(100);
    expect(ix.capacity()).not.toBe(100);
  });

  it('reuses deleted slots instead of growing', () => {
    const ix = HnswVectorIndex.create({ dimension: DIM, initialCapacity: 8 });
    const vs = randomVectors(12, 8);
    for (let i = 0; i < 8; i++) ix.upsert(i, vs[i]!);
    const cap = ix.capacity();
    ix.remove(2);
    ix.remove(5);
    ix.upsert(100, vs[8]!);
    ix.upsert(101, vs[9]!);
    expect(ix.capacity()).toBe(cap);
    expect(ix.size()).toBe(8);
    expect(ix.search(vs[8]!, 1)[0]).toMatchObject({ label: 100 });
    expect(ix.has(2)).toBe(false);
    // Replacing a live label (delete + re-add into the freed slot) does not grow either.
    ix.upsert(100, vs[10]!);
    expect(ix.capacity()).toBe(cap);
    expect(ix.search(vs[10]!, 1)[0]).toMatchObject({ label: 100 });
  });

  it('save + load round trip keeps vectors, and deleted labels stay deleted', () => {
    const ix = HnswVectorIndex.create({ dimension: DIM, initialCapacity: 8 });
    const vs = randomVectors(40, 21);
    vs.forEach((v, i) => ix.upsert(i, v));
    ix.remove(7);
    ix.remove(30);
    const file = path.join(dir, 'nested', 'index.bin');
    ix.save(file);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['index.bin']); // no temp file left behind
    const loaded = HnswVectorIndex.load(file, { dimension: DIM });
    expect(loaded.size()).toBe(38);
    expect(loaded.has(7)).toBe(false);
    expect(loaded.has(30)).toBe(false);
    expect(loaded.labels().sort((a, b) => a - b)).toEqual(ix.labels().sort((a, b) => a - b));
    for (const i of [0, 15, 39]) expect(loaded.search(vs[i]!, 1)[0]).toMatchObject({ label: i });
    expect(loaded.search(vs[7]!, 40).map((h) => h.label)).not.toContain(7);
    // The deleted slots are reused after load as well.
    const cap = loaded.capacity();
    loaded.upsert(500, vs[7]!);
    loaded.upsert(501, vs[30]!);
    expect(loaded.capacity()).toBe(cap);
    expect(loaded.size()).toBe(40);
  });

  it('load rejects a truncated or missing file and a wrong dimension', () => {
    const ix = HnswVectorIndex.create({ dimension: DIM });
    randomVectors(10, 2).forEach((v, i) => ix.upsert(i, v));
    const file = path.join(dir, 'dim.bin');
    ix.save(file);
    const loaded = HnswVectorIndex.load(file, { dimension: DIM });
    expect(() => loaded.upsert(99, new Float32Array(DIM * 2))).toThrow(RangeError);
    const truncated = path.join(dir, 'trunc.bin');
    fs.writeFileSync(truncated, Buffer.alloc(10));
    expect(() => HnswVectorIndex.load(truncated, { dimension: DIM })).toThrow(/truncated/);
    expect(() => HnswVectorIndex.load(path.join(dir, 'missing.bin'), { dimension: DIM })).toThrow();
  });
});
