/**
 * The CorpusStore contract: one suite, run against every engine (test/store/engines.test.ts).
 * Each case makes its own store, so cases run in any order. Assertions are on order and
 * visibility, never on engine-specific score values.
 */
import { expect, it } from 'vitest';
import type { NewChunk, NewDocument } from '../../../src/core/store/corpus.ts';
import type { Store } from '../../../src/core/store/index.ts';

/** What this suite needs of a store: the corpus aggregate (an engine may not have the others yet). */
export type CorpusStoreUnderTest = Pick<Store, 'corpus' | 'close'>;

export interface EngineUnderTest {
  name: string;
  /** A fresh, empty, migrated store. */
  make(): Promise<CorpusStoreUnderTest>;
  /** Chunks per bounded transaction of this engine (a document larger than this is staged). */
  boundedChunks: number;
  /** The engine answers `searchVector` itself (a native vector index, e.g. pgvector). Default false. */
  nativeVectorSearch?: boolean;
}

let seq = 0;
function doc(collection: string, name: string, title = name): NewDocument {
  return { collection, sourceUri: `/docs/${name}`, contentSha256: `sha-${name}-${++seq}`, title, kind: 'text/plain', bytes: 10 };
}

function chunks(texts: string[], dim = 0): NewChunk[] {
  return texts.map((text, ord) => ({
    ord,
    text,
    headingPath: '',
    tokenCount: text.split(' ').length,
    contentSha256: `h-${text}-${ord}`,
    vector: dim > 0 ? unit(dim, ord + text.length) : undefined,
  }));
}

function unit(dim: number, salt: number): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = Math.sin(salt * 13.1 + i * 0.7);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

const sourcesOf = async (store: CorpusStoreUnderTest, q: string, collection?: string) => {
  const hits = await store.corpus.searchText(q, { limit: 20, collection });
  const recs = await store.corpus.chunkRecords(hits.map((h) => h.chunkId));
  const byId = new Map(recs.map((r) => [r.chunkId, r.source]));
  return hits.map((h) => byId.get(h.chunkId));
};

export function corpusStoreContract(engine: EngineUnderTest): void {
  const withStore = async (fn: (s: CorpusStoreUnderTest) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('stores a document and finds it by text; two matching terms outrank one', () =>
    withStore(async (s) => {
      const a = await s.corpus.replaceDocument(doc('c', 'a.md'), chunks(['the wombat digs a burrow']), null, null);
      await s.corpus.replaceDocument(doc('c', 'b.md'), chunks(['a burrow under the hill']), null, null);
      expect(await s.corpus.findDocument('c', '/docs/a.md')).toMatchObject({ id: a.documentId, deletedAt: null });
      expect(await sourcesOf(s, 'wombat burrow')).toEqual(['/docs/a.md', '/docs/b.md']);
      const hits = await s.corpus.searchText('wombat burrow', { limit: 5 });
      expect(hits[0]!.score).toBeGreaterThan(hits[1]!.score);
      expect(await s.corpus.searchText('?!', { limit: 5 })).toEqual([]);
    }));

  it('a collection filter returns `limit` rows of that collection when enough exist', () =>
    withStore(async (s) => {
      for (let i = 0; i < 30; i++) await s.corpus.replaceDocument(doc('big', `big-${i}`), chunks([`common term number ${i}`]), null, null);
      for (let i = 0; i < 6; i++) await s.corpus.replaceDocument(doc('small', `small-${i}`), chunks([`common term small ${i}`]), null, null);
      const hits = await s.corpus.searchText('common term', { limit: 5, collection: 'small' });
      expect(hits).toHaveLength(5);
      const metas = await s.corpus.chunkMeta(hits.map((h) => h.chunkId));
      expect(metas.every((m) => m.collection === 'small')).toBe(true);
    }));

  it('replacing a document swaps all its chunks at once; a failed replace leaves the old ones', () =>
    withStore(async (s) => {
      const first = await s.corpus.replaceDocument(doc('c', 'x.md'), chunks(['old alpha text', 'old beta text']), null, null);
      const existing = await s.corpus.findDocument('c', '/docs/x.md');
      // Two chunks with the same ord violate the (document, ord) key: the whole replace must roll back.
      const bad = [...chunks(['new gamma text']), ...chunks(['new delta text'])];
      await expect(s.corpus.replaceDocument(doc('c', 'x.md'), bad, existing, null)).rejects.toThrow();
      expect(await sourcesOf(s, 'alpha')).toEqual(['/docs/x.md']);
      expect(await s.corpus.searchText('gamma', { limit: 5 })).toEqual([]);
      const r = await s.corpus.replaceDocument(doc('c', 'x.md'), chunks(['new gamma text']), existing, null);
      expect(r.chunksDeleted).toBe(2);
      expect(r.chunkIdsRemoved).toHaveLength(2);
      expect(await s.corpus.chunkSources('c')).toHaveLength(1);
      expect(await s.corpus.searchText('alpha', { limit: 5 })).toEqual([]);
      expect(await sourcesOf(s, 'gamma')).toEqual(['/docs/x.md']);
      expect(first.chunksAdded).toBe(2);
    }));

  it('deleted documents never surface in any read', () =>
    withStore(async (s) => {
      const r = await s.corpus.replaceDocument(doc('c', 'gone.md'), chunks(['zephyrine valve'], 8), null, 'm');
      await s.corpus.replaceDocument(doc('c', 'stay.md'), chunks(['boiler key'], 8), null, 'm');
      const ids = await s.corpus.deleteDocument(r.documentId);
      expect(ids).toHaveLength(1);
      expect(await s.corpus.searchText('zephyrine', { limit: 5 })).toEqual([]);
      expect(await s.corpus.chunkRecords(ids)).toEqual([]);
      expect(await s.corpus.chunkMeta(ids)).toEqual([]);
      expect(await s.corpus.chunkIdsOfCollection('c')).not.toContain(ids[0]);
      expect((await s.corpus.liveDocuments('c')).map((d) => d.sourceUri)).toEqual(['/docs/stay.md']);
      expect((await s.corpus.findDocument('c', '/docs/gone.md'))?.deletedAt).not.toBeNull();
      expect(await s.corpus.embeddedChunkIds('m')).not.toContain(ids[0]);
    }));

  it('collections(): live collections in byte order with their live document and chunk counts', () =>
    withStore(async (s) => {
      await s.corpus.replaceDocument(doc('zeta', 'z1.md'), chunks(['one', 'two']), null, null);
      await s.corpus.replaceDocument(doc('zeta', 'z2.md'), chunks(['three']), null, null);
      await s.corpus.replaceDocument(doc('alpha', 'a1.md'), chunks(['four']), null, null);
      await s.corpus.replaceDocument(doc('Beta', 'b1.md'), chunks(['five']), null, null);
      const gone = await s.corpus.replaceDocument(doc('gone', 'g1.md'), chunks(['six']), null, null);
      const zGone = await s.corpus.replaceDocument(doc('zeta', 'z3.md'), chunks(['seven', 'eight']), null, null);
      await s.corpus.deleteDocument(gone.documentId);
      await s.corpus.deleteDocument(zGone.documentId);
      expect(await s.corpus.collections()).toEqual([
        { name: 'Beta', documents: 1, chunks: 1 },
        { name: 'alpha', documents: 1, chunks: 1 },
        { name: 'zeta', documents: 2, chunks: 3 },
      ]);
    }));

  it('the change feed rises on every chunk and vector change, in order, and survives truncation', () =>
    withStore(async (s) => {
      const b0 = await s.corpus.feedBounds();
      const r = await s.corpus.replaceDocument(doc('c', 'f.md'), chunks(['one', 'two'], 4), null, 'm');
      const b1 = await s.corpus.feedBounds();
      expect(b1.head).toBeGreaterThanOrEqual(b0.head + 4);
      const ch = await s.corpus.changesSince(b0.head, 100);
      expect(ch.map((c) => c.seq)).toEqual([...ch.map((c) => c.seq)].sort((a, b) => a - b));
      expect(ch.filter((c) => c.op === 'chunk+').map((c) => c.collection)).toEqual(['c', 'c']);
      expect(ch.filter((c) => c.op === 'vector+').map((c) => [c.chunkId, c.modelId])).toEqual(r.vectorsAdded.map(([id]) => [id, 'm']));
      await s.corpus.deleteDocument(r.documentId);
      const del = await s.corpus.changesSince(b1.head, 100);
      expect(new Set(del.map((c) => c.op))).toEqual(new Set(['chunk-', 'vector-']));
      expect(del.filter((c) => c.op === 'vector-')).toHaveLength(2);
      const b2 = await s.corpus.feedBounds();
      await s.corpus.truncateFeed(b1.head);
      const b3 = await s.corpus.feedBounds();
      expect(b3.head).toBe(b2.head);
      expect(b3.first).toBeGreaterThan(b1.head);
      // Sequences are never reused after truncation.
      await s.corpus.replaceDocument(doc('c', 'g.md'), chunks(['three']), null, null);
      expect((await s.corpus.feedBounds()).head).toBeGreaterThan(b2.head);
    }));

  it('a document larger than one bounded transaction is invisible until complete, then whole', () =>
    withStore(async (s) => {
      const n = engine.boundedChunks * 2 + 7;
      const oldTexts = ['ancient marker version'];
      const v1 = await s.corpus.replaceDocument(doc('c', 'huge.json'), chunks(oldTexts), null, null);
      const existing = await s.corpus.findDocument('c', '/docs/huge.json');
      const texts = Array.from({ length: n }, (_, i) => `record ${i} fresh marker`);
      const pending = s.corpus.replaceDocument(doc('c', 'huge.json'), chunks(texts), existing, null);
      let done = false;
      void pending.then(() => (done = true), () => (done = true));
      const seen = new Set<string>();
      while (!done) {
        const fresh = (await s.corpus.searchText('fresh', { limit: 50 })).length;
        const ancient = (await s.corpus.searchText('ancient', { limit: 5 })).length;
        seen.add(`${ancient}/${fresh > 0 ? 'new' : 'none'}`);
        await new Promise((r) => setImmediate(r));
      }
      const r = await pending;
      // Readers saw the old version alone, never half of the new one next to it.
      expect(seen.has('1/new')).toBe(false);
      // ...and were served meanwhile: the write did not hold everything up until it finished.
      expect(seen.has('1/none')).toBe(true);
      expect(r.chunksAdded).toBe(n);
      expect(await s.corpus.searchText('ancient', { limit: 5 })).toEqual([]);
      const live = await s.corpus.chunkSources('c');
      expect(live).toHaveLength(n);
      expect(new Set(live.map((l) => l.sourceUri))).toEqual(new Set(['/docs/huge.json']));
      expect((await s.corpus.findDocument('c', '/docs/huge.json'))?.deletedAt).toBeNull();
      expect(r.chunkIdsRemoved).toHaveLength(1);
      expect(v1.documentId).toBeGreaterThan(0);
      expect((await s.corpus.counts()).chunksOfDeletedDocuments).toBe(0);
    }));

  it('embeddings: added for live chunks only, paged, counted, read back exactly', () =>
    withStore(async (s) => {
      const r = await s.corpus.replaceDocument(doc('c', 'e.md'), chunks(['p', 'q', 'r']), null, null);
      const missing = await s.corpus.chunksMissingEmbedding('m', 0, 10);
      expect(missing.map((m) => m.text)).toEqual(['p', 'q', 'r']);
      const v = unit(6, 1);
      const stored = await s.corpus.addEmbeddings('m', [[missing[0]!.id, v], [999_999, v]]);
      expect(stored).toBe(1);
      expect(await s.corpus.embeddingCount('m')).toBe(1);
      const back = await s.corpus.vectorsOf('m', [missing[0]!.id, missing[1]!.id]);
      expect([...back.keys()]).toEqual([missing[0]!.id]);
      expect(Array.from(back.get(missing[0]!.id)!)).toEqual(Array.from(v));
      expect((await s.corpus.embeddingsPage('m', 0, 10)).map(([id]) => id)).toEqual([missing[0]!.id]);
      expect((await s.corpus.chunksMissingEmbedding('m', 0, 10)).map((m) => m.text)).toEqual(['q', 'r']);
      expect(r.vectorsAdded).toEqual([]);
    }));

  it('index generations: one active; activating another retires it and drops the old model', () =>
    withStore(async (s) => {
      const g = { dimension: 4, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 100, hnswEfSearch: 64 };
      const a = await s.corpus.createGeneration({ ...g, modelId: 'A' }, 'active');
      await s.corpus.replaceDocument(doc('c', 'g.md'), chunks(['x'], 4), null, 'A');
      // An index file never saved lags the corpus; an engine's own vector index (pgvector) never does.
      expect(await s.corpus.vectorWorkPending('A')).toBe(!engine.nativeVectorSearch);
      await s.corpus.recordIndexSaved(a.generation, (await s.corpus.feedBounds()).head);
      expect(await s.corpus.vectorWorkPending('A')).toBe(false);
      expect(await s.corpus.vectorWorkPending('B')).toBe(true);
      const b = await s.corpus.createGeneration({ ...g, modelId: 'B' }, 'building');
      expect((await s.corpus.buildingGeneration('B'))?.generation).toBe(b.generation);
      const old = await s.corpus.activateGeneration(b.generation);
      expect(old?.generation).toBe(a.generation);
      expect((await s.corpus.activeGeneration())?.modelId).toBe('B');
      expect((await s.corpus.generations('retired')).map((x) => x.generation)).toEqual([a.generation]);
      expect(await s.corpus.embeddingCount('A')).toBe(0);
    }));
  it('optimizeFullText leaves full-text results unchanged', () =>
    withStore(async (s) => {
      for (let i = 0; i < 5; i++) await s.corpus.replaceDocument(doc('c', `o${i}.md`), chunks([`brin block range ${i}`, `gin posting list ${i}`]), null, null);
      const before = await s.corpus.searchText('brin posting', { limit: 20 });
      await s.corpus.optimizeFullText();
      expect(await s.corpus.searchText('brin posting', { limit: 20 })).toEqual(before);
      expect(before).toHaveLength(10);
    }));
  it('records an ef_search calibration on a generation (null until calibrated, replaced by the next)', () =>
    withStore(async (s) => {
      const g = { dimension: 4, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 100, hnswEfSearch: 64 };
      const a = await s.corpus.createGeneration({ ...g, modelId: 'A' }, 'active');
      expect(a.calibration).toBeNull();
      await s.corpus.recordCalibration(a.generation, { ef: 96, recall: 0.9912, at: '2026-01-02T03:04:05.000Z', vectors: 120_000 });
      expect((await s.corpus.activeGeneration())?.calibration).toEqual({ ef: 96, recall: expect.closeTo(0.9912, 6), at: '2026-01-02T03:04:05.000Z', vectors: 120_000 });
      await s.corpus.recordCalibration(a.generation, { ef: 128, recall: 0.995, at: '2026-01-03T00:00:00.000Z', vectors: 200_000 });
      expect((await s.corpus.generations('active'))[0]?.calibration?.ef).toBe(128);
    }));
  it('stores a document weight (default 1) and returns it with chunkMeta; a replace updates it', () =>
    withStore(async (s) => {
      const nav = await s.corpus.replaceDocument({ ...doc('c', 'index.html', 'Index'), weight: 0.25 }, chunks(['brin see block range']), null, null);
      const plain = await s.corpus.replaceDocument(doc('c', 'brin.html'), chunks(['brin block range index']), null, null);
      const ids = [...(await s.corpus.chunkSources('c'))].map((c) => c.id);
      const metas = new Map((await s.corpus.chunkMeta(ids)).map((m) => [m.documentId, m.weight]));
      expect(metas.get(nav.documentId)).toBeCloseTo(0.25, 6);
      expect(metas.get(plain.documentId)).toBe(1);
      const existing = await s.corpus.findDocument('c', '/docs/index.html');
      await s.corpus.replaceDocument({ ...doc('c', 'index.html', 'Index'), weight: 1 }, chunks(['brin see block range again']), existing, null);
      const after = await s.corpus.chunkMeta((await s.corpus.chunkSources('c')).map((c) => c.id));
      expect(after.every((m) => m.weight === 1)).toBe(true);
    }));

  it('document-level search: terms spread over two chunks of one document count together; follows replace and delete', () =>
    withStore(async (s) => {
      // "wombat" and "burrow" are in different chunks of split.md; each of one.md and two.md has only one of them.
      const split = await s.corpus.replaceDocument(doc('c', 'split.md'), chunks(['the wombat eats roots at night', 'the burrow is long and deep']), null, null);
      await s.corpus.replaceDocument(doc('c', 'one.md'), chunks(['a wombat sleeps by day']), null, null);
      await s.corpus.replaceDocument(doc('c', 'two.md'), chunks(['the burrow of a fox']), null, null);
      await s.corpus.replaceDocument(doc('other', 'else.md'), chunks(['wombat burrow elsewhere']), null, null);
      const docs = await s.corpus.searchDocuments('wombat burrow', { limit: 10, collection: 'c' });
      expect(docs[0]!.documentId).toBe(split.documentId);
      expect(docs).toHaveLength(3);
      expect(await s.corpus.searchDocuments('?!', { limit: 5 })).toEqual([]);
      // Its best chunk for a query is the one matching it.
      const best = await s.corpus.bestChunks('burrow', [split.documentId]);
      const recs = await s.corpus.chunkRecords([best.get(split.documentId)!]);
      expect(recs[0]!.text).toContain('burrow');
      expect((await s.corpus.bestChunks('nothing-matches', [split.documentId])).size).toBe(0);
      // A replace re-indexes the whole document; a delete removes it.
      const existing = await s.corpus.findDocument('c', '/docs/split.md');
      await s.corpus.replaceDocument(doc('c', 'split.md'), chunks(['only about a platypus now']), existing, null);
      expect((await s.corpus.searchDocuments('wombat burrow', { limit: 10, collection: 'c' })).map((d) => d.documentId)).not.toContain(split.documentId);
      expect((await s.corpus.searchDocuments('platypus', { limit: 10 })).map((d) => d.documentId)).toEqual([split.documentId]);
      await s.corpus.deleteDocument(split.documentId);
      expect(await s.corpus.searchDocuments('platypus', { limit: 10 })).toEqual([]);
    }));

  it('lexicalCandidates: the chunk list, the document list as best chunks and the metadata of both, in scope', () =>
    withStore(async (s) => {
      const split = await s.corpus.replaceDocument(doc('c', 'split.md'), chunks(['the wombat eats roots at night', 'the burrow is long and deep']), null, null);
      const one = await s.corpus.replaceDocument({ ...doc('c', 'one.md'), weight: 0.5 }, chunks(['a wombat and its burrow']), null, null);
      await s.corpus.replaceDocument(doc('other', 'else.md'), chunks(['wombat burrow elsewhere']), null, null);
      const opts = { limit: 10, documentLimit: 5, collection: 'c' };
      const got = await s.corpus.lexicalCandidates('wombat burrow', opts);
      expect(got.chunks).toEqual(await s.corpus.searchText('wombat burrow', opts));
      const docs = await s.corpus.searchDocuments('wombat burrow', { limit: 5, collection: 'c' });
      const best = await s.corpus.bestChunks('wombat burrow', docs.map((d) => d.documentId));
      expect(got.documentChunks).toEqual(docs.map((d) => best.get(d.documentId)));
      expect(new Set(docs.map((d) => d.documentId))).toEqual(new Set([split.documentId, one.documentId]));
      const ids = [...new Set([...got.chunks.map((c) => c.chunkId), ...got.documentChunks])];
      const sortById = (m: Array<{ chunkId: number }>) => [...m].sort((a, b) => a.chunkId - b.chunkId);
      expect(sortById(got.meta)).toEqual(sortById(await s.corpus.chunkMeta(ids)));
      expect(got.meta.find((m) => m.documentId === one.documentId)?.weight).toBeCloseTo(0.5, 6);
      expect(got.meta.every((m) => m.collection === 'c')).toBe(true);
      // No document list when its limit is 0; nothing at all for a query without a searchable term.
      expect((await s.corpus.lexicalCandidates('wombat burrow', { ...opts, documentLimit: 0 })).documentChunks).toEqual([]);
      expect(await s.corpus.lexicalCandidates('?!', opts)).toEqual({ chunks: [], documentChunks: [], meta: [] });
      // Excluded collections stay out of every part.
      const hidden = await s.corpus.lexicalCandidates('wombat burrow', { limit: 10, documentLimit: 5, excludeCollections: ['c'] });
      expect(hidden.meta.length).toBeGreaterThan(0);
      expect(hidden.meta.every((m) => m.collection === 'other')).toBe(true);
    }));

  it('document-level search follows a staged (large) replace', () =>
    withStore(async (s) => {
      const many = (word: string) => chunks(Array.from({ length: engine.boundedChunks + 3 }, (_, i) => `${word} part ${i}`));
      const first = await s.corpus.replaceDocument(doc('c', 'big.md'), many('quokka'), null, null);
      expect((await s.corpus.searchDocuments('quokka', { limit: 5 })).map((d) => d.documentId)).toEqual([first.documentId]);
      const existing = await s.corpus.findDocument('c', '/docs/big.md');
      const second = await s.corpus.replaceDocument(doc('c', 'big.md'), many('numbat'), existing, null);
      expect(await s.corpus.searchDocuments('quokka', { limit: 5 })).toEqual([]);
      expect((await s.corpus.searchDocuments('numbat', { limit: 5 })).map((d) => d.documentId)).toEqual([second.documentId]);
    }));

  it.runIf(engine.nativeVectorSearch === true)('dense search: nearest by cosine first, live chunks only, a collection filter still fills `limit`', () =>
    withStore(async (s) => {
      const dim = 8;
      const g = { dimension: dim, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 64, hnswEfSearch: 40 };
      await s.corpus.createGeneration({ ...g, modelId: 'm' }, 'active');
      const withVector = (text: string, salt: number): NewChunk[] => [{ ...chunks([text])[0]!, vector: unit(dim, salt) }];
      for (let i = 0; i < 60; i++) await s.corpus.replaceDocument(doc('big', `vbig-${i}`), withVector(`big ${i}`, i), null, 'm');
      const small: number[] = [];
      for (let i = 0; i < 6; i++) small.push((await s.corpus.replaceDocument(doc('small', `vsmall-${i}`), withVector(`small ${i}`, 1000 + i * 7), null, 'm')).vectorsAdded[0]![0]);
      const gone = await s.corpus.replaceDocument(doc('big', 'vgone'), withVector('gone', 500), null, 'm');
      await s.corpus.deleteDocument(gone.documentId);

      const hits = await s.corpus.searchVector('m', unit(dim, 1000 + 2 * 7), { limit: 10 });
      expect(hits).toHaveLength(10);
      expect(hits[0]!.chunkId).toBe(small[2]);
      expect(hits[0]!.score).toBeCloseTo(1, 5);
      for (let i = 1; i < hits.length; i++) expect(hits[i]!.score).toBeLessThanOrEqual(hits[i - 1]!.score);
      // A tombstoned document's vector is never served, even when it is the exact match.
      const exact = await s.corpus.searchVector('m', unit(dim, 500), { limit: 5 });
      expect(exact.map((h) => h.chunkId)).not.toContain(gone.vectorsAdded[0]![0]);
      // Near the big collection's vectors, filtered to the small one: still `limit` rows, all small.
      const filtered = await s.corpus.searchVector('m', unit(dim, 3), { limit: 5, collection: 'small' });
      expect(filtered).toHaveLength(5);
      expect(filtered.every((h) => small.includes(h.chunkId))).toBe(true);
      expect(await s.corpus.searchVector('other-model', unit(dim, 3), { limit: 5 })).toEqual([]);
    }));
}
