/**
 * Users and API keys through the store (real SQLite file in a temp dir); set-up and probes use a
 * separate raw handle on the same file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, NotFoundError, ValidationError } from '../../../src/core/errors.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { createUser, deleteUserByName, eraseUser, findUserByApiKey, findUserByName, hashApiKey, listUsers } from '../../../src/chat/users.ts';

describe('users and API keys (real SQLite)', () => {
  let store: SqliteStore;
  let db: Database.Database;
  beforeEach(() => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-')), 'mneme.sqlite');
    store = openSqliteStore(file);
    db = new Database(file);
  });
  afterEach(async () => {
    db.close();
    await store.close();
  });

  it('creates 256-bit keys stored only as sha256, found again by key, distinct per user', async () => {
    const a = await createUser(store, { name: 'ann' });
    const b = await createUser(store, { name: 'ben', admin: true });
    expect(a.apiKey).toMatch(/^mn_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.apiKey.slice(3), 'base64url')).toHaveLength(32);
    expect(a.apiKey).not.toBe(b.apiKey);
    const row = db.prepare('SELECT api_key_hash, key_prefix, is_admin FROM users WHERE name = ?').get('ben') as Record<string, unknown>;
    expect(row).toEqual({ api_key_hash: hashApiKey(b.apiKey), key_prefix: b.apiKey.slice(0, 10), is_admin: 1 });
    expect(await findUserByApiKey(store, a.apiKey)).toMatchObject({ name: 'ann', isAdmin: false });
    expect(await findUserByApiKey(store, b.apiKey)).toMatchObject({ name: 'ben', isAdmin: true });
    expect(await findUserByApiKey(store, `${a.apiKey}x`)).toBeNull();
    expect(await store.users.revoke(a.user.id, '2024-01-01T00:00:00.000Z')).toBe(true);
    expect(await store.users.revoke(a.user.id, '2024-01-01T00:00:00.000Z')).toBe(false);
    expect(await findUserByApiKey(store, a.apiKey)).toBeNull();
    expect((await listUsers(store)).map((u) => u.name)).toEqual(['ben']);
    // A revoked user is still found by name (so `users delete` can erase them).
    expect(await findUserByName(store, 'ann')).toMatchObject({ id: a.user.id });
  });

  it('rejects bad and duplicate names', async () => {
    await createUser(store, { name: 'ann' });
    await expect(createUser(store, { name: 'ann' })).rejects.toBeInstanceOf(ConflictError);
    await expect(createUser(store, { name: '' })).rejects.toBeInstanceOf(ValidationError);
    await expect(createUser(store, { name: 'a b' })).rejects.toBeInstanceOf(ValidationError);
    await expect(deleteUserByName(store, 'nobody')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('erases every user_id table (including ones added by later migrations) and only that user', async () => {
    db.exec('CREATE TABLE extra_user_data (user_id INTEGER NOT NULL, note TEXT)');
    const ids: number[] = [];
    for (const name of ['ann', 'ben']) ids.push((await createUser(store, { name })).user.id);
    const now = '2024-01-01T00:00:00.000Z';
    for (const id of ids) {
      const conv = `conv_${id}`;
      db.prepare('INSERT INTO conversations (id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?)').run(conv, id, now, now);
      db.prepare(
        `INSERT INTO responses (id, user_id, conversation_id, turn_index, created_at, endpoint, request_json, query, history_json, top_k,
           retrieved_json, features_json, prompt_name, prompt_sha256, rendered_prompt_json, model_backend, model_id, sampling_json,
           citations_json, timings_json, status)
         VALUES (?, ?, ?, 0, ?, 'chat', '{}', 'q', '[]', 5, '[]', '{}', 'answer', 'x', '[]', 'extractive', 'e', '{}', '[]', '{}', 'ok')`,
      ).run(`resp_${id}`, id, conv, now);
      db.prepare("INSERT INTO messages (conversation_id, user_id, role, content, response_id, created_at) VALUES (?, ?, 'user', 'q', ?, ?)").run(conv, id, `resp_${id}`, now);
      db.prepare('INSERT INTO feedback (response_id, user_id, rating, created_at) VALUES (?, ?, 1, ?)').run(`resp_${id}`, id, now);
      db.prepare("INSERT INTO feature_online (user_id, feature, value_json, event_time) VALUES (?, 'messages_total', '1', ?)").run(id, now);
      db.prepare("INSERT INTO feature_history (user_id, feature, event_time, value_json, created_at) VALUES (?, 'messages_total', ?, '1', ?)").run(id, now, now);
      db.prepare("INSERT INTO extra_user_data (user_id, note) VALUES (?, 'x')").run(id);
    }
    const tables = await store.users.userDataTables();
    expect(tables).toEqual(expect.arrayContaining(['conversations', 'extra_user_data', 'feature_history', 'feature_online', 'feedback', 'messages', 'responses']));
    const countFor = (id: number) => tables.reduce((n, t) => n + (db.prepare(`SELECT count(*) FROM "${t}" WHERE user_id = ?`).pluck().get(id) as number), 0);
    const benBefore = countFor(ids[1]!);
    const erased = await eraseUser(store, ids[0]!);
    expect(erased).toMatchObject({ conversations: 1, responses: 1, messages: 1, feedback: 1, feature_online: 1, feature_history: 1, extra_user_data: 1, users: 1 });
    expect(countFor(ids[0]!)).toBe(0);
    expect(countFor(ids[1]!)).toBe(benBefore);
    expect(db.prepare('SELECT count(*) FROM users').pluck().get()).toBe(1);
    // The erase checkpointed the WAL: nothing of it is left in the log.
    const wal = `${store.file}-wal`;
    expect(fs.existsSync(wal) ? fs.statSync(wal).size : 0).toBe(0);
    // Erasing an unknown id erases nothing.
    expect(await eraseUser(store, 9999)).toMatchObject({ users: 0, responses: 0 });
  });
});
