/**
 * Browsing and deleting documents (issue 14, item 3) on a real server over the fixture corpus:
 * GET /v1/documents (keyset pages, filters, display sources), GET /v1/documents/:id,
 * DELETE /v1/documents/:id (admins only; chunks, FTS rows and vectors gone, the index file saved so
 * doctor passes), GET /v1/collections; and a delete while an answer is streaming from the document.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diagnose } from '../../src/commands/doctor.ts';
import { openStore } from '../../src/core/deps.ts';
import { count, FIXTURE_DOCS, ingestFixtures, parseSse, startFakeLlm, tempDir, testEnv } from './http-helpers.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { startUploadServer } from './upload-helpers.ts';

let dir: string;
let srv: TestServer;
let llm: FakeLlm;
let admin: string;
let alice: string;

const get = async (path: string, key: string) => {
  const res = await fetch(`${srv.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
};
const del = async (path: string, key: string) => {
  const res = await fetch(`${srv.url}${path}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: res.status === 204 ? null : await res.json() };
};

beforeAll(async () => {
  dir = tempDir();
  llm = await startFakeLlm({ kind: 'answer', text: 'It works [1].' });
  const env = testEnv(dir, { MNEME_LLM: `openai:${llm.url}/v1`, MNEME_LLM_MODEL: 'fake' });
  await ingestFixtures(env);
  srv = await startUploadServer(env);
  admin = await srv.key('root', true);
  alice = await srv.key('alice');
}, 120_000);

afterAll(async () => {
  await srv?.stop();
  await llm?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('GET /v1/documents and /v1/collections', () => {
  it('lists live documents newest first in keyset pages, with display sources, chunk counts and sizes', async () => {
    const all = await get('/v1/documents', alice);
    expect(all.status).toBe(200);
    expect(all.body.next_cursor).toBeNull();
    const docs = all.body.data as Array<Record<string, any>>;
    expect(docs.length).toBe(fs.readdirSync(FIXTURE_DOCS).length);
    expect(docs.map((d) => d.id)).toEqual([...docs.map((d) => d.id)].sort((a, b) => b - a));
    const kestrel = docs.find((d) => String(d.source).endsWith('kestrelctl-reference.md'))!;
    expect(kestrel).toMatchObject({ collection: 'default', title: 'kestrelctl Command Reference', bytes: fs.statSync(`${FIXTURE_DOCS}/kestrelctl-reference.md`).size });
    expect(kestrel.chunks).toBeGreaterThan(0);
    expect(kestrel.source).toBe('test/fixtures/docs/kestrelctl-reference.md'.split('/').slice(-3).join('/'));
    expect(kestrel.source.startsWith('/')).toBe(false);
    expect(Date.parse(kestrel.updated_at)).not.toBeNaN();

    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: any } = await get(`/v1/documents?limit=2${cursor ? `&cursor=${cursor}` : ''}`, alice);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((d: { id: number }) => d.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(docs.map((d) => d.id));

    expect((await get('/v1/documents?q=KESTRELCTL', alice)).body.data.map((d: { id: number }) => d.id)).toEqual([kestrel.id]);
    expect((await get('/v1/documents?collection=nope', alice)).body.data).toEqual([]);
    expect((await get('/v1/documents?cursor=abc', alice)).status).toBe(400);
    expect((await get('/v1/documents?collection=../x', alice)).status).toBe(400);
    expect((await get(`/v1/documents/${kestrel.id}`, alice)).body).toEqual(kestrel);
    expect((await get('/v1/documents/999999', alice)).status).toBe(404);
    expect((await get('/v1/documents/abc', alice)).status).toBe(404);

    const cols = await get('/v1/collections', alice);
    expect(cols.body.data).toEqual([{ name: 'default', documents: docs.length, chunks: docs.reduce((n, d) => n + d.chunks, 0), visibility: 'public', writable: false }]);
  });
});

describe('DELETE /v1/documents/:id', () => {
  it('is for admins only (403 for a user), 404 for unknown ids', async () => {
    const [first] = (await get('/v1/documents', alice)).body.data;
    expect((await del(`/v1/documents/${first.id}`, alice)).status).toBe(403);
    expect((await get(`/v1/documents/${first.id}`, alice)).status).toBe(200);
    expect((await del('/v1/documents/999999', admin)).status).toBe(404);
  });

  it('an answer streaming from a document finishes; after the delete no answer cites it; chunks, FTS rows, vectors and index labels are gone; doctor passes', async () => {
    const question = { message: 'What does kestrelctl status print?' };
    const before = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: JSON.stringify(question) }).then((r) => r.json());
    const cited = before.citations[0];
    expect(cited.source).toContain('kestrelctl');
    const docId = cited.document_id as number;
    const chunkIds = (srv.db.prepare('SELECT id FROM chunks WHERE document_id = ?').pluck().all(docId) as number[]);
    expect(chunkIds.length).toBeGreaterThan(0);

    // An answer in flight: the fake LLM streams slowly; the delete lands while it streams.
    llm.behaviour = { kind: 'answer', text: 'It works [1]. '.repeat(10), tokenDelayMs: 40 };
    const streaming = fetch(`${srv.url}/v1/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...question, stream: true }),
    }).then((r) => r.text());
    await new Promise((r) => setTimeout(r, 150));
    expect((await del(`/v1/documents/${docId}`, admin)).status).toBe(204);
    const events = parseSse(await streaming);
    const done = events.find((e) => e.event === 'done');
    expect(done, 'the answer in flight finished').toBeDefined();
    expect(events.some((e) => e.event === 'error')).toBe(false);

    llm.behaviour = { kind: 'answer', text: 'It works [1] [2] [3].' };
    for (let i = 0; i < 3; i++) {
      const after = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json' }, body: JSON.stringify(question) }).then((r) => r.json());
      expect(after.citations.map((c: { document_id: number }) => c.document_id)).not.toContain(docId);
    }
    expect((await get(`/v1/documents/${docId}`, alice)).status).toBe(404);
    expect((await del(`/v1/documents/${docId}`, admin)).status).toBe(404);
    expect(count(srv, 'chunks', 'document_id = ?', docId)).toBe(0);
    expect(count(srv, 'embeddings', `chunk_id IN (${chunkIds.join(',')})`)).toBe(0);
    expect(srv.db.prepare(`SELECT count(*) FROM chunks_fts WHERE rowid IN (${chunkIds.join(',')})`).pluck().get()).toBe(0);
    expect(srv.db.prepare('SELECT count(*) FROM documents_fts WHERE rowid = ?').pluck().get(docId)).toBe(0);
    expect((await get('/v1/collections', alice)).body.data[0].documents).toBe(fs.readdirSync(FIXTURE_DOCS).length - 1);

    // doctor (a second handle on the data dir, as the CLI would open it) finds no lagging index file.
    const store = await openStore(srv.config);
    try {
      const report = await diagnose(store, srv.config.dataDir);
      expect(report.problems).toEqual([]);
      expect(report.ok).toBe(true);
    } finally {
      await store.close();
    }
  }, 60_000);
});
