/**
 * The export source's user-hash key and run records, on real SQLite files.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pseudonymousUserHash } from '../../../src/core/store/exports.ts';
import { USER_HASH_KEY_SETTING } from '../../../src/core/store/sqlite/exports.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';

const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function open(file?: string): SqliteStore {
  let f = file;
  if (!f) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-runs-'));
    dirs.push(dir);
    f = path.join(dir, 'mneme.sqlite');
  }
  const s = openSqliteStore(f);
  stores.push(s);
  return s;
}

const ann = { id: 1, createdAt: '2025-01-01T00:00:00.000Z' };
const bob = { id: 2, createdAt: '2025-01-02T00:00:00.000Z' };

describe('user hash key', () => {
  it('is created once per data dir, kept in the database, and shared by every connection', async () => {
    const a = open();
    const key = await a.exports.userHashKey();
    expect(key.byteLength).toBe(32);
    const b = open(a.file);
    expect(Buffer.from(await b.exports.userHashKey()).equals(Buffer.from(key))).toBe(true);
    expect(await b.exports.userHash(ann)).toBe(pseudonymousUserHash(key, ann));
    expect(a.connection.db.prepare('SELECT count(*) FROM settings WHERE name = ?').pluck().get(USER_HASH_KEY_SETTING)).toBe(1);
    // Another data dir: another key, another hash for the same user.
    expect(await open().exports.userHash(ann)).not.toBe(await a.exports.userHash(ann));
    // The same id created at another time is another person.
    expect(await a.exports.userHash({ ...ann, createdAt: '2026-01-01T00:00:00.000Z' })).not.toBe(await a.exports.userHash(ann));
  });
});

describe('export runs', () => {
  it('records runs with their user hashes; lists the manifests of a user, most recent first, each once', async () => {
    const s = open();
    const [h1, h2] = [await s.exports.userHash(ann), await s.exports.userHash(bob)];
    const run = (manifestPath: string, userHashes: string[]) => s.exports.recordRun({ manifestPath, format: 'sft', examples: 3, createdAt: '2025-05-01T00:00:00.000Z', userHashes });
    await run('/x/a.manifest.json', [h1, h2]);
    await run('/x/b.manifest.json', [h2]);
    await run('/x/a.manifest.json', [h1]);
    const failed = await run('/x/c.manifest.json', [h1]);
    await s.exports.forgetRun(failed);
    expect(await s.exports.manifestsContainingUser(ann)).toEqual(['/x/a.manifest.json']);
    expect(await s.exports.manifestsContainingUser(bob)).toEqual(['/x/b.manifest.json', '/x/a.manifest.json']);
    expect(await s.exports.manifestsContainingUser({ id: 3, createdAt: bob.createdAt })).toEqual([]);
    expect(s.connection.db.prepare('SELECT count(*) FROM export_run_users WHERE run_id = ?').pluck().get(failed)).toBe(0);
  });
});
