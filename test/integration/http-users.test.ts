/**
 * Users and erasure: `mneme users create/delete/list`, DELETE /v1/me erasing every row of the caller
 * (in every table with a user_id, features included) and nothing of anyone else, leaving none of
 * their text in the database file or its WAL, also while one of their answers is still streaming.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usersCommand } from '../../src/commands/users.ts';
import { materializeFeatures } from '../../src/features/materialize.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { authHeaders, bufferIo, count, ingestFixtures, parseSse, postJson, startFakeLlm, startTestServer, tempDir, testEnv, waitFor } from './http-helpers.ts';

/** Occurrences of `marker` (UTF-8) in the raw bytes of the database file and its WAL (when present). */
function rawHits(dbFile: string, marker: string): number {
  const needle = Buffer.from(marker, 'utf8');
  let hits = 0;
  for (const file of [dbFile, `${dbFile}-wal`]) {
    if (!fs.existsSync(file)) continue;
    const bytes = fs.readFileSync(file);
    for (let i = bytes.indexOf(needle); i !== -1; i = bytes.indexOf(needle, i + 1)) hits++;
  }
  return hits;
}

describe('users and erasure', () => {
  let env: Record<string, string>;
  let srv: TestServer;

  beforeAll(async () => {
    env = testEnv(tempDir());
    await ingestFixtures(env);
    srv = await startTestServer(env);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  async function users(args: string[]) {
    const io = bufferIo(env);
    const code = await usersCommand.run(args, io);
    return { code, out: io.out(), err: io.err() };
  }

  it('users create prints the key once (--json shape), stores only its hash, and the key works', async () => {
    const r = await users(['create', '--name', 'frank', '--json']);
    expect(r.code).toBe(0);
    const created = JSON.parse(r.out.trim()) as { name: string; api_key: string; admin: boolean };
    expect(created).toEqual({ name: 'frank', api_key: expect.stringMatching(/^mn_[A-Za-z0-9_-]{43}$/), admin: false });
    const row = srv.db.prepare('SELECT api_key_hash, key_prefix FROM users WHERE name = ?').get('frank') as { api_key_hash: string; key_prefix: string };
    expect(row.api_key_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(srv.db.prepare('SELECT * FROM users').all())).not.toContain(created.api_key);
    const me = await fetch(`${srv.url}/v1/me/features`, { headers: authHeaders(created.api_key) });
    expect(me.status).toBe(200);
    expect((await me.json()).user).toBe('frank');

    const admin = await users(['create', '--name', 'gina', '--admin']);
    expect(admin.code).toBe(0);
    expect(admin.out).toMatch(/API key \(shown once[^)]*\): mn_/);
    const list = await users(['list', '--json']);
    const listed = JSON.parse(list.out.trim()) as Array<{ name: string; admin: boolean; key_prefix: string }>;
    expect(listed.map((u) => [u.name, u.admin])).toEqual([
      ['frank', false],
      ['gina', true],
    ]);
    expect(list.out).not.toContain(created.api_key);
    await expect(users(['create', '--name', 'frank'])).rejects.toMatchObject({ code: 'conflict' });
    await expect(users(['create', '--name', 'bad name!'])).rejects.toMatchObject({ code: 'invalid_request' });
    await expect(users(['delete'])).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it('users delete erases the user; their key is 401 afterwards', async () => {
    const r = await users(['create', '--name', 'henry', '--json']);
    const key = (JSON.parse(r.out.trim()) as { api_key: string }).api_key;
    const a = await postJson(`${srv.url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    expect(a.status).toBe(200);
    const id = srv.db.prepare('SELECT id FROM users WHERE name = ?').pluck().get('henry') as number;
    const del = await users(['delete', '--name', 'henry', '--json']);
    expect(del.code).toBe(0);
    expect(JSON.parse(del.out.trim())).toMatchObject({ name: 'henry', deleted: true, erased: { responses: 1, messages: 2, conversations: 1, users: 1 } });
    for (const t of await srv.deps.store.users.userDataTables()) expect(count(srv, t, 'user_id = ?', id), t).toBe(0);
    const after = await postJson(`${srv.url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    expect(after.status).toBe(401);
    await expect(users(['delete', '--name', 'henry'])).rejects.toMatchObject({ code: 'not_found' });
  });

  it('DELETE /v1/me erases every row of the caller in every table, and nothing of other users', async () => {
    const ivy = await srv.key('ivy');
    const jack = await srv.key('jack');
    for (const key of [ivy, jack]) {
      const first = await postJson(`${srv.url}/v1/chat`, key, { message: 'Which part number is the Halcyon X3 filter cartridge?' });
      const second = await postJson(`${srv.url}/v1/chat`, key, { message: 'How long do I flush it?', conversation_id: first.body.conversation_id });
      expect(second.status).toBe(200);
      expect((await postJson(`${srv.url}/v1/feedback`, key, { response_id: first.body.id, rating: 1 })).status).toBe(201);
      expect((await postJson(`${srv.url}/v1/feedback`, key, { response_id: second.body.id, rating: -1, correction: 'Five minutes.' })).status).toBe(201);
    }
    // Features for both users, materialized from their logs.
    await materializeFeatures(srv.deps.store);
    const ivyId = srv.db.prepare('SELECT id FROM users WHERE name = ?').pluck().get('ivy') as number;
    const jackId = srv.db.prepare('SELECT id FROM users WHERE name = ?').pluck().get('jack') as number;
    // An upload job of each (uploads are admin-only through HTTP; the row is what erasure must find).
    for (const [name, id] of [['ivy', ivyId], ['jack', jackId]] as const) {
      await srv.deps.store.jobs.create({ id: `job_test_${name}`, kind: 'upload', collection: 'default', userId: id, filesTotal: 1 });
    }
    // A grant on a private collection of each (collection access, issue 14).
    await srv.deps.store.collections.create({ name: 'erasure-private', visibility: 'private', createdBy: null, createdAt: new Date().toISOString() });
    for (const id of [ivyId, jackId]) await srv.deps.store.collections.grant('erasure-private', id, false, new Date().toISOString());
    // And a group membership of each (group grants, issue 14).
    await srv.deps.store.collections.createGroup('erasure-group', new Date().toISOString());
    for (const id of [ivyId, jackId]) await srv.deps.store.collections.addMember('erasure-group', id, new Date().toISOString());
    const tables = await srv.deps.store.users.userDataTables();
    expect(tables).toEqual(expect.arrayContaining(['conversations', 'messages', 'responses', 'feedback', 'feature_history', 'feature_online', 'jobs', 'collection_grants', 'group_members', 'api_keys']));
    const snapshot = (userId: number) => Object.fromEntries(tables.map((t) => [t, count(srv, t, 'user_id = ?', userId)]));
    const ivyBefore = snapshot(ivyId);
    const jackBefore = snapshot(jackId);
    for (const t of tables) expect(ivyBefore[t], `ivy has rows in ${t}`).toBeGreaterThan(0);
    const features = await (await fetch(`${srv.url}/v1/me/features`, { headers: authHeaders(ivy) })).json();
    expect(Object.keys(features.features).length).toBeGreaterThan(0);

    const del = await fetch(`${srv.url}/v1/me`, { method: 'DELETE', headers: authHeaders(ivy) });
    expect(del.status).toBe(200);
    const body = await del.json();
    expect(body).toMatchObject({ deleted: true, user: 'ivy', erased: { users: 1, responses: 2, feedback: 2, messages: 4, conversations: 1 } });

    for (const t of tables) expect(count(srv, t, 'user_id = ?', ivyId), t).toBe(0);
    expect(count(srv, 'users', 'id = ?', ivyId)).toBe(0);
    expect(snapshot(jackId)).toEqual(jackBefore);
    expect(count(srv, 'users', 'id = ?', jackId)).toBe(1);
    // The key is dead; the other user's still works.
    expect((await fetch(`${srv.url}/v1/me/features`, { headers: authHeaders(ivy) })).status).toBe(401);
    expect((await fetch(`${srv.url}/v1/me/features`, { headers: authHeaders(jack) })).status).toBe(200);
    expect(srv.db.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
  });

  it('erase leaves none of the user\'s text in the database file or its WAL', async () => {
    const key = await srv.key('xena');
    const question = `QMARK${randomUUID().replace(/-/g, '')}`;
    const correction = `CMARK${randomUUID().replace(/-/g, '')}`;
    const a = await postJson(`${srv.url}/v1/chat`, key, { message: `What is OrbiSync? ${question}` });
    expect(a.status).toBe(200);
    const follow = await postJson(`${srv.url}/v1/chat`, key, { message: `And ${question} again?`, conversation_id: a.body.conversation_id });
    expect(follow.status).toBe(200);
    expect((await postJson(`${srv.url}/v1/feedback`, key, { response_id: a.body.id, rating: -1, correction: `Wrong: ${correction}` })).status).toBe(201);
    // The probe can see them before the erase (so 0 hits afterwards means something).
    expect(rawHits(srv.config.dbFile, question)).toBeGreaterThan(0);
    expect(rawHits(srv.config.dbFile, correction)).toBeGreaterThan(0);

    const del = await fetch(`${srv.url}/v1/me`, { method: 'DELETE', headers: authHeaders(key) });
    expect(del.status).toBe(200);
    expect(rawHits(srv.config.dbFile, question)).toBe(0);
    expect(rawHits(srv.config.dbFile, correction)).toBe(0);
  });
});

describe('erase while an answer of the user is still streaming', () => {
  let llm: FakeLlm;
  let srv: TestServer;

  beforeAll(async () => {
    llm = await startFakeLlm();
    const env = testEnv(tempDir(), { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake-llm' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
  });
  afterAll(async () => {
    await srv?.stop();
    await llm?.close();
  });

  it('no row of theirs survives, the row of the running answer is dropped and counted, the stream ends cleanly', async () => {
    const key = await srv.key('yuri');
    const userId = srv.db.prepare('SELECT id FROM users WHERE name = ?').pluck().get('yuri') as number;
    llm.behaviour = { kind: 'answer', text: 'First answer [1].' };
    const first = await postJson(`${srv.url}/v1/chat`, key, { message: 'What is OrbiSync?' });
    expect(first.status).toBe(200);
    const marker = `SMARK${randomUUID().replace(/-/g, '')}`;
    llm.behaviour = { kind: 'answer', text: 'word '.repeat(30) + 'done [1].', tokenDelayMs: 40 };
    const res = await fetch(`${srv.url}/v1/chat`, {
      method: 'POST',
      headers: authHeaders(key),
      body: JSON.stringify({ message: `How long do I flush it? ${marker}`, conversation_id: first.body.conversation_id, stream: true }),
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let text = '';
    const decoder = new TextDecoder();
    // Wait for the first token: the answer is running.
    while (!text.includes('event: token')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before a token: ${text}`);
      text += decoder.decode(value, { stream: true });
    }
    const del = await fetch(`${srv.url}/v1/me`, { method: 'DELETE', headers: authHeaders(key) });
    expect(del.status).toBe(200);
    expect(await del.json()).toMatchObject({ deleted: true, user: 'yuri', erased: { users: 1, responses: 1 } });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const events = parseSse(text);
    expect(events.at(-1)?.event).toBe('done');
    await waitFor(() => srv.deps.inflight.size() === 0, 5000, 'the answer to finish');
    for (const t of await srv.deps.store.users.userDataTables()) expect(count(srv, t, 'user_id = ?', userId), t).toBe(0);
    expect(count(srv, 'users', 'id = ?', userId)).toBe(0);
    expect(count(srv, 'responses', 'query LIKE ?', `%${marker}%`)).toBe(0);
    expect(await srv.deps.metrics.logRowsDropped.get({ reason: 'user_erased' })).toBe(1);
    expect(srv.db.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
  });
});
