/**
 * Upgrade path of 095_api_keys.sql on both engines: a database at the previous schema (every
 * migration before 095) with users made the old way (one key in users.api_key_hash, one of them
 * revoked) is opened by the current code. Every live user's key must keep working, now as a key named
 * "default", and the revoked user's key must stay refused. PostgreSQL runs when
 * MNEME_TEST_DATABASE_URL is set (postgres-env.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../src/chat/users.ts';
import type { Store } from '../../src/core/store/index.ts';
import { openPostgresStore } from '../../src/core/store/postgres/index.ts';
import { POSTGRES_MIGRATIONS_DIR } from '../../src/core/store/postgres/connection.ts';
import { SQLITE_MIGRATIONS_DIR } from '../../src/core/store/sqlite/connection.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import { tempDir } from '../helpers/cli.ts';
import { findPostgresTestServer } from './postgres-env.ts';

const MIGRATION = '095_api_keys.sql';
const postgres = await findPostgresTestServer();
afterAll(async () => {
  await postgres.server?.dropCreatedDatabases();
});

/** A copy of `dir` holding only the migrations numbered before 095. */
function previousMigrations(dir: string): string {
  const out = tempDir('mneme-migrations-');
  for (const f of fs.readdirSync(dir)) if (f < MIGRATION) fs.copyFileSync(path.join(dir, f), path.join(out, f));
  expect(fs.existsSync(path.join(out, MIGRATION))).toBe(false);
  return out;
}

const OLD_USERS = [
  { name: 'ann', key: 'mn_old-key-of-ann', admin: 1, revoked: null },
  { name: 'ben', key: 'mn_old-key-of-ben', admin: 0, revoked: '2025-02-01T00:00:00.000Z' },
  { name: 'cy', key: 'mn_old-key-of-cy', admin: 0, revoked: null },
];

async function expectUpgraded(store: Store): Promise<void> {
  const ann = await store.users.findByKeyHash(hashApiKey('mn_old-key-of-ann'));
  expect(ann?.user).toMatchObject({ name: 'ann', isAdmin: true });
  expect((await store.users.findByKeyHash(hashApiKey('mn_old-key-of-cy')))?.user.name).toBe('cy');
  expect(await store.users.findByKeyHash(hashApiKey('mn_old-key-of-ben'))).toBeNull();
  const keys = await store.users.keys(ann!.user.id);
  expect(keys).toEqual([
    { id: ann!.keyId, userId: ann!.user.id, name: 'default', keyPrefix: 'mn_old-key', createdAt: '2025-01-01T00:00:00.000Z', lastUsedAt: null, revokedAt: null },
  ]);
  const ben = await store.users.findByName('ben');
  expect((await store.users.keys(ben!.id))[0]).toMatchObject({ name: 'default', revokedAt: '2025-02-01T00:00:00.000Z' });
  // Upgraded users get new keys like anyone else.
  const laptop = await store.users.addKey({ userId: ann!.user.id, name: 'laptop', keyHash: hashApiKey('mn_new'), keyPrefix: 'mn_new', createdAt: '2025-03-01T00:00:00.000Z' });
  expect(laptop.id).toBeGreaterThan(ann!.keyId);
  expect((await store.users.findByKeyHash(hashApiKey('mn_new')))?.user.name).toBe('ann');
}

describe('095_api_keys upgrade', () => {
  it('sqlite: keys of users made at the previous schema keep working as "default" keys', async () => {
    const file = path.join(tempDir(), 'mneme.sqlite');
    await openSqliteStore(file, { migrationsDir: previousMigrations(SQLITE_MIGRATIONS_DIR) }).close();
    const db = new Database(file);
    expect(db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'api_keys'").get()).toEqual({ n: 0 });
    const insert = db.prepare('INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)');
    for (const u of OLD_USERS) insert.run(u.name, hashApiKey(u.key), u.key.slice(0, 10), u.admin, '2025-01-01T00:00:00.000Z', u.revoked);
    db.close();
    const store = openSqliteStore(file);
    try {
      await expectUpgraded(store);
    } finally {
      await store.close();
    }
  });

  it.skipIf(!postgres.server)('postgres: keys of users made at the previous schema keep working as "default" keys', async () => {
    const url = await postgres.server!.createDatabase();
    await (await openPostgresStore(url, { migrationsDir: previousMigrations(POSTGRES_MIGRATIONS_DIR) })).close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      expect((await c.query("SELECT to_regclass('api_keys') AS t")).rows[0]).toEqual({ t: null });
      for (const u of OLD_USERS) {
        await c.query('INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)', [
          u.name, hashApiKey(u.key), u.key.slice(0, 10), u.admin === 1, '2025-01-01T00:00:00.000Z', u.revoked,
        ]);
      }
    } finally {
      await c.end();
    }
    const store = await openPostgresStore(url);
    try {
      await expectUpgraded(store);
    } finally {
      await store.close();
    }
  });
});
