/** SQLite-engine specifics: connection set-up, checksummed migrations, crash leftovers, lock waits. */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ConfigError, UnavailableError } from '../../src/core/errors.ts';
import { migrationChecksum, SQLITE_MIGRATIONS_DIR, SqliteConnection, WRITE_WAIT_FRESH_MS, WRITE_YIELD_MS } from '../../src/core/store/sqlite/connection.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import { tempDir } from '../helpers/cli.ts';

function copyMigrations(): string {
  const dir = tempDir('mneme-migrations-');
  for (const f of fs.readdirSync(SQLITE_MIGRATIONS_DIR)) fs.copyFileSync(path.join(SQLITE_MIGRATIONS_DIR, f), path.join(dir, f));
  return dir;
}

describe('SqliteConnection', () => {
  it('opens in WAL mode with foreign keys and secure_delete, migrates once, records checksums', () => {
    const file = path.join(tempDir(), 'x', 'mneme.sqlite');
    const c = new SqliteConnection(file);
    expect(c.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(c.db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(c.db.pragma('secure_delete', { simple: true })).toBe(1);
    const rows = c.db.prepare('SELECT name, sha256 FROM schema_migrations ORDER BY name').all() as Array<{ name: string; sha256: string }>;
    expect(rows.map((r) => r.name)).toEqual(fs.readdirSync(SQLITE_MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort());
    for (const r of rows) expect(r.sha256).toBe(migrationChecksum(fs.readFileSync(path.join(SQLITE_MIGRATIONS_DIR, r.name), 'utf8')));
    c.close();
    new SqliteConnection(file).close();
  });

  it('refuses to start when an applied migration was edited, naming the file', () => {
    const migrations = copyMigrations();
    const file = path.join(tempDir(), 'mneme.sqlite');
    new SqliteConnection(file, { migrationsDir: migrations }).close();
    fs.appendFileSync(path.join(migrations, '001_core.sql'), '\n-- an innocent-looking edit\n');
    let err: unknown;
    try {
      new SqliteConnection(file, { migrationsDir: migrations });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('001_core.sql');
    // A CRLF checkout of the same text is not an edit.
    const crlf = copyMigrations();
    const f2 = path.join(tempDir(), 'mneme.sqlite');
    new SqliteConnection(f2, { migrationsDir: crlf }).close();
    const p = path.join(crlf, '020_features.sql');
    fs.writeFileSync(p, fs.readFileSync(p, 'utf8').replace(/\n/g, '\r\n'));
    new SqliteConnection(f2, { migrationsDir: crlf }).close();
  });

  it('refuses a database migrated by a newer mneme', () => {
    const migrations = copyMigrations();
    const file = path.join(tempDir(), 'mneme.sqlite');
    fs.writeFileSync(path.join(migrations, '999_future.sql'), 'CREATE TABLE future_thing (x INTEGER);');
    new SqliteConnection(file, { migrationsDir: migrations }).close();
    fs.rmSync(path.join(migrations, '999_future.sql'));
    expect(() => new SqliteConnection(file, { migrationsDir: migrations })).toThrow(/999_future\.sql/);
  });

  it('learns the checksums of a database migrated before they were recorded', () => {
    const file = path.join(tempDir(), 'mneme.sqlite');
    new SqliteConnection(file).close();
    const raw = new Database(file);
    raw.exec('UPDATE schema_migrations SET sha256 = NULL');
    raw.close();
    const c = new SqliteConnection(file);
    expect(c.db.prepare('SELECT count(*) AS n FROM schema_migrations WHERE sha256 IS NULL').get()).toEqual({ n: 0 });
    c.close();
  });

  it('a write locked out by another process waits without blocking the event loop, then succeeds', async () => {
    const file = path.join(tempDir(), 'mneme.sqlite');
    const c = new SqliteConnection(file);
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    const started = Date.now();
    const write = c.write(() => c.db.prepare("INSERT INTO watermarks (name, value) VALUES ('t', 1)").run().changes);
    setTimeout(() => other.exec('COMMIT'), 150);
    expect(await write).toBe(1);
    clearInterval(ticker);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    // The event loop kept turning while the write waited (a blocking wait would give ~0 ticks).
    expect(ticks).toBeGreaterThan(20);
    other.close();
    c.close();
  });

  it("writer fairness: a locked-out write marks <db>-writewait with its pid; another process's fresh mark makes a writer step aside first", async () => {
    const file = path.join(tempDir(), 'mneme.sqlite');
    const mark = `${file}-writewait`;
    const c = new SqliteConnection(file);
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    const write = c.write(() => c.db.prepare("INSERT INTO watermarks (name, value) VALUES ('w', 1)").run().changes);
    setTimeout(() => other.exec('COMMIT'), 60);
    expect(await write).toBe(1);
    expect(fs.readFileSync(mark, 'utf8')).toBe(String(process.pid));
    // Another process's fresh mark: this write steps aside for at least one WRITE_YIELD_MS.
    fs.writeFileSync(mark, '999999999');
    const t = performance.now();
    await c.write(() => 1);
    expect(performance.now() - t).toBeGreaterThanOrEqual(WRITE_YIELD_MS - 1);
    // A stale mark (older than WRITE_WAIT_FRESH_MS) is ignored.
    const old = new Date(Date.now() - 10 * WRITE_WAIT_FRESH_MS);
    fs.utimesSync(mark, old, old);
    let steps = 0;
    await c.write(() => steps++);
    expect(steps).toBe(1);
    other.close();
    c.close();
  });

  it('gives up on a write still locked out after the deadline with 503 database_busy', async () => {
    const file = path.join(tempDir(), 'mneme.sqlite');
    const c = new SqliteConnection(file, { writeDeadlineMs: 100 });
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    const err = await c.write(() => 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).code).toBe('database_busy');
    other.exec('ROLLBACK');
    other.close();
    c.close();
  });
});

describe('SqliteCorpusStore crash leftovers', () => {
  it('cleanupInterrupted removes a half-written staging copy and the chunks of a replaced document', async () => {
    const file = path.join(tempDir(), 'mneme.sqlite');
    const store = openSqliteStore(file);
    const live = await store.corpus.replaceDocument(
      { collection: 'c', sourceUri: '/a', contentSha256: 'h1', title: 'A', kind: 'text/plain', bytes: 1 },
      [{ ord: 0, text: 'kept text', headingPath: '', tokenCount: 2, contentSha256: 'x' }],
      null,
      null,
    );
    // What a run killed mid-way through a large document leaves: a tombstoned staging row with chunks.
    const raw = store.connection.db;
    raw.prepare("INSERT INTO documents (id, collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at, deleted_at) VALUES (50, 'c', 'staging:abc:/a', 'h2', 'A', 'text/plain', 1, 't', 't', 't')").run();
    for (let i = 0; i < 5; i++) raw.prepare("INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES (50, ?, 'half written', '', 2, 'y')").run(i);
    expect((await store.corpus.counts()).stagingDocuments).toBe(1);
    expect(await store.corpus.searchText('half written', { limit: 5 })).toEqual([]);
    const removed = await store.corpus.cleanupInterrupted();
    expect(removed).toHaveLength(5);
    const k = await store.corpus.counts();
    expect(k).toMatchObject({ stagingDocuments: 0, chunksOfDeletedDocuments: 0, chunks: 1, documents: 1 });
    expect(await store.corpus.chunkSources('c')).toEqual([{ id: expect.any(Number), sourceUri: '/a' }]);
    expect(live.chunksAdded).toBe(1);
    await store.close();
  });
});

describe('SqliteReader: full-text searches on a reader thread', () => {
  it('gives the same results as the main connection and leaves the event loop free meanwhile', async () => {
    const store = openSqliteStore(path.join(tempDir(), 'mneme.sqlite'));
    // One large document: "valve" and "gauge" are in every chunk (IDF 0: pruned), "group1" in a
    // third of them, so FTS5 ranks ~13k matches (tens of ms).
    const chunks = Array.from({ length: 40_000 }, (_, i) => ({ ord: i, text: `valve ${i % 997} reports gauge ${(i * 13) % 89} at station ${i % 211} group${i % 3}`, headingPath: '', tokenCount: 9, contentSha256: `h${i}` }));
    await store.corpus.replaceDocument({ collection: 'c', sourceUri: '/big.json', contentSha256: 'x', title: 'Big', kind: 'application/json', bytes: 1 }, chunks, null, null);
    const q = 'valve gauge group1';
    const direct = await store.corpus.searchText(q, { limit: 50 });
    const docsDirect = await store.corpus.searchDocuments(q, { limit: 5 });
    expect(await store.readerReady()).toBe(false);
    store.startReader();
    expect(await store.readerReady()).toBe(true);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const viaReader = await store.corpus.searchText(q, { limit: 50 });
    const elapsed = performance.now() - t0;
    clearInterval(ticker);
    expect(viaReader).toEqual(direct);
    expect(await store.corpus.searchDocuments(q, { limit: 5 })).toEqual(docsDirect);
    // The timer kept firing while the reader worked (a search on this thread would starve it).
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(elapsed / 4));
    await store.close();
  });
});
