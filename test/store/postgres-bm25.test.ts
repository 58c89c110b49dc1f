/**
 * PostgreSQL full-text ranking (085_bm25.sql, PostgresCorpusStore.searchText/searchDocuments): Okapi
 * BM25 with IDF from trigger-maintained term statistics. The statistics must equal a recount from the
 * rows after every write path: inserts, deletes, staged replaces (bounded transactions), document
 * deletion, and `mneme migrate` (inserts, and --force's TRUNCATE). Needs MNEME_TEST_DATABASE_URL.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { NewChunk, NewDocument } from '../../src/core/store/corpus.ts';
import { migrateSqliteToPostgres } from '../../src/core/store/migrate.ts';
import { DOC_TX_MAX_CHUNKS } from '../../src/core/store/postgres/corpus.ts';
import { openPostgresStore } from '../../src/core/store/postgres/index.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import { tempDir } from '../helpers/cli.ts';
import { findPostgresTestServer } from './postgres-env.ts';

const postgres = await findPostgresTestServer();
afterAll(async () => {
  await postgres.server?.dropCreatedDatabases();
});

let n = 0;
const doc = (name: string, collection = 'c'): NewDocument => ({
  collection,
  sourceUri: `/docs/${name}`,
  contentSha256: `sha-${name}-${++n}`,
  title: name,
  kind: 'text/plain',
  bytes: 1,
});
const chunk = (ord: number, text: string, headingPath = ''): NewChunk => ({ ord, text, headingPath, tokenCount: 1, contentSha256: `h-${ord}-${text}` });

/** Differences between the maintained statistics and a recount from the rows ([] when equal). */
async function statsDrift(url: string): Promise<unknown[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const drift = await c.query(`
      WITH chunk_df AS (SELECT u.lexeme, count(*) AS df FROM chunks c, unnest(c.tsv) u GROUP BY u.lexeme),
           doc_df AS (SELECT u.lexeme, count(*) AS df FROM documents d, unnest(d.tsv) u GROUP BY u.lexeme)
      SELECT 'chunk' AS scope, coalesce(a.lexeme, b.lexeme) AS lexeme, a.df AS kept, b.df AS counted
        FROM term_stats a FULL JOIN chunk_df b ON a.lexeme = b.lexeme WHERE a.df IS DISTINCT FROM b.df
      UNION ALL
      SELECT 'document', coalesce(a.lexeme, b.lexeme), a.df, b.df
        FROM document_term_stats a FULL JOIN doc_df b ON a.lexeme = b.lexeme WHERE a.df IS DISTINCT FROM b.df
      UNION ALL
      SELECT s.scope, '(n, total_len)', s.n * 1000000 + s.total_len, r.n * 1000000 + r.len
        FROM corpus_stats s JOIN (
          SELECT 'chunk' AS scope, count(*) AS n, coalesce(sum(mneme_tsv_len(tsv)), 0) AS len FROM chunks
          UNION ALL SELECT 'document', count(*), coalesce(sum(mneme_tsv_len(tsv)), 0) FROM documents WHERE tsv IS NOT NULL) r ON r.scope = s.scope
        WHERE (s.n, s.total_len) <> (r.n, r.len)
      UNION ALL
      SELECT 'tsv_len', id::text, tsv_len, mneme_tsv_len(tsv) FROM chunks WHERE tsv_len <> mneme_tsv_len(tsv)`);
    const rows = drift.rows;
    const counted = await c.query<{ n: string }>("SELECT n FROM corpus_stats WHERE scope = 'chunk'");
    expect(Number(counted.rows[0]?.n)).toBe(Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM chunks')).rows[0]?.n));
    return rows;
  } finally {
    await c.end();
  }
}

describe.skipIf(postgres.server === null)('PostgreSQL BM25 ranking and term statistics', () => {
  const server = postgres.server!;

  it('a rare term outranks a frequent one (IDF), and a term in a shorter chunk outranks the same in a longer one', async () => {
    const s = await openPostgresStore(await server.createDatabase());
    try {
      // Written first (lower id: ts_rank_cd's ties and its higher count of "kettle" would put it first).
      const frequentTwice = await s.corpus.replaceDocument(doc('a'), [chunk(0, 'kettle kettle boils water')], null, null);
      await s.corpus.replaceDocument(doc('b'), Array.from({ length: 30 }, (_, i) => chunk(i, `kettle number ${i} on the stove`)), null, null);
      const rare = await s.corpus.replaceDocument(doc('c'), [chunk(0, 'zeolite filters water')], null, null);
      const hits = await s.corpus.searchText('kettle zeolite', { limit: 5 });
      const firstOf = async (documentId: number) => (await s.corpus.chunkMeta(hits.map((h) => h.chunkId))).find((m) => m.documentId === documentId)?.chunkId;
      expect(hits[0]?.chunkId).toBe(await firstOf(rare.documentId));
      expect(hits[1]?.chunkId).toBe(await firstOf(frequentTwice.documentId));
      expect(hits[0]!.score).toBeGreaterThan(hits[1]!.score);
      // Same term, same count: the shorter text wins (length normalization).
      const short = await s.corpus.replaceDocument(doc('d'), [chunk(0, 'quokka')], null, null);
      await s.corpus.replaceDocument(doc('e'), [chunk(0, 'quokka lives on an island with many other animals and plants')], null, null);
      const q = await s.corpus.searchText('quokka', { limit: 5 });
      expect((await s.corpus.chunkMeta([q[0]!.chunkId]))[0]?.documentId).toBe(short.documentId);
      // Documents: the same IDF at document level (the document holding the rare term first).
      const docs = await s.corpus.searchDocuments('kettle zeolite', { limit: 3 });
      expect(docs[0]?.documentId).toBe(rare.documentId);
    } finally {
      await s.close();
    }
  });

  it('df, N and lengths equal a recount after inserts, replaces, staged replaces, deletes and document deletion', async () => {
    const url = await server.createDatabase();
    const s = await openPostgresStore(url);
    try {
      const a = await s.corpus.replaceDocument(doc('a'), [chunk(0, 'alpha beta', 'Intro'), chunk(1, 'beta gamma')], null, null);
      const b = await s.corpus.replaceDocument(doc('b'), [chunk(0, 'gamma delta')], null, null);
      expect(await statsDrift(url)).toEqual([]);
      // Replace in place (one transaction): old chunks out, new in.
      const refA = await s.corpus.findDocument('c', '/docs/a');
      await s.corpus.replaceDocument(doc('a'), [chunk(0, 'epsilon zeta')], refA, null);
      expect(await statsDrift(url)).toEqual([]);
      // Staged replace: more chunks than one transaction holds, written in bounded transactions.
      const big = Array.from({ length: DOC_TX_MAX_CHUNKS + 5 }, (_, i) => chunk(i, `staged word${i % 50} common`));
      const refB = await s.corpus.findDocument('c', '/docs/b');
      await s.corpus.replaceDocument(doc('b'), big, refB, null);
      expect(await statsDrift(url)).toEqual([]);
      const refB2 = await s.corpus.findDocument('c', '/docs/b');
      await s.corpus.replaceDocument(doc('b'), big.slice(0, DOC_TX_MAX_CHUNKS + 2).map((c) => ({ ...c, text: `${c.text} again` })), refB2, null);
      expect(await statsDrift(url)).toEqual([]);
      await s.corpus.deleteDocument(a.documentId);
      expect(await statsDrift(url)).toEqual([]);
      expect(b.documentId).toBeGreaterThan(0);
    } finally {
      await s.close();
    }
  });

  it('mneme migrate leaves the statistics right (inserts, then --force over a filled target)', async () => {
    const dir = tempDir('mneme-bm25-migrate-');
    const file = path.join(dir, 'mneme.sqlite');
    const lite = openSqliteStore(file);
    await lite.corpus.replaceDocument(doc('m1'), [chunk(0, 'migrated alpha', 'Head'), chunk(1, 'migrated beta')], null, null);
    await lite.corpus.replaceDocument(doc('m2'), [chunk(0, 'another gamma')], null, null);
    await lite.close();
    const url = await server.createDatabase();
    const pre = await openPostgresStore(url);
    await pre.corpus.replaceDocument(doc('stale'), [chunk(0, 'stale words only here')], null, null);
    await pre.close();
    try {
      await migrateSqliteToPostgres({ sqliteFile: file, targetUrl: url, force: true });
      expect(await statsDrift(url)).toEqual([]);
      const s = await openPostgresStore(url);
      try {
        expect(await s.corpus.searchText('stale', { limit: 5 })).toEqual([]);
        expect(await s.corpus.searchText('migrated gamma', { limit: 5 })).toHaveLength(3);
      } finally {
        await s.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
