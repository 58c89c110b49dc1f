import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FTS_OPTIMIZE_MIN_SHARE, runIngest } from '../../../ingest/pipeline.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { tempDir } from '../../helpers/cli.ts';

/** An FTS5 table's segment count, from its structure record (fts5_index.c: cookie, [V2 marker], nLevel, nSegment varints). */
function segments(store: SqliteStore, table: 'chunks_fts' | 'documents_fts'): number {
  const b = (store.connection.db.prepare(`SELECT block FROM ${table}_data WHERE id = 10`).get() as { block: Buffer }).block;
  let i = b.readUInt32BE(4) === 0xff000001 ? 8 : 4;
  const varint = () => {
    let v = 0;
    for (;;) {
      const x = b[i++]!;
      v = v * 128 + (x & 0x7f);
      if (!(x & 0x80)) return v;
    }
  };
  varint(); // levels
  return varint();
}

const words = Array.from({ length: 300 }, (_, i) => `word${i}`);
const text = (d: number, c: number) => Array.from({ length: 40 }, (_, k) => words[(d * 31 + c * 7 + k * k) % words.length]).join(' ');

describe('optimizeFullText: FTS5 segments merged in bounded steps', () => {
  let store: SqliteStore;
  beforeAll(async () => {
    store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
    // One transaction per document: FTS5 flushes a segment each time (automerge keeps some).
    for (let d = 0; d < 120; d++) {
      const chunks = Array.from({ length: 12 }, (_, ord) => ({ ord, text: text(d, ord), headingPath: '', tokenCount: 40, contentSha256: `h${d}-${ord}` }));
      await store.corpus.replaceDocument({ collection: 'a', sourceUri: `/d${d}`, contentSha256: `d${d}`, title: `doc ${d}`, kind: 'text/plain', bytes: 1 }, chunks, null, null);
    }
  }, 60_000);
  afterAll(async () => store?.close());

  it('leaves one segment per table, over many small steps, with the same results', async () => {
    expect(segments(store, 'chunks_fts')).toBeGreaterThan(3);
    expect(segments(store, 'documents_fts')).toBeGreaterThan(3);
    const queries = ['word3 word17 word250', 'word1 word2', 'word299'];
    const before = await Promise.all(queries.map((q) => store.corpus.lexicalCandidates(q, { limit: 20, documentLimit: 10 })));
    const writes: number[] = [];
    const conn = store.connection;
    const write = conn.write.bind(conn);
    conn.write = (fn) => {
      writes.push(1);
      return write(fn);
    };
    store.corpus.ftsMergeStepPages = 2;
    await store.corpus.optimizeFullText();
    conn.write = write;
    expect(segments(store, 'chunks_fts')).toBe(1);
    expect(segments(store, 'documents_fts')).toBe(1);
    expect(writes.length).toBeGreaterThan(10);
    expect(await Promise.all(queries.map((q) => store.corpus.lexicalCandidates(q, { limit: 20, documentLimit: 10 })))).toEqual(before);
    // Nothing left to merge: one step per table, no work.
    writes.length = 0;
    conn.write = (fn) => {
      writes.push(1);
      return write(fn);
    };
    await store.corpus.optimizeFullText();
    conn.write = write;
    expect(writes.length).toBe(2);
  });
});

describe('ingest merges the full-text index when it changed a large share of the chunks', () => {
  it('a first ingest of a folder (all of its chunks new) ends with one segment; a one-file update of a large corpus does not merge', async () => {
    const root = tempDir();
    // Outside the data dir (ingest never walks it).
    const docs = tempDir();
    for (let d = 0; d < 80; d++) fs.writeFileSync(path.join(docs, `f${d}.md`), `# Page ${d}\n\n${Array.from({ length: 6 }, (_, c) => text(d, c)).join('\n\n')}\n`);
    const store = openSqliteStore(path.join(root, 'mneme.sqlite'));
    const ingest = () => runIngest({ store, dataDir: root, paths: [docs], collection: 'a', prune: false, maxFileBytes: 1e6, vectors: async () => ({ embedder: null, index: null, warnings: [] }), configuredModel: null });
    try {
      const first = await ingest();
      expect(first.chunks_added).toBeGreaterThan(80);
      expect(segments(store, 'chunks_fts')).toBe(1);
      expect(segments(store, 'documents_fts')).toBe(1);
      // One changed file: far below FTS_OPTIMIZE_MIN_SHARE of the chunks, so FTS5's new segment stays.
      fs.writeFileSync(path.join(docs, 'f0.md'), '# Page 0\n\nword1 word2 changed\n');
      const second = await ingest();
      expect(second.chunks_added + second.chunks_deleted).toBeLessThan(FTS_OPTIMIZE_MIN_SHARE * first.chunks_added);
      expect(segments(store, 'chunks_fts')).toBeGreaterThan(1);
    } finally {
      await store.close();
    }
  }, 60_000);
});
