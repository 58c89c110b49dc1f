import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PRUNE_KEEP_RAREST, PRUNE_MIN_DF, PRUNE_MIN_DF_SHARE, pruneTerms } from '../../../src/core/store/sqlite/fts-query.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { tempDir } from '../../helpers/cli.ts';

describe('pruneTerms (query-term pruning by document frequency)', () => {
  const total = 1_000_000;
  const common = Math.max(PRUNE_MIN_DF, Math.ceil(PRUNE_MIN_DF_SHARE * total));
  it('drops terms frequent both in absolute count and share, keeping the order of the rest', () => {
    expect(pruneTerms(['a', 'the', 'b', 'c'], [10, common, 20, 30], total)).toEqual(['a', 'b', 'c']);
  });
  it('always keeps the rarest terms, even when all are frequent', () => {
    expect(pruneTerms(['x', 'y', 'z'], [common * 3, common, common * 2], total)).toEqual(['y', 'z']);
  });
  it('never prunes in a small corpus (below PRUNE_MIN_DF) nor unknown (stemmed) terms', () => {
    expect(pruneTerms(['a', 'b', 'c'], [500, 900, 999], 1_000)).toEqual(['a', 'b', 'c']);
    expect(pruneTerms(['a', 'b', 'tables'], [1, 2, 0], total)).toEqual(['a', 'b', 'tables']);
  });
  it('leaves queries of at most PRUNE_KEEP_RAREST terms alone', () => {
    expect(pruneTerms(['a', 'b'], [common, common], total)).toEqual(['a', 'b']);
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
      const two = await store.corpus.searchText('alphax zetax', { limit: 50 });
      expect(two).toHaveLength(50); // two terms: nothing pruned
    } finally {
      await store.close();
    }
  }, 60_000);
});
