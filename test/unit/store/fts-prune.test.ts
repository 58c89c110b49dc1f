import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DOC_FTS_MAX_CHUNKS, PRUNE_KEEP_RAREST, PRUNE_MIN_DF, PRUNE_MIN_DF_SHARE, PRUNE_ZERO_IDF_SHARE, pruneTerms } from '../../../src/core/store/sqlite/fts-query.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { tempDir } from '../../helpers/cli.ts';

describe('pruneTerms (query-term pruning by document frequency)', () => {
  const total = 1_000_000;
  const common = Math.max(PRUNE_MIN_DF, Math.ceil(PRUNE_MIN_DF_SHARE * total));
  const zeroIdf = Math.ceil(PRUNE_ZERO_IDF_SHARE * total);
  const ranked = (terms: string[]) => ({ terms, unranked: false });
  it('drops terms frequent both in absolute count and share, keeping the order of the rest', () => {
    expect(pruneTerms(['a', 'the', 'b', 'c'], [10, common, 20, 30], total)).toEqual(ranked(['a', 'b', 'c']));
  });
  it('always keeps the rarest terms, even when all are frequent', () => {
    expect(pruneTerms(['x', 'y', 'z'], [common + 2, common, common + 1], total)).toEqual(ranked(['y', 'z']));
  });
  it('never prunes in a small corpus (below PRUNE_MIN_DF) nor unknown (stemmed) terms', () => {
    expect(pruneTerms(['a', 'b', 'c'], [500, 900, 999], 1_000)).toEqual(ranked(['a', 'b', 'c']));
    expect(pruneTerms(['a', 'b', 'tables'], [1, 2, 0], total)).toEqual(ranked(['a', 'b', 'tables']));
  });
  it('leaves queries of at most PRUNE_KEEP_RAREST terms alone unless a term has IDF 0', () => {
    expect(PRUNE_KEEP_RAREST).toBe(2);
    expect(pruneTerms(['a', 'b'], [common, common], total)).toEqual(ranked(['a', 'b']));
    expect(pruneTerms(['a', 'b'], [zeroIdf, 42], total)).toEqual(ranked(['b']));
  });
  it('drops a term in most chunks (IDF 0) even among the rarest, while a rarer term remains', () => {
    expect(pruneTerms(['valve', '42', 'gauge'], [zeroIdf + 5, 4_000, zeroIdf], total)).toEqual(ranked(['42']));
  });
  it('a query of IDF-0 terms only keeps its rarest term, unranked', () => {
    expect(pruneTerms(['station', 'report'], [zeroIdf + 9, zeroIdf], total)).toEqual({ terms: ['report'], unranked: true });
  });
});

describe('SQLite searchText prunes frequent terms', () => {
  it('a chunk matching only the pruned term is not a candidate; rare-term matches rank as before', async () => {
    const store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
    try {
      const n = PRUNE_MIN_DF + 200;
      const texts = Array.from({ length: n }, (_, i) => (i === 3 ? 'zetax alphax betax' : i === 7 ? 'zetax gammax' : `zetax filler ${i}`));
      for (let d = 0; d * 100 < n; d++) {
        const chunks = texts.slice(d * 100, (d + 1) * 100).map((text, ord) => ({ ord, text, headingPath: '', tokenCount: 3, contentSha256: `h${d}-${ord}` }));
        await store.corpus.replaceDocument({ collection: 'c', sourceUri: `/d${d}`, contentSha256: `d${d}`, title: 'notes', kind: 'text/plain', bytes: 1 }, chunks, null, null);
      }
      const hits = await store.corpus.searchText('alphax betax gammax zetax', { limit: 50 });
      // Unpruned, every chunk matches "zetax" and 50 would come back.
      expect(hits).toHaveLength(2);
      // "zetax" is in every chunk (IDF 0): dropped even from a two-term query.
      const two = await store.corpus.searchText('alphax zetax', { limit: 50 });
      expect(two.map((h) => h.chunkId)).toEqual([hits.find((h) => h.score === Math.max(...hits.map((x) => x.score)))!.chunkId]);
      // Only IDF-0 terms ("filler" stems to itself and is in all chunks but two): the newest matches, unscored.
      const unranked = await store.corpus.searchText('zetax fillers', { limit: 5 });
      expect(unranked).toHaveLength(5);
      expect(new Set(unranked.map((h) => h.score)).size).toBe(1);
      expect(unranked.map((h) => h.chunkId)).toEqual([...unranked.map((h) => h.chunkId)].sort((a, b) => b - a));
      // A term is looked up by its stem: "zetaxes" is not in the vocabulary, its stem "zetax" (in every chunk) is.
      const stemmed = await store.corpus.searchText('zetax zetaxes alphax', { limit: 50 });
      expect(stemmed).toHaveLength(1);
    } finally {
      await store.close();
    }
  }, 60_000);
});

describe('SQLite document-level full text is bounded', () => {
  it(`covers the first DOC_FTS_MAX_CHUNKS chunks of a document; bestChunks looks among those`, async () => {
    const store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
    try {
      const n = DOC_FTS_MAX_CHUNKS + 50;
      const chunks = Array.from({ length: n }, (_, ord) => ({
        ord,
        text: ord === 5 ? 'early quokkaword' : ord === n - 1 ? 'late wombatword' : `row ${ord}`,
        headingPath: '',
        tokenCount: 2,
        contentSha256: `h${ord}`,
      }));
      const { documentId } = await store.corpus.replaceDocument({ collection: 'c', sourceUri: '/big', contentSha256: 'big', title: 'big table', kind: 'text/plain', bytes: 1 }, chunks, null, null);
      expect((await store.corpus.searchDocuments('quokkaword', { limit: 5 })).map((d) => d.documentId)).toEqual([documentId]);
      expect(await store.corpus.searchDocuments('wombatword', { limit: 5 })).toEqual([]);
      // The chunk-level list still finds every chunk.
      expect(await store.corpus.searchText('wombatword', { limit: 5 })).toHaveLength(1);
      const best = await store.corpus.bestChunks('quokkaword wombatword', [documentId]);
      const early = (await store.corpus.searchText('quokkaword', { limit: 1 }))[0]!.chunkId;
      expect(best.get(documentId)).toBe(early);
    } finally {
      await store.close();
    }
  });
});
