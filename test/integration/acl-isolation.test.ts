/**
 * Collection access control, end to end (issue 14, item 4): a real HTTP server, a real store (the
 * SQLite file; PostgreSQL too when MNEME_TEST_DATABASE_URL is set), the tiny fixture embedder and a
 * real HNSW index. Alice uploads a document into a new collection (private to her); bob tries to
 * read, list, delete, upload into and chat over it: 404 or nothing, and the JSON of every route he
 * can call never contains the marker (in the collection's name, the document's title, file name and
 * text). Control: alice (and bob once granted) does get it, so every check can fail. A revoke takes
 * effect on bob's next request.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HybridRetriever } from '../../src/chat/retrieve.ts';
import { FIXTURE_DOCS, ingestFixtures, startFakeLlm, tempDir, testEnv } from './http-helpers.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { startUploadServer, upload, waitForJob } from './upload-helpers.ts';
import { findPostgresTestServer } from '../store/postgres-env.ts';

/** In the private collection's name, its document's file name, title and text. */
const MARKER = 'zorblaxquux';
const PRIVATE = `${MARKER}-vault`;
/** Words only the private document holds (bob's questions: they do not contain the marker). */
const QUESTION = 'When does the glimmerfox migration convoy depart from Pellucid harbour?';
const PRIVATE_DOC = `# ${MARKER} plan\n\nThe glimmerfox migration convoy departs from Pellucid harbour at dawn on the ninth day. ${MARKER} keeps the convoy manifest.\n`;

const postgres = await findPostgresTestServer();
const engines: Array<{ name: string; env: () => Promise<Record<string, string>> }> = [{ name: 'sqlite', env: async () => ({}) }];
if (postgres.server) {
  const pg = postgres.server;
  engines.push({ name: 'postgres', env: async () => ({ MNEME_DATABASE_URL: await pg.createDatabase() }) });
}
afterAll(async () => {
  await postgres.server?.dropCreatedDatabases();
});

for (const engine of engines) {
  describe(`${engine.name}: bob cannot see alice's private collection`, () => {
    let dir: string;
    let srv: TestServer;
    let llm: FakeLlm;
    let admin: string;
    let alice: string;
    let bob: string;
    let privateDocId: number;
    let aliceJob: string;

    const call = async (method: string, path: string, key: string, body?: unknown) => {
      const res = await fetch(`${srv.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, text, json: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null };
    };
    const chat = (key: string, extra: Record<string, unknown> = {}) => call('POST', '/v1/chat', key, { message: QUESTION, ...extra });
    const cites = (answer: { citations: Array<{ document_id: number }> }) => answer.citations.some((c) => c.document_id === privateDocId);
    const noMarker = (what: string, text: string) => expect(text.toLowerCase(), what).not.toContain(MARKER);

    beforeAll(async () => {
      dir = tempDir();
      llm = await startFakeLlm({ kind: 'answer', text: 'It works [1][2][3].' });
      const env = testEnv(dir, { MNEME_LLM: `openai:${llm.url}/v1`, MNEME_LLM_MODEL: 'fake', ...(await engine.env()) });
      await ingestFixtures(env);
      srv = await startUploadServer(env);
      admin = await srv.key('root', true);
      alice = await srv.key('alice');
      bob = await srv.key('bob');
      // A non-admin uploading into a new collection name creates it, private to them, with write access.
      const up = await upload(srv.url, alice, [{ name: `${MARKER}-plan.md`, content: PRIVATE_DOC }], PRIVATE);
      expect(up.status).toBe(202);
      aliceJob = up.body.job_id;
      expect(await waitForJob(srv.url, alice, aliceJob)).toMatchObject({ state: 'done', files_failed: 0 });
      const mine = await call('GET', `/v1/documents?collection=${PRIVATE}`, alice);
      expect(mine.json.data).toHaveLength(1);
      privateDocId = mine.json.data[0].id;
      await (srv.deps.retriever as HybridRetriever).sync();
    }, 180_000);

    afterAll(async () => {
      await srv?.stop();
      await llm?.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('control: alice reads, lists and chats over her private collection; the admin sees it', async () => {
      const a = await chat(alice);
      expect(a.status).toBe(200);
      expect(cites(a.json)).toBe(true);
      expect((await call('GET', '/v1/collections', alice)).json.data.map((c: { name: string }) => c.name)).toContain(PRIVATE);
      expect((await call('GET', `/v1/documents/${privateDocId}`, alice)).status).toBe(200);
      expect((await call('GET', '/v1/admin/collections', admin)).json.data).toContainEqual(
        expect.objectContaining({ name: PRIVATE, visibility: 'private', documents: 1, grants: [expect.objectContaining({ user: 'alice', write: true })] }),
      );
      expect(cites((await chat(admin)).json)).toBe(true);
    });

    it('bob: every route answers without a trace of it; reading, deleting and uploading into it are 404', async () => {
      const seen: Array<[string, string]> = [];
      const look = async (what: string, p: Promise<{ status: number; text: string }>, status = 200) => {
        const r = await p;
        expect(r.status, what).toBe(status);
        seen.push([what, r.text]);
        return r;
      };
      const answer = await look('chat', chat(bob));
      expect(JSON.parse(answer.text).citations.length).toBeGreaterThan(0);
      const streamed = await look('chat stream', chat(bob, { stream: true }));
      expect(streamed.text).toContain('event: done');
      await look('completions', call('POST', '/v1/chat/completions', bob, { model: 'fake', messages: [{ role: 'user', content: QUESTION }] }));
      await look('documents', call('GET', '/v1/documents?limit=200', bob));
      await look('documents q', call('GET', '/v1/documents?q=glimmerfox', bob));
      await look('collections', call('GET', '/v1/collections', bob));
      const conversations = await look('conversations', call('GET', '/v1/conversations', bob));
      for (const c of JSON.parse(conversations.text).conversations) await look('transcript', call('GET', `/v1/conversations/${c.id}/messages`, bob));
      await look('me/features', call('GET', '/v1/me/features', bob));
      await look('models', call('GET', '/v1/models', bob));
      // The private document and its collection, named explicitly: the same answers as unknown ones.
      await look('document get', call('GET', `/v1/documents/${privateDocId}`, bob), 404);
      await look('document delete', call('DELETE', `/v1/documents/${privateDocId}`, bob), 404);
      await look('alice job', call('GET', `/v1/jobs/${aliceJob}`, bob), 404);
      for (const p of ['/v1/admin/collections', '/v1/admin/corpus', '/v1/admin/overview']) await look(p, call('GET', p, bob), 403);
      for (const [what, text] of seen) noMarker(what, text);

      // Naming it (the request itself holds the name): 404 like an unknown collection, and the list
      // of collections in the error shows only public ones.
      const named = await chat(bob, { collection: PRIVATE });
      expect(named.status).toBe(404);
      expect(named.json.error.code).toBe('collection_not_found');
      const unknown = await chat(bob, { collection: 'no-such-collection' });
      expect(unknown.json.error.collections).toEqual(named.json.error.collections);
      expect(named.json.error.collections.length).toBeGreaterThan(0);
      expect(JSON.stringify(named.json.error.collections).toLowerCase()).not.toContain(MARKER);
      expect((await call('POST', '/v1/chat/completions', bob, { model: 'fake', collection: PRIVATE, messages: [{ role: 'user', content: QUESTION }] })).status).toBe(404);
      expect((await call('GET', `/v1/documents?collection=${PRIVATE}`, bob)).json.data).toEqual([]);
      const into = await upload(srv.url, bob, [{ name: 'intruder.md', content: '# Intruder\n\nbob was here\n' }], PRIVATE);
      expect(into.status).toBe(404);
      // Nothing changed: alice's document is there, alone.
      expect((await call('GET', `/v1/documents?collection=${PRIVATE}`, alice)).json.data.map((d: { id: number }) => d.id)).toEqual([privateDocId]);

      // Counts: bob's collections add up to the public documents only.
      const cols = (await call('GET', '/v1/collections', bob)).json.data as Array<{ name: string; documents: number }>;
      expect(cols.reduce((n, c) => n + c.documents, 0)).toBe(fs.readdirSync(FIXTURE_DOCS).length);
    });

    it('retrieval itself: the private chunks are never BM25, document-level or dense (HNSW) candidates for bob', async () => {
      const retriever = srv.deps.retriever as HybridRetriever;
      const [vector] = await srv.deps.embedder!.embed([QUESTION]);
      const privateChunks = new Set((await srv.deps.store.corpus.chunkSources(PRIVATE)).map((c) => c.id));
      expect(privateChunks.size).toBeGreaterThan(0);
      const hits = async (exclude?: string[]) => {
        const { candidates } = await retriever.candidates(QUESTION, vector!, { mode: 'hybrid', excludeCollections: exclude, bm25Limit: 100, denseLimit: 100 });
        const dense = await retriever.searchDense(vector!, 100, undefined, exclude);
        const bm25 = await retriever.searchBm25(QUESTION, 100, undefined, exclude);
        return [...candidates.map((c) => c.chunkId), ...dense.map((h) => h.chunkId), ...bm25.map((h) => h.chunkId)];
      };
      // Control: unfiltered, the private chunks rank (dense lists every vector of this small corpus).
      expect((await hits()).some((id) => privateChunks.has(id))).toBe(true);
      const filtered = await hits([PRIVATE]);
      expect(filtered.length).toBeGreaterThan(0);
      expect(filtered.some((id) => privateChunks.has(id))).toBe(false);
      // The dense list still fills `limit` from what bob may read.
      expect((await retriever.searchDense(vector!, 3, undefined, [PRIVATE])).length).toBe(3);
    });

    it('a grant shows it to bob; a revoke hides it again on his very next request', async () => {
      const grant = await call('POST', `/v1/admin/collections/${PRIVATE}/grants`, admin, { user: 'bob' });
      expect(grant.status).toBe(200);
      expect(cites((await chat(bob)).json)).toBe(true);
      expect((await call('GET', '/v1/collections', bob)).json.data).toContainEqual(expect.objectContaining({ name: PRIVATE, documents: 1, writable: false }));
      expect((await call('GET', `/v1/documents/${privateDocId}`, bob)).status).toBe(200);
      // Read access only: deleting needs write.
      expect((await call('DELETE', `/v1/documents/${privateDocId}`, bob)).status).toBe(403);

      expect((await call('DELETE', `/v1/admin/collections/${PRIVATE}/grants/bob`, admin)).status).toBe(204);
      const after = await chat(bob);
      expect(cites(after.json)).toBe(false);
      noMarker('chat after revoke', after.text);
      noMarker('collections after revoke', (await call('GET', '/v1/collections', bob)).text);
      expect((await call('GET', `/v1/documents/${privateDocId}`, bob)).status).toBe(404);
      expect((await call('DELETE', `/v1/admin/collections/${PRIVATE}/grants/bob`, admin)).status).toBe(404);
    });

    it('a group grant: bob reads it while a member of a granted group; leaving, a revoked group grant or a deleted group hides it on his next request', async () => {
      const hidden = async (what: string) => {
        const answer = await chat(bob);
        expect(cites(answer.json), what).toBe(false);
        noMarker(`chat ${what}`, answer.text);
        noMarker(`collections ${what}`, (await call('GET', '/v1/collections', bob)).text);
        expect((await call('GET', `/v1/documents/${privateDocId}`, bob)).status, what).toBe(404);
      };
      const shown = async (what: string) => {
        expect(cites((await chat(bob)).json), what).toBe(true);
        expect((await call('GET', `/v1/documents/${privateDocId}`, bob)).status, what).toBe(200);
      };
      expect((await call('POST', '/v1/admin/groups', admin, { name: 'convoy' })).status).toBe(201);
      expect((await call('POST', '/v1/admin/groups', admin, { name: 'convoy' })).status).toBe(200);
      const granted = await call('POST', `/v1/admin/collections/${PRIVATE}/grants`, admin, { group: 'convoy' });
      expect(granted.status).toBe(200);
      expect(granted.json.group_grants).toEqual([expect.objectContaining({ group: 'convoy', write: false })]);
      await hidden('granted to a group bob is not in');
      const joined = await call('POST', '/v1/admin/groups/convoy/members', admin, { user: 'bob' });
      expect(joined.json).toMatchObject({ name: 'convoy', members: ['bob'], grants: [{ collection: PRIVATE, write: false }] });
      await shown('member of the granted group');
      expect((await call('DELETE', `/v1/documents/${privateDocId}`, bob)).status).toBe(403);

      expect((await call('DELETE', '/v1/admin/groups/convoy/members/bob', admin)).status).toBe(204);
      await hidden('after leaving the group');
      expect((await call('DELETE', '/v1/admin/groups/convoy/members/bob', admin)).status).toBe(404);
      await call('POST', '/v1/admin/groups/convoy/members', admin, { user: 'bob' });
      await shown('member again');
      expect((await call('DELETE', `/v1/admin/collections/${PRIVATE}/group-grants/convoy`, admin)).status).toBe(204);
      await hidden('after the group grant was revoked');
      await call('POST', `/v1/admin/collections/${PRIVATE}/grants`, admin, { group: 'convoy' });
      await shown('granted again');
      expect((await call('DELETE', '/v1/admin/groups/convoy', admin)).status).toBe(204);
      await hidden('after the group was deleted');
      expect((await call('GET', '/v1/admin/groups', admin)).json.data).toEqual([]);

      // Bad input: unknown group or user 404, both user and group 400, non-admins 403.
      expect((await call('POST', `/v1/admin/collections/${PRIVATE}/grants`, admin, { group: 'convoy' })).status).toBe(404);
      expect((await call('POST', '/v1/admin/groups/convoy/members', admin, { user: 'bob' })).status).toBe(404);
      await call('POST', '/v1/admin/groups', admin, { name: 'crew' });
      expect((await call('POST', '/v1/admin/groups/crew/members', admin, { user: 'nobody' })).status).toBe(404);
      expect((await call('POST', `/v1/admin/collections/${PRIVATE}/grants`, admin, { group: 'crew', user: 'bob' })).status).toBe(400);
      expect((await call('POST', '/v1/admin/groups', admin, { name: 'bad name!' })).status).toBe(400);
      expect((await call('GET', '/v1/admin/groups', bob)).status).toBe(403);
      expect((await call('POST', '/v1/admin/groups/crew/members', bob, { user: 'bob' })).status).toBe(403);
      await hidden('after refused attempts');
    });

    it('write grant: bob may upload into it and delete its documents; a public collection without a grant is 403', async () => {
      expect((await call('POST', '/v1/admin/collections', admin, { name: 'handbook', visibility: 'public' })).status).toBe(201);
      const ro = await upload(srv.url, bob, [{ name: 'h.md', content: '# H\n\nhandbook page\n' }], 'handbook');
      expect(ro.status).toBe(403);
      expect((await call('POST', `/v1/admin/collections/${PRIVATE}/grants`, admin, { user: 'bob', write: true })).status).toBe(200);
      const up = await upload(srv.url, bob, [{ name: 'bob-notes.md', content: '# Bob notes\n\nbob adds a page about ferries\n' }], PRIVATE);
      expect(up.status).toBe(202);
      expect(await waitForJob(srv.url, bob, up.body.job_id)).toMatchObject({ state: 'done' });
      const docs = (await call('GET', `/v1/documents?collection=${PRIVATE}`, bob)).json.data as Array<{ id: number; title: string }>;
      const bobs = docs.find((d) => d.title === 'Bob notes');
      expect(bobs).toBeDefined();
      expect((await call('DELETE', `/v1/documents/${bobs!.id}`, bob)).status).toBe(204);
      // Non-admins never reach the admin routes.
      expect((await call('POST', '/v1/admin/collections', bob, { name: 'mine' })).status).toBe(403);
    });
  });
}
