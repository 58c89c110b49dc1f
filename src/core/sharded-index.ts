/**
 * The product's in-process vector index: N HNSW shards searched together. A label (chunk id) lives
 * in shard `label % N`, so routing needs no table; a search asks every shard for its share of the
 * top k (see shardK; the filter callback runs per shard) and merges them by score. Shards exist so a rebuild can insert
 * into N graphs in parallel worker threads (hnsw-build.ts): hnswlib-node has no parallel insert.
 *
 * On disk (generation file `index/hnsw-gG.bin`):
 * - sharded layout: a manifest `index/hnsw-gG.bin.shards.json` naming one file per shard
 *   (`hnsw-gG.bin.s0-TOKEN.bin`, ...) and the labels each shard holds as deleted. A save writes new
 *   shard files under a fresh TOKEN, then replaces the manifest atomically (rename), then removes the
 *   files the old manifest named: killed at any point, the manifest names complete files.
 * - legacy layout (before sharding): the single file `index/hnsw-gG.bin`, opened as one shard. The
 *   next save writes the sharded layout and removes it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { HnswOptions, TunableVectorIndex, VectorHit } from './vector-index.ts';
import { HnswVectorIndex } from './vector-index.ts';

/** Suffix of the manifest beside a generation's file name. */
export const SHARD_MANIFEST_SUFFIX = '.shards.json';
/** Format version written in the manifest; a manifest of another version is refused. */
export const SHARD_MANIFEST_VERSION = 1;
/**
 * Fewest vectors per shard when a rebuild chooses its shard count: below this one graph is fast to
 * build (≈ 1 min at 100k on this machine) and searching N shards would only add per-query work (at
 * 100k: dense top 100 in 0.45 ms on one graph, 0.75 ms on two even with shardK). Up to 299,999
 * vectors: one shard; 300k and 1M on 2 cores: two.
 */
export const HNSW_MIN_VECTORS_PER_SHARD = 150_000;
/** Most shards a rebuild makes (each adds a graph search per query). */
export const HNSW_MAX_SHARDS = 8;
/** Attempts to read a manifest and its shard files when a concurrent save replaced them mid-read. */
const LOAD_ATTEMPTS = 3;

export interface ShardManifest {
  version: number;
  dimension: number;
  /** Per shard (shard i holds labels with label % shards.length === i): file name in the same dir, deleted labels. */
  shards: Array<{ file: string; deleted: number[]; vectors: number }>;
  savedAt: string;
}

/**
 * Safety margin of a shard's share of a top-k search, in standard deviations. Labels are spread over
 * the shards by `label % N`, independently of where their vectors lie, so how many of the true top k
 * a shard holds is binomial(k, 1/N): asking each shard for its mean share plus this many standard
 * deviations misses a true top-k hit with probability ~0.1 % per shard, and then only one ranked
 * near k (the shard's best are all returned). At k = 100 on 2 shards: 65 per shard instead of 100,
 * and hnswlib's search cost grows with max(ef, k).
 */
export const SHARD_K_MARGIN_SIGMAS = 3;

/** How many hits to ask each of `shards` shards for, for a merged top `k` (k itself for one shard or small k). */
export function shardK(k: number, shards: number): number {
  if (shards <= 1) return k;
  const p = 1 / shards;
  return Math.min(k, Math.ceil(k * p + SHARD_K_MARGIN_SIGMAS * Math.sqrt(k * p * (1 - p))));
}

/** Shard count for a rebuild of `vectors` vectors with `threads` cores: one per core, each ≥ HNSW_MIN_VECTORS_PER_SHARD. */
export function shardCountFor(vectors: number, threads: number): number {
  const byCores = Math.max(1, Math.min(HNSW_MAX_SHARDS, Math.floor(threads)));
  return Math.max(1, Math.min(byCores, Math.floor(vectors / HNSW_MIN_VECTORS_PER_SHARD)));
}

/** Path of the manifest of the generation file `file`. */
export function manifestPath(file: string): string {
  return `${file}${SHARD_MANIFEST_SUFFIX}`;
}

/** True when `file` has an index on disk in either layout. */
export function indexExists(file: string): boolean {
  return fs.existsSync(manifestPath(file)) || fs.existsSync(file);
}

/** Reads and checks a manifest. @throws Error when unreadable, of another version or malformed. */
export function readManifest(file: string): ShardManifest {
  const m = JSON.parse(fs.readFileSync(manifestPath(file), 'utf8')) as ShardManifest;
  if (m.version !== SHARD_MANIFEST_VERSION) throw new Error(`index manifest ${manifestPath(file)} has version ${m.version}, this mneme reads ${SHARD_MANIFEST_VERSION}`);
  if (!Array.isArray(m.shards) || m.shards.length === 0 || m.shards.some((s) => typeof s.file !== 'string' || s.file.includes('/') || !Array.isArray(s.deleted))) {
    throw new Error(`index manifest ${manifestPath(file)} is malformed`);
  }
  return m;
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

let saveCounter = 0;
/** A name part unique to one save (time, pid, counter). */
export function saveToken(): string {
  return `${Date.now().toString(36)}-${process.pid}-${(saveCounter++).toString(36)}`;
}

/** File name (in the generation file's dir) of shard `i` written under `token`. */
export function shardFileName(file: string, i: number, token: string): string {
  return `${path.basename(file)}.s${i}-${token}.bin`;
}

/**
 * Makes `shards` (already written and fsynced in the dir of `file`) the index of `file`: replaces the
 * manifest atomically, then removes the shard files of the previous manifest, the legacy single file
 * and shard files of saves killed before their manifest was written.
 */
export function commitShards(file: string, dimension: number, shards: ShardManifest['shards']): void {
  const dir = path.dirname(file);
  const manifest: ShardManifest = { version: SHARD_MANIFEST_VERSION, dimension, shards, savedAt: new Date().toISOString() };
  const tmp = `${manifestPath(file)}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(manifest), { mode: 0o600 });
  fsyncPath(tmp);
  fs.renameSync(tmp, manifestPath(file));
  fsyncPath(dir);
  const keep = new Set(shards.map((s) => s.file));
  const prefix = `${path.basename(file)}.s`;
  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith(prefix) && name.endsWith('.bin') && !keep.has(name)) fs.rmSync(path.join(dir, name), { force: true });
  }
  fs.rmSync(file, { force: true });
}

/** Removes a generation's index in both layouts (manifest, shard files, legacy file, temp files). */
export function removeIndexFiles(file: string): void {
  const dir = path.dirname(file);
  const base = path.basename(file);
  if (!fs.existsSync(dir)) return;
  for (const name of fs.readdirSync(dir)) {
    if (name === base || name.startsWith(`${base}.`)) fs.rmSync(path.join(dir, name), { force: true });
  }
}

export class ShardedHnswIndex implements TunableVectorIndex {
  readonly dimension: number;
  private readonly shards: HnswVectorIndex[];

  private constructor(shards: HnswVectorIndex[]) {
    if (shards.length === 0) throw new RangeError('a sharded index needs at least one shard');
    this.dimension = shards[0]!.dimension;
    this.shards = shards;
  }

  /** An empty index of `shards` shards (default 1). */
  static create(options: HnswOptions & { shards?: number }): ShardedHnswIndex {
    const n = options.shards ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`shard count must be a positive integer, got ${n}`);
    const capacity = options.initialCapacity === undefined ? undefined : Math.ceil(options.initialCapacity / n);
    return new ShardedHnswIndex(Array.from({ length: n }, () => HnswVectorIndex.create({ ...options, initialCapacity: capacity })));
  }

  /** Wraps existing shards; shard i must hold only labels with label % shards.length === i. */
  static of(shards: HnswVectorIndex[]): ShardedHnswIndex {
    return new ShardedHnswIndex(shards);
  }

  /**
   * Loads the index of the generation file `file`: the manifest's shards, else the legacy single
   * file as one shard. A shard file missing because a save replaced the manifest meanwhile is
   * retried with the new manifest.
   * @throws Error when neither layout is there or a file is unreadable, truncated or of another dimension.
   */
  static load(file: string, options: HnswOptions): ShardedHnswIndex {
    for (let attempt = 1; ; attempt++) {
      if (!fs.existsSync(manifestPath(file))) return new ShardedHnswIndex([HnswVectorIndex.load(file, options)]);
      const m = readManifest(file);
      if (m.dimension !== options.dimension) throw new Error(`index ${manifestPath(file)} has ${m.dimension} dimensions, expected ${options.dimension}`);
      const dir = path.dirname(file);
      try {
        return new ShardedHnswIndex(m.shards.map((s) => HnswVectorIndex.load(path.join(dir, s.file), options, s.deleted)));
      } catch (err) {
        const replaced = (err as NodeJS.ErrnoException).code === 'ENOENT' && fs.readFileSync(manifestPath(file), 'utf8') !== JSON.stringify(m);
        if (!replaced || attempt >= LOAD_ATTEMPTS) throw err;
      }
    }
  }

  /** Number of shards. */
  get shardCount(): number {
    return this.shards.length;
  }

  get efSearch(): number {
    return this.shards[0]!.efSearch;
  }

  setEfSearch(ef: number): void {
    for (const s of this.shards) s.setEfSearch(ef);
  }

  private shardOf(label: number): HnswVectorIndex {
    const n = this.shards.length;
    return this.shards[((label % n) + n) % n]!;
  }

  size(): number {
    let n = 0;
    for (const s of this.shards) n += s.size();
    return n;
  }
  has(label: number): boolean {
    return this.shardOf(label).has(label);
  }
  labels(): number[] {
    return this.shards.length === 1 ? this.shards[0]!.labels() : this.shards.flatMap((s) => s.labels());
  }
  /** Capacity summed over shards. */
  capacity(): number {
    let n = 0;
    for (const s of this.shards) n += s.capacity();
    return n;
  }
  upsert(label: number, vector: Float32Array): void {
    this.shardOf(label).upsert(label, vector);
  }
  remove(label: number): void {
    this.shardOf(label).remove(label);
  }

  /**
   * Each shard's share of the top k (see shardK; same ef), merged best first. With a filter every
   * shard is asked for k: the admitted labels need not be spread evenly over the shards.
   */
  search(query: Float32Array, k: number, filter?: (label: number) => boolean): VectorHit[] {
    if (this.shards.length === 1) return this.shards[0]!.search(query, k, filter);
    const perShard = filter ? k : shardK(k, this.shards.length);
    const all: VectorHit[] = [];
    for (const s of this.shards) for (const h of s.search(query, perShard, filter)) all.push(h);
    all.sort((a, b) => b.score - a.score || a.label - b.label);
    return all.length > k ? all.slice(0, k) : all;
  }

  /** Writes the sharded layout for the generation file `file` (see the module comment); atomic as a whole. */
  save(file: string): void {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const token = saveToken();
    const entries = this.shards.map((s, i) => {
      const name = shardFileName(file, i, token);
      s.save(path.join(path.dirname(file), name));
      return { file: name, deleted: s.deletedLabels(), vectors: s.size() };
    });
    commitShards(file, this.dimension, entries);
  }
}
