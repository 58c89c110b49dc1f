/**
 * Browsing documents (GET /v1/documents: listDocuments, getDocument) and ingest jobs (JobStore):
 * one suite run against every engine (test/store/engines.test.ts).
 */
import { expect, it } from 'vitest';
import type { NewChunk, NewDocument } from '../../../src/core/store/corpus.ts';
import type { Store } from '../../../src/core/store/index.ts';

export interface DocumentsEngineUnderTest {
  name: string;
  make(): Promise<Store>;
}

const doc = (collection: string, sourceUri: string, title: string): NewDocument => ({
  collection, sourceUri, title, contentSha256: `sha-${sourceUri}`, kind: 'text/markdown', bytes: 100 + title.length,
});
const chunks = (texts: string[]): NewChunk[] =>
  texts.map((text, ord) => ({ ord, text, headingPath: '', tokenCount: 3, contentSha256: `h-${text}-${ord}` }));

export function documentsContract(engine: DocumentsEngineUnderTest): void {
  const withStore = async (fn: (s: Store) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('lists live documents newest first in keyset pages, with chunk counts, filters and search', async () => {
    await withStore(async (s) => {
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        const col = i % 2 === 0 ? 'team' : 'other';
        const r = await s.corpus.replaceDocument(doc(col, `/srv/docs/file_${i}.md`, `Title ${i}`), chunks([`alpha text ${i}`, `zebra${i} more`]), null, null);
        ids.push(r.documentId);
      }
      const page1 = await s.corpus.listDocuments({ limit: 2 });
      expect(page1.map((d) => d.id)).toEqual([ids[4], ids[3]]);
      expect(page1[0]).toMatchObject({ collection: 'team', title: 'Title 4', sourceUri: '/srv/docs/file_4.md', chunks: 2, bytes: 107, kind: 'text/markdown' });
      expect(typeof page1[0]!.updatedAt).toBe('string');
      const page2 = await s.corpus.listDocuments({ limit: 2, beforeId: page1[1]!.id });
      expect(page2.map((d) => d.id)).toEqual([ids[2], ids[1]]);
      const page3 = await s.corpus.listDocuments({ limit: 2, beforeId: page2[1]!.id });
      expect(page3.map((d) => d.id)).toEqual([ids[0]]);

      expect((await s.corpus.listDocuments({ limit: 10, collection: 'team' })).map((d) => d.id)).toEqual([ids[4], ids[2], ids[0]]);
      // Substring of the title (case-insensitive), of the source, and a full-text term of the text.
      expect((await s.corpus.listDocuments({ limit: 10, q: 'title 3' })).map((d) => d.id)).toEqual([ids[3]]);
      expect((await s.corpus.listDocuments({ limit: 10, q: 'file_1' })).map((d) => d.id)).toEqual([ids[1]]);
      expect((await s.corpus.listDocuments({ limit: 10, q: 'zebra2' })).map((d) => d.id)).toEqual([ids[2]]);
      // LIKE wildcards are literal: '%' matches no title.
      expect(await s.corpus.listDocuments({ limit: 10, q: '%' })).toEqual([]);
      expect(await s.corpus.listDocuments({ limit: 10, q: 'nothing-like-this' })).toEqual([]);

      expect(await s.corpus.getDocument(ids[1]!)).toMatchObject({ id: ids[1], title: 'Title 1', chunks: 2 });
      await s.corpus.deleteDocument(ids[1]!);
      expect(await s.corpus.getDocument(ids[1]!)).toBeNull();
      expect(await s.corpus.getDocument(999_999)).toBeNull();
      expect((await s.corpus.listDocuments({ limit: 10 })).map((d) => d.id)).not.toContain(ids[1]);
      expect(await s.corpus.searchText('zebra1', { limit: 5 })).toEqual([]);
      expect(await s.corpus.collections()).toEqual([
        { name: 'other', documents: 1, chunks: 2 },
        { name: 'team', documents: 3, chunks: 6 },
      ]);
    });
  });

  it('jobs: created queued, progress updates, finish stamps; unknown ids are null; unfinished ones can be failed', async () => {
    await withStore(async (s) => {
      const j = await s.jobs.create({ id: 'job_a', kind: 'upload', collection: 'team', userId: null, filesTotal: 3, failures: [{ file: 'x.bin', reason: 'binary' }] });
      expect(j).toMatchObject({ id: 'job_a', state: 'queued', filesTotal: 3, filesDone: 1, filesFailed: 1, failures: [{ file: 'x.bin', reason: 'binary' }], startedAt: null, finishedAt: null });
      const r = await s.jobs.update('job_a', { state: 'running', filesDone: 2, chunksEmbedded: 7, etaS: 4.5 });
      expect(r).toMatchObject({ state: 'running', filesDone: 2, chunksEmbedded: 7, etaS: 4.5 });
      expect(r!.startedAt).not.toBeNull();
      const d = await s.jobs.update('job_a', { state: 'done', filesDone: 3, summary: { documents_added: 2 } });
      expect(await s.jobs.get('job_a')).toMatchObject({ state: 'done', filesDone: 3, etaS: null, summary: { documents_added: 2 }, finishedAt: d!.finishedAt });
      expect(await s.jobs.get('job_nope')).toBeNull();
      expect(await s.jobs.update('job_nope', { state: 'done' })).toBeNull();
      await s.jobs.create({ id: 'job_b', kind: 'upload', collection: 'team', userId: null, filesTotal: 1 });
      expect(await s.jobs.failUnfinished('9999-01-01T00:00:00.000Z', 'the server stopped')).toBe(1);
      expect(await s.jobs.get('job_b')).toMatchObject({ state: 'failed', error: 'the server stopped' });
    });
  });
}
