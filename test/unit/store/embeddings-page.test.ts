import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { SQL_EMBEDDINGS_PAGE } from '../../../src/core/store/sqlite/corpus.ts';
import { tempDir } from '../../helpers/cli.ts';

/** embeddingsPage walks the embeddings table's primary key, skipping the other models' rows there. */
describe('SQLite corpus store: paging through one model’s vectors', () => {
  let store: SqliteStore;
  const vector = (id: number, model: string) => Float32Array.from({ length: 4 }, (_, i) => id * 10 + i + (model === 'b' ? 0.5 : 0));

  beforeAll(async () => {
    store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
    const chunks = Array.from({ length: 50 }, (_, ord) => ({ ord, text: `chunk ${ord}`, headingPath: '', tokenCount: 2, contentSha256: `c${ord}` }));
    await store.corpus.replaceDocument({ collection: 'a', sourceUri: '/d', contentSha256: 'd', title: 'd', kind: 'text/plain', bytes: 1 }, chunks, null, null);
    const ids = (await store.corpus.chunkSources('a')).map((c) => c.id).sort((x, y) => x - y);
    // Model a on every chunk, model b on every third (a model switch half done): rows interleave in the key.
    await store.corpus.addEmbeddings('a', ids.map((id) => [id, vector(id, 'a')]));
    await store.corpus.addEmbeddings('b', ids.filter((id) => id % 3 === 0).map((id) => [id, vector(id, 'b')]));
  });
  afterAll(async () => {
    await store?.close();
  });

  it('returns each model’s vectors exactly once, in chunk id order, page after page', async () => {
    for (const model of ['a', 'b']) {
      const seen: Array<[number, Float32Array]> = [];
      for (let after = 0; ; ) {
        const page = await store.corpus.embeddingsPage(model, after, 7);
        if (page.length === 0) break;
        expect(page.length).toBeLessThanOrEqual(7);
        seen.push(...page);
        after = page[page.length - 1]![0];
      }
      const ids = seen.map(([id]) => id);
      expect(ids).toEqual([...ids].sort((x, y) => x - y));
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(await store.corpus.embeddingCount(model));
      for (const [id, v] of seen) expect([...v]).toEqual([...vector(id, model)]);
    }
    expect(await store.corpus.embeddingsPage('nosuchmodel', 0, 10)).toEqual([]);
  });

  it('walks the primary key, not the embeddings_model index (a second descent per row)', () => {
    const plan = store.connection.db.prepare(`EXPLAIN QUERY PLAN ${SQL_EMBEDDINGS_PAGE}`).all('a', 0, 10) as Array<{ detail: string }>;
    expect(plan.map((r) => r.detail)).toEqual(['SEARCH embeddings USING PRIMARY KEY (chunk_id>?)']);
  });
});
