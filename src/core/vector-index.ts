/**
 * Vector indexes keyed by integer labels (= chunk ids). Two implementations share one interface and
 * one test suite: HnswVectorIndex (hnswlib-node, approximate, the product default) and
 * ExactVectorIndex (brute force; the ground truth for recall measurements and tiny corpora).
 * Vectors are expected L2-normalized; scores are cosine similarities (higher is better).
 */
import fs from 'node:fs';
import path from 'node:path';
import hnswlib from 'hnswlib-node';

/** HNSW graph degree. 16 is hnswlib's recommended default for 384-d text embeddings. */
export const HNSW_M = 16;
/**
 * Build-time candidate list size of new generations. 100 (was 200) halves the build time; the
 * per-generation ef_search calibration compensates at query time (bench/README.md "Retrieval at a
 * million chunks" has the recall/latency cost). A generation keeps the value it was created with.
 */
export const HNSW_EF_CONSTRUCTION = 100;
/** Query-time candidate list size (measured recall@10 ≥ 0.99 at 100k, see bench/README.md). */
export const HNSW_EF_SEARCH = 64;
/** Initial capacity in vectors; grows geometrically by HNSW_GROWTH_FACTOR, never to the exact size. */
export const HNSW_INITIAL_CAPACITY = 1024;
export const HNSW_GROWTH_FACTOR = 2;
/** Fixed seed so a rebuild from the same data gives the same graph. */
export const HNSW_RANDOM_SEED = 100;

export interface VectorHit {
  label: number;
  /** Cosine similarity in [-1, 1]. */
  score: number;
}

export interface VectorIndex {
  readonly dimension: number;
  /** Number of live (not deleted) vectors. */
  size(): number;
  has(label: number): boolean;
  /** Inserts or replaces the vector of `label`. @throws RangeError on a wrong dimension. */
  upsert(label: number, vector: Float32Array): void;
  /** Removes `label` if present (no-op otherwise). */
  remove(label: number): void;
  /** Live labels, unordered. */
  labels(): number[];
  /** Up to `k` nearest live vectors, best first; `filter` restricts candidates. */
  search(query: Float32Array, k: number, filter?: (label: number) => boolean): VectorHit[];
}

/** A VectorIndex whose query-time candidate list (ef_search) can be tuned: HNSW, single or sharded. */
export interface TunableVectorIndex extends VectorIndex {
  readonly efSearch: number;
  /** @throws RangeError unless a positive integer. */
  setEfSearch(ef: number): void;
}

function checkDim(expected: number, v: Float32Array): void {
  if (v.length !== expected) throw new RangeError(`vector has ${v.length} dimensions, index has ${expected}`);
}

/** Brute-force cosine search over an in-memory map. O(n·d) per query. */
export class ExactVectorIndex implements VectorIndex {
  readonly dimension: number;
  private readonly vectors = new Map<number, Float32Array>();

  constructor(options: { dimension: number }) {
    this.dimension = options.dimension;
  }
  size(): number {
    return this.vectors.size;
  }
  has(label: number): boolean {
    return this.vectors.has(label);
  }
  upsert(label: number, vector: Float32Array): void {
    checkDim(this.dimension, vector);
    this.vectors.set(label, Float32Array.from(vector));
  }
  remove(label: number): void {
    this.vectors.delete(label);
  }
  labels(): number[] {
    return [...this.vectors.keys()];
  }
  search(query: Float32Array, k: number, filter?: (label: number) => boolean): VectorHit[] {
    checkDim(this.dimension, query);
    const hits: VectorHit[] = [];
    const qn = norm(query);
    for (const [label, v] of this.vectors) {
      if (filter && !filter(label)) continue;
      let dot = 0;
      for (let i = 0; i < v.length; i++) dot += v[i]! * query[i]!;
      hits.push({ label, score: dot / (qn * norm(v) || 1) });
    }
    hits.sort((a, b) => b.score - a.score || a.label - b.label);
    return hits.slice(0, k);
  }
}

function norm(v: Float32Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}

export interface HnswOptions {
  dimension: number;
  m?: number;
  efConstruction?: number;
  efSearch?: number;
  initialCapacity?: number;
}

/**
 * hnswlib-node wrapper. Deleted slots are reused (allowReplaceDeleted), capacity doubles when full,
 * `save` is atomic (temp file, fsync, rename). Not thread-safe: one JS thread owns it.
 */
export class HnswVectorIndex implements TunableVectorIndex {
  readonly dimension: number;
  readonly m: number;
  readonly efConstruction: number;
  private ef: number;
  private index: hnswlib.HierarchicalNSW;
  /** Live labels; hnswlib keeps deleted labels in getIdsList until their slot is reused. */
  private readonly live = new Set<number>();
  /** Labels marked deleted whose slot is not yet reused (they still count against capacity). */
  private deleted = 0;

  private constructor(options: HnswOptions, index: hnswlib.HierarchicalNSW) {
    this.dimension = options.dimension;
    this.m = options.m ?? HNSW_M;
    this.efConstruction = options.efConstruction ?? HNSW_EF_CONSTRUCTION;
    this.ef = options.efSearch ?? HNSW_EF_SEARCH;
    this.index = index;
  }

  /** Query-time candidate list size (searches for k > ef use k). */
  get efSearch(): number {
    return this.ef;
  }

  /** Changes the query-time candidate list size from the next search on. @throws RangeError unless a positive integer. */
  setEfSearch(ef: number): void {
    if (!Number.isInteger(ef) || ef < 1) throw new RangeError(`ef_search must be a positive integer, got ${ef}`);
    this.ef = ef;
    this.index.setEf(ef);
  }

  /** An empty index. */
  static create(options: HnswOptions): HnswVectorIndex {
    const index = new hnswlib.HierarchicalNSW('cosine', options.dimension);
    const self = new HnswVectorIndex(options, index);
    index.initIndex(options.initialCapacity ?? HNSW_INITIAL_CAPACITY, self.m, self.efConstruction, HNSW_RANDOM_SEED, true);
    index.setEf(self.efSearch);
    return self;
  }

  /**
   * Loads a saved index. Labels whose vectors were soft-deleted before the save are not counted as
   * live: `deleted` lists them when the caller recorded them at save time (the sharded layout's
   * manifest does); otherwise each label is probed (hnswlib's getPoint throws for a deleted one),
   * which costs one JS array of `dimension` numbers per vector.
   * @throws Error when the file is missing, truncated or of another dimension.
   */
  static load(file: string, options: HnswOptions, deleted?: readonly number[]): HnswVectorIndex {
    const index = new hnswlib.HierarchicalNSW('cosine', options.dimension);
    // hnswlib aborts the process on some truncated files instead of throwing: check the size first.
    const st = fs.statSync(file);
    if (st.size < 64) throw new Error(`index file ${file} is truncated (${st.size} bytes)`);
    index.readIndexSync(file, true);
    index.setEf(options.efSearch ?? HNSW_EF_SEARCH);
    const self = new HnswVectorIndex(options, index);
    if (deleted) {
      const gone = new Set(deleted);
      for (const label of index.getIdsList()) {
        if (gone.has(label)) self.deleted++;
        else self.live.add(label);
      }
      return self;
    }
    for (const label of index.getIdsList()) {
      try {
        index.getPoint(label);
        self.live.add(label);
      } catch {
        self.deleted++;
      }
    }
    return self;
  }

  size(): number {
    return this.live.size;
  }
  has(label: number): boolean {
    return this.live.has(label);
  }
  labels(): number[] {
    return [...this.live];
  }
  capacity(): number {
    return this.index.getMaxElements();
  }
  /** Labels marked deleted whose slot is not reused yet (what a save must record for a fast load). */
  deletedLabels(): number[] {
    if (this.deleted === 0) return [];
    return this.index.getIdsList().filter((l) => !this.live.has(l));
  }

  upsert(label: number, vector: Float32Array): void {
    checkDim(this.dimension, vector);
    if (this.live.has(label)) {
      // Replacing in place keeps stale graph links; delete + re-add is the correct update.
      this.remove(label);
    }
    const reuse = this.deleted > 0;
    if (!reuse && this.index.getCurrentCount() >= this.index.getMaxElements()) {
      this.index.resizeIndex(Math.max(HNSW_INITIAL_CAPACITY, Math.ceil(this.index.getMaxElements() * HNSW_GROWTH_FACTOR)));
    }
    // hnswlib-node takes plain arrays only.
    this.index.addPoint(Array.from(vector), label, reuse);
    if (reuse) this.deleted--;
    this.live.add(label);
  }

  remove(label: number): void {
    if (!this.live.delete(label)) return;
    this.index.markDelete(label);
    this.deleted++;
  }

  search(query: Float32Array, k: number, filter?: (label: number) => boolean): VectorHit[] {
    checkDim(this.dimension, query);
    const n = Math.min(k, this.live.size);
    if (n <= 0) return [];
    // ef must be ≥ k for hnswlib to return k results.
    if (this.index.getEf() < n) this.index.setEf(n);
    const res = this.index.searchKnn(Array.from(query), n, filter);
    if (this.index.getEf() !== this.efSearch) this.index.setEf(Math.max(this.efSearch, 1));
    const hits: VectorHit[] = [];
    for (let i = 0; i < res.neighbors.length; i++) {
      hits.push({ label: res.neighbors[i]!, score: 1 - res.distances[i]! });
    }
    return hits;
  }

  /** Writes the index to `file` atomically: temp file in the same dir, fsync, rename, fsync dir. */
  save(file: string): void {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}`;
    this.index.writeIndexSync(tmp);
    // Owner-only, like the database (the vectors encode the documents).
    fs.chmodSync(tmp, 0o600);
    const fd = fs.openSync(tmp, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    const dirFd = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  }
}

/**
 * recall@k of `index` against exact neighbours: the share of each query's true top-k (`truth`,
 * best first, the query's own label excluded) the index returns among its top k. A query's own label
 * (`self`) is left out of the index's answer too: a stored vector always finds itself.
 * @returns a value in [0, 1]; 1 when there are no queries.
 */
export function recallAgainst(index: VectorIndex, queries: ReadonlyArray<{ self: number; vector: Float32Array; truth: readonly number[] }>, k: number): number {
  return recallOfHits(queries, queries.map((q) => index.search(q.vector, k + 1).map((h) => h.label)), k);
}

/**
 * {@link recallAgainst} for answers already found: `hits[i]` the labels a search returned for
 * `queries[i]` (k + 1 of them, best first, so k remain once the query's own label is left out).
 */
export function recallOfHits(queries: ReadonlyArray<{ self: number; truth: readonly number[] }>, hits: ReadonlyArray<readonly number[]>, k: number): number {
  let found = 0;
  let wanted = 0;
  queries.forEach((q, i) => {
    const truth = new Set(q.truth.slice(0, k));
    const got = (hits[i] ?? []).filter((label) => label !== q.self).slice(0, k);
    for (const label of got) if (truth.has(label)) found++;
    wanted += truth.size;
  });
  return wanted === 0 ? 1 : found / wanted;
}

/**
 * Σ a[i]·b[i] over a's length, in four interleaved sums: V8 runs four independent chains of
 * multiply-adds 1.7× faster than one (384-d: 255 vs 443 ns, ExactTopK's whole cost per vector and
 * query). The sum's rounding differs from a single chain's in the last bits.
 */
export function dotProduct(a: Float32Array, b: Float32Array): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const n = a.length - (a.length % 4);
  let i = 0;
  for (; i < n; i += 4) {
    s0 += a[i]! * b[i]!;
    s1 += a[i + 1]! * b[i + 1]!;
    s2 += a[i + 2]! * b[i + 2]!;
    s3 += a[i + 3]! * b[i + 3]!;
  }
  for (; i < a.length; i++) s0 += a[i]! * b[i]!;
  return s0 + s1 + s2 + s3;
}

/**
 * Exact top-k by cosine for many queries at once, fed page by page (`add`), so a brute-force scan
 * over stored vectors needs one pass and no copy of the corpus. Vectors are assumed L2-normalized
 * (cosine = dot product). A query's own label is skipped.
 */
export class ExactTopK {
  private readonly queries: Array<{ self: number; vector: Float32Array }>;
  private readonly best: Array<Array<{ label: number; score: number }>>;

  constructor(
    queries: ReadonlyArray<{ self: number; vector: Float32Array }>,
    private readonly k: number,
  ) {
    this.queries = [...queries];
    this.best = queries.map(() => []);
  }

  /** Queries still scored. */
  get size(): number {
    return this.queries.length;
  }

  /** Scores one stored vector against every query. */
  add(label: number, v: Float32Array): void {
    for (let q = 0; q < this.queries.length; q++) {
      const query = this.queries[q]!;
      if (query.self === label) continue;
      const dot = dotProduct(query.vector, v);
      const list = this.best[q]!;
      if (list.length === this.k && dot <= list[list.length - 1]!.score) continue;
      let at = list.length;
      while (at > 0 && list[at - 1]!.score < dot) at--;
      list.splice(at, 0, { label, score: dot });
      if (list.length > this.k) list.pop();
    }
  }

  /** Drops the queries after the first `n` (their truth would be incomplete). */
  truncate(n: number): void {
    this.queries.length = Math.min(n, this.queries.length);
    this.best.length = Math.min(n, this.best.length);
  }

  /** True top-k labels per query, best first. */
  results(): number[][] {
    return this.best.map((l) => l.map((h) => h.label));
  }
}
