/**
 * Opens the one SQLite file of a data dir (WAL mode) and applies migrations. Migrations are the
 * `*.sql` files in ./migrations, applied in file-name order, each once, each in a transaction;
 * an area that needs schema adds its own numbered file (e.g. `020_features.sql`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { ConfigError } from './errors.ts';

export type Db = Database.Database;

const MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'store', 'migrations', 'sqlite');
/** How long a writer waits for another process's write lock before SQLITE_BUSY, in ms. */
export const DB_BUSY_TIMEOUT_MS = 10_000;

export interface OpenDbOptions {
  /** Open read-only (no migrations); used by `doctor`. Default false. */
  readonly?: boolean;
}

/**
 * Opens (creating if needed) the database at `file` and migrates it.
 * @throws ConfigError when the file cannot be opened or created (message names the path).
 */
export function openDb(file: string, options: OpenDbOptions = {}): Db {
  let db: Db;
  try {
    if (!options.readonly) fs.mkdirSync(path.dirname(file), { recursive: true });
    db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (cause) {
    throw new ConfigError(`cannot open database ${file}: ${(cause as Error).message}`, { cause });
  }
  db.pragma(`busy_timeout = ${DB_BUSY_TIMEOUT_MS}`);
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    // WAL + NORMAL survives a killed process (only an OS crash can lose the last commits).
    db.pragma('synchronous = NORMAL');
  }
  db.pragma('foreign_keys = ON');
  if (!options.readonly) migrate(db);
  return db;
}

/** Applies pending migrations; safe when several processes start at once (IMMEDIATE transaction). */
export function migrate(db: Db): string[] {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)');
  const files = fs
    .readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  const applied: string[] = [];
  const isApplied = db.prepare<[string], { name: string }>('SELECT name FROM schema_migrations WHERE name = ?');
  const record = db.prepare('INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)');
  for (const name of files) {
    const sql = fs.readFileSync(path.join(MIGRATIONS_DIR, name), 'utf8');
    const run = db.transaction(() => {
      // Re-check inside the write transaction: another process may have applied it meanwhile.
      if (isApplied.get(name)) return;
      db.exec(sql);
      record.run(name, new Date().toISOString());
      applied.push(name);
    });
    if (!isApplied.get(name)) run.immediate();
  }
  return applied;
}

/** Current time as the ISO string stored everywhere. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Float32Array → BLOB (copy-free view of the same bytes). */
export function vectorToBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** BLOB → Float32Array (copies, so the result is aligned and owned). */
export function blobToVector(b: Buffer): Float32Array {
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** Reads the corpus version counter bumped by every chunk/embedding change. */
export function corpusVersion(db: Db): number {
  return (db.prepare('SELECT version FROM corpus_state WHERE id = 1').get() as { version: number }).version;
}
