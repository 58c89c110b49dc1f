import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIngest } from '../../../ingest/pipeline.ts';
import {
  applyDocumentWeights,
  correctionMatch,
  dedupeNearDuplicates,
  NEAR_DUPLICATE_JACCARD,
  FEEDBACK_HALF_LIFE_DAYS,
  feedbackDecay,
  fuseRrf,
  HybridRetriever,
  MAX_TOP_K,
  MIN_DOCUMENT_WEIGHT,
  PERSONAL_CORRECTION_BOOST,
  PERSONAL_DISLIKED_PENALTY,
  PERSONAL_MAX_DEMOTION,
  personalizeScores,
  pinWithinTopK,
  protectedChunks,
  rankFused,
  RRF_K,
} from '../../../src/chat/retrieve.ts';
import { keyTerms } from '../../../src/features/personalize.ts';
import type { PersonalizationSignals, RetrieveResult } from '../../../src/chat/types.ts';
import type { Config } from '../../../src/core/config.ts';
import { loadConfig } from '../../../src/core/config.ts';
import type { VectorStack } from '../../../src/core/deps.ts';
import { openVectorStack } from '../../../src/core/deps.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { ValidationError } from '../../../src/core/errors.ts';

const FIXTURE_DOCS = fileURLToPath(new URL('../../fixtures/docs', import.meta.url));
const TINY_BERT = fileURLToPath(new URL('../../fixtures/models/tiny-bert', import.meta.url));

describe('fuseRrf / rankFused', () => {
  it('sums 1/(k + rank) over lists', () => {
    const m = fuseRrf([
      [10, 20, 30],
      [20, 40],
    ]);
    expect(m.get(10)).toBeCloseTo(1 / 61, 12);
    expect(m.get(20)).toBeCloseTo(1 / 62 + 1 / 61, 12);
    expect(m.get(30)).toBeCloseTo(1 / 63, 12);
    expect(m.get(40)).toBeCloseTo(1 / 62, 12);
    expect([...m.keys()]).toEqual([10, 20, 30, 40]);
  });

  it('counts an id repeated within a list once, at its best rank', () => {
    expect(fuseRrf([[1, 2, 1]], 10).get(1)).toBeCloseTo(1 / 11, 12);
  });

  it('honours k', () => {
    expect(fuseRrf([[5]], 0).get(5)).toBe(1);
  });

  it('orders by fused score with deterministic ties', () => {
    const r = rankFused([1, 2, 3], [3, 4]);
    // 2 (bm25 #2) and 4 (dense #2) tie on score and best rank: the smaller id first.
    expect(r.map((c) => c.chunkId)).toEqual([3, 1, 2, 4]);
    expect(r[0]).toEqual({ chunkId: 3, score: 1 / (RRF_K + 3) + 1 / (RRF_K + 1), bm25Rank: 3, denseRank: 1 });
    const tie = rankFused([7, 8], [9, 8]);
    expect(tie.map((c) => c.chunkId)).toEqual([8, 7, 9]);
    expect(rankFused([5], [6]).map((c) => c.chunkId)).toEqual([5, 6]);
  });
});

describe('dedupeNearDuplicates', () => {
  const base =
    'Replay is idempotent: the archive ignores readings whose sequence number it has already stored, so running it twice after an outage is safe and costs only bandwidth.';
  it('drops exact duplicates after normalization, keeping the first', () => {
    const items = [
      { id: 1, text: base },
      { id: 2, text: `  ${base.toUpperCase().replace(/ /g, '\n')} ` },
      { id: 3, text: 'Something else entirely about ferries and tides.' },
    ];
    expect(dedupeNearDuplicates(items).map((i) => i.id)).toEqual([1, 3]);
  });

  it('drops near-duplicates (one word changed in a chunk-sized passage)', () => {
    const long = fs.readFileSync(path.join(FIXTURE_DOCS, 'tidewater-ferry-timetable.txt'), 'utf8').slice(0, 900);
    const variant = long.replace('Marrowby Island', 'Marrowby Isle');
    expect(variant).not.toBe(long);
    const out = dedupeNearDuplicates([{ id: 'a', text: long }, { id: 'b', text: variant }, { id: 'c', text: base }]);
    expect(out.map((o) => o.id)).toEqual(['a', 'c']);
    // Half of the passage is not a near-duplicate of the whole.
    expect(dedupeNearDuplicates([{ text: long }, { text: long.slice(0, 450) }])).toHaveLength(2);
  });

  it('decides as a full Jaccard computation does, on texts around the threshold', () => {
    let seed = 5;
    const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
    const word = () => `w${Math.floor(rand() * 400)}`;
    const shingleSet = (t: string) => {
      const w = t.split(' ');
      const out = new Set<string>();
      for (let i = 0; i + 3 <= w.length; i++) out.add(w.slice(i, i + 3).join(' '));
      return out;
    };
    const jac = (a: Set<string>, b: Set<string>) => [...a].filter((x) => b.has(x)).length / new Set([...a, ...b]).size;
    let kept = 0;
    for (let group = 0; group < 60; group++) {
      const base = Array.from({ length: 30 + Math.floor(rand() * 150) }, word);
      // Variants with 0 to 8 single-word edits: Jaccard from 1 down to well under 0.9.
      const texts = [base.join(' ')];
      for (let v = 0; v < 8; v++) {
        const w = [...base];
        for (let e = Math.floor(rand() * 9); e > 0; e--) w[Math.floor(rand() * w.length)] = word();
        texts.push(w.join(' '));
      }
      texts.push(Array.from({ length: 60 }, word).join(' '));
      const reference: string[] = [];
      for (const t of texts) if (!reference.some((k) => k === t || jac(shingleSet(k), shingleSet(t)) >= NEAR_DUPLICATE_JACCARD)) reference.push(t);
      expect(dedupeNearDuplicates(texts.map((text) => ({ text }))).map((x) => x.text)).toEqual(reference);
      kept += reference.length;
    }
    // Both outcomes occurred: some variants were dropped, some kept.
    expect(kept).toBeGreaterThan(60 * 2);
    expect(kept).toBeLessThan(60 * 10);
  });

  it('keeps passages that only share some text', () => {
    const a = `${base} Stations silent for more than fifteen minutes are marked stale.`;
    const b = `Lists registered stations with their call signs and firmware versions. ${base.slice(0, 60)}`;
    expect(dedupeNearDuplicates([{ text: a }, { text: b }])).toHaveLength(2);
    expect(dedupeNearDuplicates([{ text: 'ok' }, { text: 'ok!' }, { text: 'not ok' }])).toHaveLength(2);
  });
});

describe('pinning and document weights', () => {
  const list = (ids: number[]) => ids.map((chunkId) => ({ chunkId }));
  it('pinWithinTopK moves late pinned items into the last slots of the top k, keeping the rest in order', () => {
    expect(pinWithinTopK(list([1, 2, 3, 4, 5, 6]), [6], 3).map((x) => x.chunkId)).toEqual([1, 2, 6, 3, 4, 5]);
    // A pinned item already inside stays where it is and keeps its slot.
    expect(pinWithinTopK(list([1, 2, 3, 4, 5, 6]), [2, 6], 3).map((x) => x.chunkId)).toEqual([1, 2, 6, 3, 4, 5]);
    expect(pinWithinTopK(list([1, 2, 3, 4, 5, 6]), [3, 6], 3).map((x) => x.chunkId)).toEqual([1, 3, 6, 2, 4, 5]);
    expect(pinWithinTopK(list([1, 2, 3, 4, 5, 6]), [5, 6], 2).map((x) => x.chunkId)).toEqual([5, 6, 1, 2, 3, 4]);
    // More pins than slots: the first ones win. Nothing pinned late: unchanged.
    expect(pinWithinTopK(list([1, 2, 3]), [3, 2], 1).map((x) => x.chunkId)).toEqual([3, 1, 2]);
    expect(pinWithinTopK(list([1, 2, 3]), [1, 9], 2).map((x) => x.chunkId)).toEqual([1, 2, 3]);
  });

  it('protectedChunks: the best BM25 and dense hits of full-weight documents', () => {
    const c = (chunkId: number, bm25Rank: number | null, denseRank: number | null, weight = 1) => ({ chunkId, documentId: chunkId, collection: 'x', score: 0, bm25Rank, denseRank, weight });
    expect(protectedChunks([c(1, 2, 1), c(2, 1, null), c(3, null, 2)])).toEqual([2, 1]);
    // A navigation page (weight < 1) at BM25 rank 1 is passed over for the best content page.
    expect(protectedChunks([c(1, 1, null, 0.25), c(2, 2, null)])).toEqual([2]);
    expect(protectedChunks([c(1, 1, null, 0.25)])).toEqual([1]);
  });

  it('applyDocumentWeights multiplies the fused score, clamps the weight and drops stale chunks', () => {
    const fused = rankFused([1, 2, 3], []);
    const metas = new Map([
      [1, { chunkId: 1, documentId: 10, collection: 'x', weight: 0.25 }],
      [2, { chunkId: 2, documentId: 20, collection: 'x', weight: 1 }],
      [3, { chunkId: 3, documentId: 30, collection: 'x', weight: 0 }],
    ]);
    const out = applyDocumentWeights(fused, metas);
    expect(out.map((x) => x.chunkId)).toEqual([2, 1, 3]);
    expect(out[1]!.score).toBeCloseTo(0.25 / (RRF_K + 1), 12);
    expect(out[2]!.weight).toBe(MIN_DOCUMENT_WEIGHT);
    expect(applyDocumentWeights(fused, new Map([[2, { chunkId: 2, documentId: 20, collection: 'x' }]])).map((x) => [x.chunkId, x.weight])).toEqual([[2, 1]]);
  });
});

describe('personalizeScores', () => {
  const items = [
    { chunkId: 11, documentId: 1, collection: 'a', score: 0.03, vector: new Float32Array([1, 0]) },
    { chunkId: 12, documentId: 2, collection: 'b', score: 0.02, vector: new Float32Array([0, 1]) },
    { chunkId: 13, documentId: 3, collection: 'a', score: 0.01, vector: new Float32Array([0.6, 0.8]) },
  ];
  const NOW_MS = Date.parse('2026-01-10T00:00:00.000Z');
  const signals = (s: Partial<PersonalizationSignals>): PersonalizationSignals => ({
    weight: 1,
    engagedDocuments: [],
    dislikedChunks: new Map(),
    corrections: [],
    topCollections: [],
    interestVector: null,
    ...s,
  });

  it('weight 0 (or no signals) changes nothing', () => {
    const s = signals({ weight: 0, engagedDocuments: [3], dislikedChunks: new Map([[11, NOW_MS]]), interestVector: new Float32Array([0, 1]) });
    expect(personalizeScores(items, s)).toEqual(items);
    expect(personalizeScores(items, undefined)).toEqual(items);
    expect(personalizeScores(items, signals({ weight: Number.NaN, engagedDocuments: [3] }))).toEqual(items);
  });

  it('boosts engaged documents and top collections, demotes disliked ones', () => {
    expect(personalizeScores(items, signals({ weight: 10, engagedDocuments: [3] })).map((i) => i.documentId)).toEqual([3, 1, 2]);
    expect(personalizeScores(items, signals({ weight: 10, dislikedChunks: new Map([[11, NOW_MS]]) }), undefined, NOW_MS).map((i) => i.documentId)).toEqual([2, 3, 1]);
    expect(personalizeScores(items, signals({ weight: 10, topCollections: ['b'] })).map((i) => i.documentId)).toEqual([2, 1, 3]);
  });

  it('adds the exact scaled boost', () => {
    const unit = 1 / (RRF_K + 1);
    const out = personalizeScores(items, signals({ weight: 2, engagedDocuments: [2], interestVector: new Float32Array([0, 2]) }));
    const two = out.find((i) => i.documentId === 2)!;
    expect(two.score).toBeCloseTo(0.02 + 2 * unit * (0.5 + 0.5 * 1), 12);
    const one = out.find((i) => i.documentId === 1)!;
    expect(one.score).toBeCloseTo(0.03, 12);
    const three = out.find((i) => i.documentId === 3)!;
    expect(three.score).toBeCloseTo(0.01 + 2 * unit * 0.5 * 0.8, 8); // 0.8 as float32
    // Inputs are not mutated.
    expect(items[1]!.score).toBe(0.02);
  });

  it('a thumbs-down demotes the cited chunk by a bounded amount that halves every FEEDBACK_HALF_LIFE_DAYS', () => {
    const unit = 1 / (RRF_K + 1);
    const at = (daysAgo: number) => NOW_MS - daysAgo * 86_400_000;
    const scoreOf = (daysAgo: number, weight = 1) =>
      personalizeScores(items, signals({ weight, dislikedChunks: new Map([[11, at(daysAgo)]]) }), unit, NOW_MS).find((i) => i.chunkId === 11)!.score;
    expect(scoreOf(0)).toBeCloseTo(0.03 - PERSONAL_DISLIKED_PENALTY * unit, 12);
    expect(scoreOf(FEEDBACK_HALF_LIFE_DAYS)).toBeCloseTo(0.03 - 0.5 * PERSONAL_DISLIKED_PENALTY * unit, 12);
    expect(scoreOf(4 * FEEDBACK_HALF_LIFE_DAYS)).toBeCloseTo(0.03 - PERSONAL_DISLIKED_PENALTY * unit / 16, 12);
    expect(feedbackDecay(-5)).toBe(1);
    // Only the cited chunk moves, not the other chunks of its document.
    const sibling = { chunkId: 99, documentId: 1, collection: 'a', score: 0.025 };
    const out = personalizeScores([...items, sibling], signals({ dislikedChunks: new Map([[11, NOW_MS]]) }), unit, NOW_MS);
    expect(out.find((i) => i.chunkId === 99)!.score).toBe(0.025);
    // Bounded: every signal against one chunk moves it by at most PERSONAL_MAX_DEMOTION units.
    const worst = personalizeScores(
      [{ chunkId: 11, documentId: 1, collection: 'a', score: 0.03, vector: new Float32Array([1, 0]) }],
      signals({ dislikedChunks: new Map([[11, NOW_MS]]), interestVector: new Float32Array([-1, 0]) }),
      unit,
      NOW_MS,
    );
    expect(worst[0]!.score).toBeCloseTo(0.03 - PERSONAL_MAX_DEMOTION * unit, 12);
  });

  it('a correction promotes the chunks whose text contains its key terms', () => {
    const unit = 1 / (RRF_K + 1);
    const texts = [
      { chunkId: 1, documentId: 1, collection: 'a', score: 0.03, text: 'Hash indexes store a hash code of the key.' },
      { chunkId: 2, documentId: 2, collection: 'a', score: 0.02, text: 'BRIN indexes summarize block ranges of a table.' },
      { chunkId: 3, documentId: 3, collection: 'a', score: 0.01, text: 'Block sizes are fixed at compile time.' },
    ];
    const corrections = [{ terms: keyTerms('No: BRIN summarizes block ranges'), atMs: NOW_MS }];
    expect(corrections[0]!.terms).toEqual(['brin', 'summarize', 'block', 'range']);
    const out = personalizeScores(texts, signals({ corrections }), unit, NOW_MS);
    expect(out.map((i) => i.chunkId)).toEqual([2, 1, 3]);
    expect(out[0]!.score).toBeCloseTo(0.02 + PERSONAL_CORRECTION_BOOST * unit, 12);
    // One matching term ("block") is below CORRECTION_MIN_MATCHED_TERMS: no boost.
    expect(out.find((i) => i.chunkId === 3)!.score).toBe(0.01);
    expect(correctionMatch(['brin', 'block'], new Set(['block']))).toBe(0);
    expect(correctionMatch(['brin'], new Set(['brin']))).toBe(1);
  });

  it('ignores chunk vectors of another dimension', () => {
    const out = personalizeScores(items, signals({ weight: 5, interestVector: new Float32Array([1, 0, 0]) }));
    expect(out).toEqual(items);
  });
});

interface Env {
  dir: string;
  config: Config;
  store: SqliteStore;
  stack: VectorStack;
  docsB: string;
  scratch: string;
}

function sourceName(r: RetrieveResult, i = 0): string {
  return path.basename(r.chunks[i]?.source ?? '');
}

async function ingest(env: Env, store: SqliteStore, stack: VectorStack, paths: string[], collection: string, prune = false) {
  return runIngest({
    store,
    dataDir: env.config.dataDir,
    paths,
    collection,
    prune,
    maxFileBytes: env.config.maxFileBytes,
    vectors: async () => stack,
    configuredModel: stack.embedder?.info.modelId ?? null,
  });
}

describe('HybridRetriever on the ingested fixture corpus', () => {
  const env = {} as Env;
  let hybrid: HybridRetriever;
  let bm25: HybridRetriever;

  beforeAll(async () => {
    env.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
    env.config = loadConfig({ MNEME_EMBED_MODEL: TINY_BERT, MNEME_DATA_DIR: path.join(env.dir, 'data') });
    env.store = openSqliteStore(env.config.dbFile);
    env.stack = await openVectorStack(env.store, env.config);
    expect(env.stack.embedder).not.toBeNull();
    // Collection "team-b": shares the term kestrelctl with the default collection.
    env.docsB = path.join(env.dir, 'docs-b');
    fs.mkdirSync(env.docsB);
    fs.writeFileSync(
      path.join(env.docsB, 'kestrel-oncall.md'),
      '# Kestrel on-call notes\n\nWhen the archive link drops, team B runs kestrelctl status, then kestrelctl replay for the spooled readings.\n',
    );
    // Collection "scratch": a document that gets pruned.
    env.scratch = path.join(env.dir, 'scratch');
    fs.mkdirSync(env.scratch);
    fs.writeFileSync(path.join(env.scratch, 'zephyrine.txt'), 'Zephyrine Quartermoss\n\nThe zephyrine valve regulates the quartermoss boiler pressure.\n');
    fs.writeFileSync(path.join(env.scratch, 'keep.txt'), 'Keep me\n\nThis note stays: the boiler room key hangs by the door.\n');
    await ingest(env, env.store, env.stack, [FIXTURE_DOCS], 'default');
    await ingest(env, env.store, env.stack, [env.docsB], 'team-b');
    await ingest(env, env.store, env.stack, [env.scratch], 'scratch');
    fs.rmSync(path.join(env.scratch, 'zephyrine.txt'));
    const pruned = await ingest(env, env.store, env.stack, [env.scratch], 'scratch', true);
    expect(pruned.documents_deleted).toBe(1);
    hybrid = new HybridRetriever({ store: env.store, embedder: env.stack.embedder, index: env.stack.index, syncIntervalMs: 0 });
    bm25 = new HybridRetriever({ store: env.store, embedder: null, index: null });
  });

  afterAll(async () => {
    await env.stack?.embedder?.close();
    await env.store?.close();
    fs.rmSync(env.dir, { recursive: true, force: true });
  });

  it('BM25-only mode works without an embedder', async () => {
    const r = await bm25.retrieve({ query: 'Which ferry sails to Marrowby Island?', topK: 5 });
    expect(r.mode).toBe('bm25');
    expect(r.queryVector).toBeNull();
    expect(sourceName(r)).toBe('tidewater-ferry-timetable.txt');
    expect(r.chunks.every((c) => c.denseRank === null && c.bm25Rank !== null)).toBe(true);
  });

  it('hybrid mode fuses both lists and returns full chunk fields', async () => {
    const r = await hybrid.retrieve({ query: 'How do I restore a single file from a snapshot?', topK: 5 });
    expect(r.mode).toBe('hybrid');
    expect(r.queryVector).toBeInstanceOf(Float32Array);
    expect(r.queryVector).toHaveLength(env.stack.embedder!.info.dimension);
    expect(r.chunks.length).toBe(5);
    expect(r.chunks.some((c) => c.denseRank !== null)).toBe(true);
    const top = r.chunks[0]!;
    expect(path.basename(top.source)).toBe('orbisync-faq.jsonl');
    const row = env.store.connection.db
      .prepare('SELECT c.text, c.heading_path, c.content_sha256, c.document_id, d.title, d.collection FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?')
      .get(top.chunkId) as Record<string, unknown>;
    expect(top).toMatchObject({
      text: row.text,
      headingPath: row.heading_path,
      contentSha256: row.content_sha256,
      documentId: row.document_id,
      title: row.title,
      collection: row.collection,
    });
    for (let i = 1; i < r.chunks.length; i++) expect(r.chunks[i - 1]!.score).toBeGreaterThanOrEqual(r.chunks[i]!.score);
    for (const k of ['embed_ms', 'bm25_ms', 'dense_ms', 'fuse_ms'] as const) expect(r.timings[k]).toBeGreaterThanOrEqual(0);
  });

  it('unique terms find the right document first, in both modes', async () => {
    for (const retriever of [hybrid, bm25]) {
      expect(sourceName(await retriever.retrieve({ query: 'E-417', topK: 3 }))).toBe('halcyon-x3-manual.md');
      expect(sourceName(await retriever.retrieve({ query: 'what does error E-417 mean?', topK: 3 }))).toBe('halcyon-x3-manual.md');
      expect(sourceName(await retriever.retrieve({ query: 'kestrelctl', topK: 3, collection: 'default' }))).toBe('kestrelctl-reference.md');
    }
    const e417 = await hybrid.retrieve({ query: 'E-417', topK: 3 });
    expect(e417.chunks[0]!.text).toContain('E-417');
    expect(e417.chunks[0]!.bm25Rank).toBe(1);
  });

  it('the collection filter excludes other collections (BM25 and dense)', async () => {
    for (const retriever of [hybrid, bm25]) {
      const all = await retriever.retrieve({ query: 'kestrelctl replay', topK: 20 });
      const collections = new Set(all.chunks.map((c) => c.collection));
      expect(collections.has('default') && collections.has('team-b')).toBe(true);
      const b = await retriever.retrieve({ query: 'kestrelctl replay', topK: 20, collection: 'team-b' });
      expect(b.chunks.length).toBeGreaterThan(0);
      expect(b.chunks.every((c) => c.collection === 'team-b')).toBe(true);
      const none = await retriever.retrieve({ query: 'kestrelctl replay', topK: 5, collection: 'no-such-collection' });
      expect(none.chunks).toEqual([]);
    }
    expect((await hybrid.searchDense(new Float32Array(env.stack.index!.meta.dimension).fill(0.1), 50, 'team-b')).length).toBeGreaterThan(0);
    const teamB = new Set(env.store.connection.db.prepare("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.collection = 'team-b'").pluck().all());
    for (const h of await hybrid.searchDense(new Float32Array(env.stack.index!.meta.dimension).fill(0.1), 50, 'team-b')) expect(teamB.has(h.chunkId)).toBe(true);
  });

  it('a scoped dense search: the filtered graph search and the exact scan admit the same chunks and agree on the best', async () => {
    const graph = new HybridRetriever({ store: env.store, embedder: env.stack.embedder, index: env.stack.index, syncIntervalMs: 0, denseExactScanMax: 0 });
    const exact = new HybridRetriever({ store: env.store, embedder: env.stack.embedder, index: env.stack.index, syncIntervalMs: 0, denseExactScanMax: 1_000_000, denseExactScanMaxShare: 1 });
    const db = env.store.connection.db;
    const ids = (sql: string) => new Set(db.prepare(sql).pluck().all() as number[]);
    const live = "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.deleted_at IS NULL AND d.collection";
    const [query] = await env.stack.embedder!.embed(['kestrelctl replay spooled readings']);
    for (const r of [graph, exact]) {
      const only = await r.searchDense(query!, 50, 'team-b');
      const teamB = ids(`SELECT c.id ${live} = 'team-b'`);
      expect(only.length).toBe(teamB.size);
      for (const h of only) expect(teamB.has(h.chunkId)).toBe(true);
      const notHidden = await r.searchDense(query!, 50, undefined, ['default', 'scratch']);
      expect(new Set(notHidden.map((h) => h.chunkId))).toEqual(teamB);
      const readable = ids(`SELECT c.id ${live} <> 'default'`);
      const hits = await r.searchDense(query!, 500, undefined, ['default']);
      expect(hits.length).toBe(readable.size);
      for (const h of hits) expect(readable.has(h.chunkId)).toBe(true);
      expect(await r.searchDense(query!, 5, 'team-b', ['team-b'])).toEqual([]);
      expect(await r.searchDense(query!, 5, 'no-such-collection')).toEqual([]);
    }
    const a = await graph.searchDense(query!, 3, undefined, ['team-b']);
    const b = await exact.searchDense(query!, 3, undefined, ['team-b']);
    expect(a.map((h) => h.chunkId)).toEqual(b.map((h) => h.chunkId));
    for (const [i, h] of a.entries()) expect(h.score).toBeCloseTo(b[i]!.score, 4);
  });

  it('a scoped dense search follows the change feed: a chunk added to a collection after the first scoped search is admitted, a pruned one is not', async () => {
    const graph = new HybridRetriever({ store: env.store, embedder: env.stack.embedder, index: env.stack.index, syncIntervalMs: 0, denseExactScanMax: 0 });
    const [query] = await env.stack.embedder!.embed(['brackenfold sluice gate opening hours']);
    expect(await graph.searchDense(query!, 50, 'late-arrivals')).toEqual([]); // loads the ordinals
    const dir = path.join(env.dir, 'late');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'sluice.md'), '# Brackenfold sluice\n\nThe Brackenfold sluice gate opens at six and closes at nine.\n');
    fs.writeFileSync(path.join(dir, 'weir.md'), '# Brackenfold weir\n\nThe Brackenfold weir is cleared of reeds every spring.\n');
    await ingest(env, env.store, env.stack, [dir], 'late-arrivals');
    await graph.sync();
    const late = () => new Set(env.store.connection.db.prepare("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.deleted_at IS NULL AND d.collection = 'late-arrivals'").pluck().all() as number[]);
    const added = late();
    expect(added.size).toBeGreaterThanOrEqual(2);
    expect(new Set((await graph.searchDense(query!, 50, 'late-arrivals')).map((h) => h.chunkId))).toEqual(added);
    expect((await graph.searchDense(query!, 500, undefined, ['late-arrivals'])).some((h) => added.has(h.chunkId))).toBe(false);
    fs.rmSync(path.join(dir, 'weir.md'));
    await ingest(env, env.store, env.stack, [dir], 'late-arrivals', true);
    await graph.sync();
    const left = late();
    expect(left.size).toBeLessThan(added.size);
    expect(new Set((await graph.searchDense(query!, 50, 'late-arrivals')).map((h) => h.chunkId))).toEqual(left);
    fs.rmSync(dir, { recursive: true });
    await ingest(env, env.store, env.stack, [dir], 'late-arrivals', true);
  });

  it('pruned documents never appear', async () => {
    for (const retriever of [hybrid, bm25]) {
      const r = await retriever.retrieve({ query: 'zephyrine quartermoss valve', topK: 50 });
      expect(r.chunks.some((c) => c.text.toLowerCase().includes('zephyrine'))).toBe(false);
      expect(await retriever.searchBm25('zephyrine', 10)).toEqual([]);
      const boiler = await retriever.retrieve({ query: 'boiler', topK: 5, collection: 'scratch' });
      expect(boiler.chunks.map((c) => path.basename(c.source))).toEqual(['keep.txt']);
    }
  });

  it('never finds text hidden from readers (VEXSECRET42, scripts)', async () => {
    for (const retriever of [hybrid, bm25]) {
      for (const q of ['VEXSECRET42', 'hidden coupon code', 'trackingId UA-VEXMOOR-0001', "alert('xss')"]) {
        const r = await retriever.retrieve({ query: q, topK: 50 });
        for (const c of r.chunks) expect(c.text).not.toMatch(/VEXSECRET42|UA-VEXMOOR|xss/);
      }
      expect(await retriever.searchBm25('VEXSECRET42', 10)).toEqual([]);
    }
  });

  it('validates the request', async () => {
    for (const bad of [
      { query: '', topK: 5 },
      { query: '   ', topK: 5 },
      { query: 'ferry', topK: 0 },
      { query: 'ferry', topK: MAX_TOP_K + 1 },
      { query: 'ferry', topK: 2.5 },
      { query: 'ferry', topK: Number.NaN },
      { query: 'ferry', topK: 3, collection: '' },
    ]) {
      await expect(hybrid.retrieve(bad)).rejects.toBeInstanceOf(ValidationError);
    }
    expect((await hybrid.retrieve({ query: 'ferry', topK: MAX_TOP_K })).chunks.length).toBeGreaterThan(0);
    // Text with nothing searchable: no BM25 candidates, but no error either.
    expect((await bm25.retrieve({ query: '?!*', topK: 3 })).chunks).toEqual([]);
  });

  it('personalization weight 0 gives exactly the unpersonalized ranking; weight > 0 re-ranks', async () => {
    const query = 'status';
    const plain = await hybrid.retrieve({ query, topK: 10 });
    const docs = [...new Set(plain.chunks.map((c) => c.documentId))];
    expect(docs.length).toBeGreaterThanOrEqual(2);
    const first = plain.chunks[0]!;
    // The lowest-ranked chunk of another document: the one personalization should lift.
    const last = [...plain.chunks].reverse().find((c) => c.documentId !== first.documentId)!;
    const signals: PersonalizationSignals = {
      weight: 0,
      engagedDocuments: [last.documentId],
      dislikedChunks: new Map([[first.chunkId, Date.now()]]),
      corrections: [],
      topCollections: [last.collection],
      interestVector: plain.queryVector,
    };
    const zero = await hybrid.retrieve({ query, topK: 10, personalization: signals });
    expect(zero.chunks.map((c) => [c.chunkId, c.score])).toEqual(plain.chunks.map((c) => [c.chunkId, c.score]));

    const on = await hybrid.retrieve({ query, topK: 10, personalization: { ...signals, weight: 5, interestVector: null } });
    expect(on.chunks[0]!.documentId).toBe(last.documentId);
    // The disliked chunk lost its first place, but it is the top BM25 or dense hit: still in the top 10.
    expect(on.chunks[0]!.chunkId).not.toBe(first.chunkId);
    const firstNow = on.chunks.findIndex((c) => c.chunkId === first.chunkId);
    expect(firstNow).toBeGreaterThan(0);

    // The interest vector alone (no document signals) also moves chunks toward it.
    const target = plain.chunks.at(-1)!;
    const vec = env.store.connection.db.prepare('SELECT vector FROM embeddings WHERE chunk_id = ?').pluck().get(target.chunkId) as Buffer;
    const interest = new Float32Array(vec.buffer.slice(vec.byteOffset, vec.byteOffset + vec.byteLength));
    const byInterest = await hybrid.retrieve({
      query,
      topK: 10,
      personalization: { weight: 10, engagedDocuments: [], dislikedChunks: new Map(), corrections: [], topCollections: [], interestVector: interest },
    });
    const moved = byInterest.chunks.findIndex((c) => c.chunkId === target.chunkId);
    expect(moved).toBeGreaterThanOrEqual(0);
    expect(moved).toBeLessThan(plain.chunks.length - 1);
  });

  it('a document ingested by another connection becomes searchable after sync, without restart', async () => {
    const late = path.join(env.dir, 'late');
    fs.mkdirSync(late);
    fs.writeFileSync(path.join(late, 'quillfeather.md'), '# Quillfeather pumps\n\nThe Quillfeather pump primes itself in ninety seconds.\n');
    const slow = new HybridRetriever({ store: env.store, embedder: env.stack.embedder, index: env.stack.index, syncIntervalMs: 60_000 });
    expect(await slow.searchBm25('quillfeather', 5)).toEqual([]);

    // "Another process": its own connection, embedder and index instance.
    const store2 = openSqliteStore(env.config.dbFile);
    const stack2 = await openVectorStack(store2, env.config);
    try {
      const s = await ingest(env, store2, stack2, [late], 'default');
      expect(s.documents_added).toBe(1);
    } finally {
      await stack2.embedder?.close();
      await store2.close();
    }
    const newIds = env.store.connection.db
      .prepare("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source_uri LIKE '%quillfeather.md'")
      .pluck()
      .all() as number[];
    expect(newIds.length).toBeGreaterThan(0);
    // Not yet in this process's index: the other process's upserts went to its own copy.
    expect(newIds.some((id) => env.stack.index!.hnsw!.has(id))).toBe(false);

    // Within its sync interval a retriever does not look: BM25 (SQL) already sees the chunk, the
    // in-memory index does not.
    const before = await slow.retrieve({ query: 'Quillfeather pump', topK: 3 });
    const lateHit = before.chunks.find((c) => path.basename(c.source) === 'quillfeather.md');
    expect(lateHit).toMatchObject({ bm25Rank: 1, denseRank: null });

    const r = await hybrid.retrieve({ query: 'Quillfeather pump', topK: 3 });
    expect(path.basename(r.chunks[0]!.source)).toBe('quillfeather.md');
    expect(newIds.every((id) => env.stack.index!.hnsw!.has(id))).toBe(true);
    expect(r.chunks[0]!.denseRank).not.toBeNull();
  });
});

describe('an index generation switched by `reindex --model` while serving', () => {
  it('falls back to BM25 instead of emptying the old index, until a restart loads the new model', async () => {
    const { reindexCommand } = await import('../../../src/commands/reindex.ts');
    const { Writable } = await import('node:stream');
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-regen-'));
    const config = loadConfig({ MNEME_EMBED_MODEL: TINY_BERT, MNEME_DATA_DIR: dataDir, MNEME_OFFLINE: '1' });
    const store = openSqliteStore(config.dbFile);
    const stack = await openVectorStack(store, config);
    const vectors = async () => stack;
    await runIngest({ store, dataDir, paths: [FIXTURE_DOCS], collection: 'default', prune: false, maxFileBytes: config.maxFileBytes, vectors, configuredModel: config.embed.model });
    const retriever = new HybridRetriever({ store, embedder: stack.embedder, index: stack.index, syncIntervalMs: 0 });
    expect((await retriever.retrieve({ query: 'E-417 flow sensor', topK: 3 })).mode).toBe('hybrid');
    const other = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-model-')), 'other-bert');
    fs.cpSync(TINY_BERT, other, { recursive: true });
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const code = await reindexCommand.run(['--model', other, '--data-dir', dataDir], { stdout: sink, stderr: sink, env: { MNEME_OFFLINE: '1' }, isTty: false });
    expect(code).toBe(0);
    const after = await retriever.retrieve({ query: 'E-417 flow sensor', topK: 3 });
    expect(after.mode).toBe('bm25');
    expect(after.chunks[0]?.source).toContain('halcyon-x3-manual.md');
    await stack.embedder?.close();
    await store.close();
  });
});
