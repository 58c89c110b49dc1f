import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COVER_MAX_TERMS,
  COVER_MIN_ROWS,
  FTS5_BM25_K1,
  SPLIT_MIN_OPTIONAL_ROWS,
  bm25Idf,
  coverPlan,
  mergeBest,
  mergeSplit,
  splitSettled,
  splitTerms,
  termScoreBound,
} from '../../../src/core/store/sqlite/bm25-split.ts';
import type { ScoredChunkRef } from '../../../src/core/store/corpus.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { tempDir } from '../../helpers/cli.ts';

describe('splitTerms (which terms a BM25 search may leave for last)', () => {
  const total = 1_000_000;
  const term = (t: string, df: number, singleToken = true) => ({ term: t, df, singleToken });

  it('bounds a term by (k1 + 1) × its IDF, read from a lowered frequency', () => {
    expect(bm25Idf(10, 1000)).toBeCloseTo(Math.log(990.5 / 10.5), 12);
    expect(bm25Idf(900, 1000)).toBe(1e-6);
    expect(termScoreBound(1000, total)).toBeCloseTo((FTS5_BM25_K1 + 1) * bm25Idf(800, total), 12);
  });

  it('leaves a frequent term optional when its bound is below the rare terms’ guess', () => {
    const split = splitTerms([term('rare1', 800), term('rare2', 900), term('rare3', 1200), term('common', 9000)], total, 100);
    expect(split).toEqual({ essential: ['rare1', 'rare2', 'rare3'], optional: ['common'], optionalBound: termScoreBound(9000, total) });
  });

  it('keeps everything essential when the optional rows would be few or the bound too high', () => {
    // Too few rows to save: the plain query is cheap.
    expect(splitTerms([term('a', 100), term('b', 200), term('c', SPLIT_MIN_OPTIONAL_ROWS - 1)], total, 100)).toBeNull();
    // Two terms of similar frequency: the bound of one exceeds the other's IDF.
    expect(splitTerms([term('a', 5000), term('b', 6000)], total, 100)).toBeNull();
    // A phrase's frequency is unknown: never optional.
    expect(splitTerms([term('rare1', 800), term('rare2', 900), term('common phrase', 9000, false)], total, 100)).toBeNull();
    expect(splitTerms([term('only', 9000)], total, 100)).toBeNull();
  });

  it('merges Q1 and Q2 (Q2 scores win), adds Q3, and settles only with k rows at or above the bound', () => {
    const merged = mergeSplit(3, [{ id: 1, score: 5 }, { id: 2, score: 4 }, { id: 3, score: 1 }], [{ id: 3, score: 6 }]);
    expect(merged).toEqual([{ id: 3, score: 6 }, { id: 1, score: 5 }, { id: 2, score: 4 }]);
    expect(splitSettled(3, merged, 4)).toBe(true);
    expect(splitSettled(3, merged, 4.5)).toBe(false);
    expect(splitSettled(4, merged, 0)).toBe(false);
    expect(mergeSplit(2, merged, [], [{ id: 9, score: 5.5 }, { id: 1, score: 99 }])).toEqual([{ id: 3, score: 6 }, { id: 9, score: 5.5 }]);
  });
});

describe('coverPlan (the pair cover of a query’s terms)', () => {
  const total = 1_000_000;
  const term = (t: string, df: number, singleToken = true) => ({ term: t, df, singleToken });

  it('pairs each term, rarest first, with the rarer ones NOT-ed; singles by descending bound', () => {
    const plan = coverPlan([term('mid', 9000), term('rare', 700), term('e 417', 1500, false), term('topic', 1200)], total);
    expect(plan!.pairs).toEqual([
      '"rare" AND ("topic" OR "e 417" OR "mid")',
      '("topic" AND ("e 417" OR "mid")) NOT ("rare")',
      '("e 417" AND ("mid")) NOT ("rare" OR "topic")',
    ]);
    // A phrase's own frequency is unknown: it takes the largest bound there is, so it comes first.
    expect(plan!.singles).toEqual([
      { match: '"e 417"', bound: termScoreBound(0, total) },
      { match: '"rare"', bound: termScoreBound(700, total) },
      { match: '"topic"', bound: termScoreBound(1200, total) },
      { match: '"mid"', bound: termScoreBound(9000, total) },
    ]);
  });

  it('is null for one term, too many terms, or too few rows to save', () => {
    expect(coverPlan([term('only', 90_000)], total)).toBeNull();
    expect(coverPlan(Array.from({ length: COVER_MAX_TERMS + 1 }, (_, i) => term(`t${i}`, 5000)), total)).toBeNull();
    expect(coverPlan([term('a', 100), term('b', COVER_MIN_ROWS - 101)], total)).toBeNull();
    expect(coverPlan([term('a', 100), term('b', COVER_MIN_ROWS - 100)], total)).not.toBeNull();
  });

  it('mergeBest keeps each row’s higher score and the best k', () => {
    expect(mergeBest(3, [{ id: 1, score: 5 }, { id: 2, score: 4 }, { id: 3, score: 1 }], [{ id: 3, score: 6 }, { id: 1, score: 2 }, { id: 4, score: 4 }])).toEqual([
      { id: 3, score: 6 },
      { id: 1, score: 5 },
      { id: 2, score: 4 },
    ]);
  });
});

/** A seeded corpus: Zipf words plus each document's topic words, in two collections. */
function corpus(seed: number, documents: number, chunksPerDocument: number) {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const vocab = Array.from({ length: 4000 }, (_, i) => `w${i.toString(36)}x`);
  const zipf = () => vocab[Math.min(vocab.length - 1, Math.floor(Math.exp(rand() * Math.log(vocab.length))) - 1)]!;
  const topics = Array.from({ length: 30 }, (_, c) => Array.from({ length: 8 }, (_, i) => `topic${c}q${i}`));
  const docs = Array.from({ length: documents }, (_, d) => {
    const topic = topics[d % topics.length]!;
    const chunks = Array.from({ length: chunksPerDocument }, () => {
      const n = 8 + Math.floor(rand() * 40);
      return Array.from({ length: n }, () => (rand() < 0.25 ? topic[Math.floor(rand() * topic.length)]! : zipf())).join(' ');
    });
    return { collection: d % 3 === 0 ? 'b' : 'a', chunks };
  });
  const queries = Array.from({ length: 160 }, (_, i) => {
    const topic = topics[Math.floor(rand() * topics.length)]!;
    const pick = () => topic[Math.floor(rand() * topic.length)]!;
    // Topic words with one mid-frequency or frequent word; some two-word queries; one phrase.
    const frequent = vocab[Math.floor(rand() * (i % 2 === 0 ? 12 : 120))]!;
    if (i % 5 === 0) return `${pick()} ${frequent}`;
    if (i % 7 === 0) return `"${pick()} ${pick()}" ${frequent} ${pick()}`;
    return `${pick()} ${pick()} ${pick()} ${frequent}`;
  });
  return { docs, queries };
}

/** Same length; equal scores at each rank; the same ids except where a tie straddles the cut. */
function expectSameTopK(actual: ScoredChunkRef[], expected: ScoredChunkRef[], what: string) {
  expect(actual.length, what).toBe(expected.length);
  actual.forEach((a, i) => expect(Math.abs(a.score - expected[i]!.score), `${what} rank ${i}`).toBeLessThan(1e-9));
  const last = expected.at(-1)?.score;
  const strict = (rows: ScoredChunkRef[]) => rows.filter((r) => last === undefined || r.score - last > 1e-9).map((r) => r.chunkId).sort((x, y) => x - y);
  expect(strict(actual), what).toEqual(strict(expected));
}

describe('SQLite searchText: the split search returns the plain search’s top k', () => {
  let store: SqliteStore;
  const { docs, queries } = corpus(11, 120, 150);

  beforeAll(async () => {
    store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
    for (const [d, doc] of docs.entries()) {
      const chunks = doc.chunks.map((text, ord) => ({ ord, text, headingPath: ord % 10 === 0 ? 'topic0q0 notes' : '', tokenCount: 10, contentSha256: `h${d}-${ord}` }));
      await store.corpus.replaceDocument({ collection: doc.collection, sourceUri: `/d${d}`, contentSha256: `d${d}`, title: `document ${d}`, kind: 'text/plain', bytes: 1 }, chunks, null, null);
    }
  }, 120_000);
  afterAll(async () => {
    await store?.close();
  });

  it('FTS5 scores add up over the phrases of OR, AND and NOT (what the split relies on)', async () => {
    const corpusStore = store.corpus as unknown as { rankedChunks(m: string, k: number, c: string | null, e: string | null): Array<{ id: number; score: number }> };
    const score = (m: string) => new Map(corpusStore.rankedChunks(m, 100_000, null, null).map((r) => [r.id, r.score]));
    const [a, b, c] = ['"topic1q1"', '"topic1q2"', '"w2x"'].map(score) as [Map<number, number>, Map<number, number>, Map<number, number>];
    const sum = (id: number, parts: Array<Map<number, number>>) => parts.reduce((n, p) => n + (p.get(id) ?? 0), 0);
    const and = score('("w2x") AND ("topic1q1" OR "topic1q2")');
    const not = score('("w2x") NOT ("topic1q1" OR "topic1q2")');
    expect(and.size).toBeGreaterThan(10);
    expect(not.size).toBeGreaterThan(10);
    for (const [id, s] of and) expect(Math.abs(s - sum(id, [a, b, c]))).toBeLessThan(1e-9);
    for (const [id, s] of not) expect(Math.abs(s - sum(id, [c]))).toBeLessThan(1e-9);
  });

  it('bestChunks: each document’s best chunk is the one the MATCH ranks first among its chunks', async () => {
    const corpusStore = store.corpus as unknown as { rankedChunks(m: string, k: number, c: string | null, e: string | null): Array<{ id: number; score: number }> };
    for (const q of queries.slice(0, 20)) {
      const docs = await store.corpus.searchDocuments(q, { limit: 10 });
      const best = await store.corpus.bestChunks(q, docs.map((d) => d.documentId));
      // Reference: every match of the (pruned) query, ranked; a document's first one is its best chunk.
      const { terms } = (store.corpus as unknown as { searchTerms(q: string): { terms: string[] } }).searchTerms(q);
      const all = corpusStore.rankedChunks(terms.map((t) => `"${t}"`).join(' OR '), 1_000_000, null, null);
      const metas = new Map((await store.corpus.chunkMeta(all.map((r) => r.id))).map((m) => [m.chunkId, m.documentId]));
      const expected = new Map<number, number>();
      for (const r of [...all].sort((a, b) => b.score - a.score || a.id - b.id)) {
        const doc = metas.get(r.id)!;
        if (docs.some((d) => d.documentId === doc) && !expected.has(doc)) expected.set(doc, r.id);
      }
      expect(best, q).toEqual(expected);
    }
  });

  it('lexicalCandidates takes a listed document\'s best chunk from the chunk list: the same chunks as bestChunks, ties aside', async () => {
    const corpusStore = store.corpus as unknown as { rankedChunks(m: string, k: number, c: string | null, e: string | null): Array<{ id: number; score: number }>; searchTerms(q: string): { terms: string[] } };
    let fromList = 0;
    let compared = 0;
    for (const [i, q] of queries.slice(0, 40).entries()) {
      const { terms } = corpusStore.searchTerms(q);
      const scoreOf = new Map(corpusStore.rankedChunks(terms.map((t) => `"${t}"`).join(' OR '), 1_000_000, null, null).map((r) => [r.id, r.score]));
      for (const opts of [{ limit: 100, documentLimit: 30 }, { limit: 10, documentLimit: 20 }, { limit: 30, documentLimit: 10, collection: i % 2 === 0 ? 'a' : 'b' }, { limit: 50, documentLimit: 15, excludeCollections: ['b'] }]) {
        store.corpus.bm25SplitMinRows = i % 2 === 0 ? 0 : null;
        const got = await store.corpus.lexicalCandidates(q, opts);
        const docs = await store.corpus.searchDocuments(q, { ...opts, limit: opts.documentLimit });
        const best = await store.corpus.bestChunks(q, docs.map((d) => d.documentId));
        const expected = docs.map((d) => best.get(d.documentId)).filter((id): id is number => id !== undefined);
        expect(got.documentChunks.length, q).toBe(expected.length);
        got.documentChunks.forEach((id, k) => expect(Math.abs(scoreOf.get(id)! - scoreOf.get(expected[k]!)!), `${q} ${JSON.stringify(opts)} #${k}`).toBeLessThan(1e-9));
        const listed = new Set(got.chunks.map((c) => c.chunkId));
        fromList += got.documentChunks.filter((id) => listed.has(id)).length;
        compared += expected.length;
        // Every chunk of either list has its metadata.
        const metaIds = new Set(got.meta.map((m) => m.chunkId));
        for (const id of [...listed, ...got.documentChunks]) expect(metaIds.has(id)).toBe(true);
      }
    }
    store.corpus.bm25SplitMinRows = 0;
    // Both ways were taken: chunks found in the list, and documents that needed their own MATCH.
    expect(fromList).toBeGreaterThan(50);
    expect(compared - fromList).toBeGreaterThan(50);
  }, 120_000);

  it('the pair cover: for every query, scope and k, through its pairs, its singles and its plain fallback', async () => {
    const corpusStore = store.corpus;
    corpusStore.bm25CoverMinRows = 0;
    const before = { ...corpusStore.bm25Paths };
    const beforeDocs = { ...corpusStore.bm25DocumentPaths };
    try {
      for (const [i, q] of queries.entries()) {
        for (const opts of [{ limit: 100 }, { limit: 10 }, { limit: 30, collection: i % 2 === 0 ? 'a' : 'b' }, { limit: 50, excludeCollections: ['b'] }]) {
          corpusStore.bm25SplitMinRows = null;
          const plain = await store.corpus.searchText(q, opts);
          corpusStore.bm25SplitMinRows = 0;
          expectSameTopK(await store.corpus.searchText(q, opts), plain, `${q} ${JSON.stringify(opts)}`);
          // Each topic is in 4 of the 120 documents: a list of 3 is mostly settled by the pairs.
          for (const docLimit of [3, 20]) {
            const docOpts = { ...opts, limit: Math.min(opts.limit, docLimit) };
            corpusStore.bm25SplitMinRows = null;
            const plainDocs = await store.corpus.searchDocuments(q, docOpts);
            corpusStore.bm25SplitMinRows = 0;
            const asRefs = (rows: Array<{ documentId: number; score: number }>) => rows.map((r) => ({ chunkId: r.documentId, score: r.score }));
            expectSameTopK(asRefs(await store.corpus.searchDocuments(q, docOpts)), asRefs(plainDocs), `documents: ${q} ${JSON.stringify(docOpts)}`);
          }
        }
      }
      const paths = corpusStore.bm25Paths;
      expect(paths.cover - before.cover).toBeGreaterThan(100);
      expect(paths.coverSingles - before.coverSingles).toBeGreaterThan(10);
      expect(paths.coverPlain - before.coverPlain).toBeGreaterThan(10);
      expect(corpusStore.bm25DocumentPaths.cover - beforeDocs.cover).toBeGreaterThan(50);
    } finally {
      corpusStore.bm25CoverMinRows = null;
    }
  }, 120_000);

  it('the pair cover never lists a deleted document’s chunk: an unscoped search runs again in scope', async () => {
    const corpusStore = store.corpus;
    corpusStore.bm25CoverMinRows = 0;
    corpusStore.bm25SplitMinRows = 0;
    const q = queries.find((x) => !x.includes('"') && x.split(' ').length >= 3)!;
    const top = await store.corpus.searchText(q, { limit: 10 });
    const [victim] = await store.corpus.chunkMeta([top[0]!.chunkId]);
    const db = store.connection.db;
    // A document marked deleted whose chunks are not removed yet (deleteDocument does it in batches).
    db.prepare("UPDATE documents SET deleted_at = '2026-01-01T00:00:00Z' WHERE id = ?").run(victim!.documentId);
    const rescoped = corpusStore.bm25Paths.coverRescoped;
    try {
      corpusStore.bm25SplitMinRows = null;
      const plain = await store.corpus.searchText(q, { limit: 10 });
      corpusStore.bm25SplitMinRows = 0;
      const cover = await store.corpus.searchText(q, { limit: 10 });
      expect(plain.map((r) => r.chunkId)).not.toContain(top[0]!.chunkId);
      expectSameTopK(cover, plain, q);
      expect(corpusStore.bm25Paths.coverRescoped).toBe(rescoped + 1);
      // lexicalCandidates reads the cover's metadata while checking it: the same list, no dead chunk.
      const lexical = await store.corpus.lexicalCandidates(q, { limit: 10, documentLimit: 0 });
      expectSameTopK(lexical.chunks, plain, q);
      expect(lexical.meta.map((m) => m.chunkId).sort()).toEqual(plain.map((r) => r.chunkId).sort());
      expect(corpusStore.bm25Paths.coverRescoped).toBe(rescoped + 2);
    } finally {
      db.prepare('UPDATE documents SET deleted_at = NULL WHERE id = ?').run(victim!.documentId);
      corpusStore.bm25CoverMinRows = null;
    }
  });

  it('for every query, scope and k, and takes both the settled and the unsettled path', async () => {
    const corpusStore = store.corpus;
    corpusStore.bm25CoverMinRows = null;
    for (const [i, q] of queries.entries()) {
      for (const opts of [{ limit: 100 }, { limit: 10 }, { limit: 30, collection: i % 2 === 0 ? 'a' : 'b' }, { limit: 50, excludeCollections: ['b'] }]) {
        corpusStore.bm25SplitMinRows = null;
        const plain = await store.corpus.searchText(q, opts);
        corpusStore.bm25SplitMinRows = 0;
        const split = await store.corpus.searchText(q, opts);
        expectSameTopK(split, plain, `${q} ${JSON.stringify(opts)}`);
        // The document-level list (documents_fts, its own frequencies) splits the same way.
        const docOpts = { ...opts, limit: Math.min(opts.limit, 20) };
        corpusStore.bm25SplitMinRows = null;
        const plainDocs = await store.corpus.searchDocuments(q, docOpts);
        corpusStore.bm25SplitMinRows = 0;
        const splitDocs = await store.corpus.searchDocuments(q, docOpts);
        const asRefs = (rows: Array<{ documentId: number; score: number }>) => rows.map((r) => ({ chunkId: r.documentId, score: r.score }));
        expectSameTopK(asRefs(splitDocs), asRefs(plainDocs), `documents: ${q} ${JSON.stringify(docOpts)}`);
      }
    }
    const paths = corpusStore.bm25Paths;
    expect(paths.settled).toBeGreaterThan(20);
    expect(paths.unsettled).toBeGreaterThan(5);
    const docPaths = corpusStore.bm25DocumentPaths;
    expect(docPaths.settled + docPaths.unsettled).toBeGreaterThan(20);
  }, 120_000);
});
