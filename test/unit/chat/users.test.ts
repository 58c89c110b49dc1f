import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../../src/core/db.ts';
import { openDb } from '../../../src/core/db.ts';
import { ConflictError, NotFoundError, ValidationError } from '../../../src/core/errors.ts';
import {
  createUser,
  deleteUserByName,
  eraseUser,
  findUserByApiKey,
  hashApiKey,
  listUsers,
  tablesWithUserId,
} from '../../../src/chat/users.ts';

describe('users and API keys (real SQLite)', () => {
  let db: Db;
  beforeEach(() => {
    db = openDb(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-')), 'mneme.sqlite'));
  });
  afterEach(() => db.close());

  it('creates 256-bit keys stored only as sha256, found again by key, distinct per user', () => {
    const a = createUser(db, { name: 'ann' });
    const b = createUser(db, { name: 'ben', admin: true });
    expect(a.apiKey).toMatch(/^mn_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.apiKey.slice(3), 'base64url')).toHaveLength(32);
    expect(a.apiKey).not.toBe(b.apiKey);
    const row = db.prepare('SELECT api_key_hash, key_prefix, is_admin FROM users WHERE name = ?').get('ben') as Record<string, unknown>;
    expect(row).toEqual({ api_key_hash: hashApiKey(b.apiKey), key_prefix: b.apiKey.slice(0, 10), is_admin: 1 });
    expect(findUserByApiKey(db, a.apiKey)).toMatchObject({ name: 'ann', isAdmin: false });
    expect(findUserByApiKey(db, b.apiKey)).toMatchObject({ name: 'ben', isAdmin: true });
    expect(findUserByApiKey(db, `${a.apiKey}x`)).toBeNull();
    db.prepare("UPDATE users SET revoked_at = '2024-01-01T00:00:00.000Z' WHERE name = 'ann'").run();
    expect(findUserByApiKey(db, a.apiKey)).toBeNull();
    expect(listUsers(db).map((u) => u.name)).toEqual(['ben']);
  });

  it('rejects bad and duplicate names', () => {
    createUser(db, { name: 'ann' });
    expect(() => createUser(db, { name: 'ann' })).toThrow(ConflictError);
    expect(() => createUser(db, { name: '' })).toThrow(ValidationError);
    expect(() => createUser(db, { name: 'a b' })).toThrow(ValidationError);
    expect(() => deleteUserByName(db, 'nobody')).toThrow(NotFoundError);
  });

  it('erases every user_id table (including ones added by later migrations) and only that user', () => {
    db.exec('CREATE TABLE extra_user_data (user_id INTEGER NOT NULL, note TEXT)');
    const ids = ['ann', 'ben'].map((name) => createUser(db, { name }).user.id);
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
    const tables = tablesWithUserId(db);
    expect(tables).toEqual(expect.arrayContaining(['conversations', 'extra_user_data', 'feature_history', 'feature_online', 'feedback', 'messages', 'responses']));
    const countFor = (id: number) => tables.reduce((n, t) => n + (db.prepare(`SELECT count(*) FROM "${t}" WHERE user_id = ?`).pluck().get(id) as number), 0);
    const benBefore = countFor(ids[1]!);
    let extraCalled = 0;
    const erased = eraseUser(db, ids[0]!, () => extraCalled++);
    expect(extraCalled).toBe(1);
    expect(erased).toMatchObject({ conversations: 1, responses: 1, messages: 1, feedback: 1, feature_online: 1, feature_history: 1, extra_user_data: 1, users: 1 });
    expect(countFor(ids[0]!)).toBe(0);
    expect(countFor(ids[1]!)).toBe(benBefore);
    expect(db.prepare('SELECT count(*) FROM users').pluck().get()).toBe(1);
  });
});
