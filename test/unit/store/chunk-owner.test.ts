import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { NewChunk } from '../../../src/core/store/corpus.ts';
import { tempDir } from '../../helpers/cli.ts';

/**
 * Searches read a chunk's document and position through the chunks_owner index (migration 100),
 * never through the table's leaf pages, which hold the chunk text (bench/README.md, "Issue 17: the
 * chunk-owner index").
 */
describe('SQLite corpus store: chunk lookups of searches go through the chunks_owner index', () => {
  let store: SqliteStore;
  let file: string;
  const chunks = (topic: string, n: number): NewChunk[] =>
    Array.from({ length: n }, (_, ord) => ({
      ord,
      text: `${topic} item ${ord} ${ord % 3 === 0 ? 'common shared words' : 'rare unusual'} ${'filler '.repeat(ord % 5)}`,
      headingPath: ord % 4 === 0 ? `${topic} heading` : '',
      tokenCount: 8,
      contentSha256: `${topic}-${ord}`,
    }));

  beforeAll(async () => {
    file = path.join(tempDir(), 'mneme.sqlite');
    store = openSqliteStore(file);
    for (let d = 0; d < 12; d++) {
      await store.corpus.replaceDocument(
        { collection: d % 2 === 0 ? 'a' : 'b', sourceUri: `/doc${d}`, contentSha256: `d${d}`, title: `doc ${d}`, kind: 'text/plain', bytes: 1 },
        chunks(`topic${d % 4}`, 30),
        null,
        null,
      );
    }
    // Every search path, so every statement that names the index is prepared and run below.
    store.corpus.bm25CoverMinRows = 0;
    store.corpus.bm25SplitMinRows = 0;
  }, 60_000);
  afterAll(async () => {
    await store?.close();
  });

  it('the migration builds the index over every chunk', () => {
    const db = store.connection.db;
    expect(db.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'chunks_owner'").pluck().get()).toMatch(/ON chunks \(id, document_id, ord\)/);
    expect(db.prepare('SELECT count(*) FROM chunks INDEXED BY chunks_owner WHERE id > 0').pluck().get()).toBe(12 * 30);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
  });

  it('every search statement that names it reads only the index for chunks (a covering index: no table lookup)', async () => {
    for (const q of ['topic1 rare', 'common shared topic2', 'topic3 heading item', 'unusual']) {
      for (const scope of [{}, { collection: 'a' }, { excludeCollections: ['b'] }]) {
        await store.corpus.searchText(q, { ...scope, limit: 5 });
        await store.corpus.lexicalCandidates(q, { ...scope, limit: 5, documentLimit: 6 });
        await store.corpus.bestChunks(q, [1, 2, 3]);
      }
    }
    await store.corpus.chunkMeta([1, 2, 40, 999_999]);
    const cache = (store.connection as unknown as { cache: Map<string, unknown> }).cache;
    const named = [...cache.keys()].filter((sql) => sql.includes('INDEXED BY chunks_owner'));
    // chunkMeta, the live-count check, the ranked / keep statements in scope, the best chunk in a range.
    expect(named.length).toBeGreaterThanOrEqual(5);
    const db = store.connection.db;
    const params = { match: '"x"', inner: 1, limit: 1, dfs: null, collection: null, exclude: null, lo: 1, hi: 2, doc: 1 };
    for (const sql of named) {
      const explain = db.prepare(`EXPLAIN QUERY PLAN ${sql}`);
      const rows = (sql.includes('?') ? explain.all('[1]') : explain.all(params)) as Array<{ detail: string }>;
      const onChunks = rows.map((r) => r.detail).filter((d) => / c\b/.test(d));
      expect(onChunks.length, sql).toBeGreaterThan(0);
      for (const d of onChunks) expect(d, sql).toMatch(/USING COVERING INDEX chunks_owner/);
    }
  });

  it('the chunk of a deleted document is neither live nor listed', async () => {
    const before = await store.corpus.chunkMeta([1]);
    expect(before).toHaveLength(1);
    await store.corpus.deleteDocument(before[0]!.documentId);
    expect(await store.corpus.chunkMeta([1])).toEqual([]);
    const hits = await store.corpus.searchText('topic0', { limit: 50 });
    expect(hits.some((h) => h.chunkId === 1)).toBe(false);
  });
});
