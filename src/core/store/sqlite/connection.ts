/**
 * The SQLite engine's one connection per process: opening (WAL, secure_delete, foreign keys),
 * numbered migrations with a recorded checksum, a statement cache, and writes that never wait for
 * another process's lock on the event loop.
 *
 * Only files under src/core/store/ may use this (a test enforces it): everything else goes through
 * the typed aggregate stores built on it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { ConfigError, UnavailableError } from '../../errors.ts';
import { loadFtsExtension } from './fts-native.ts';
import type { FtsNativeState } from './fts-native.ts';

export type SqliteDb = Database.Database;
export type Statement<P extends unknown[] | object, R> = Database.Statement<P, R>;

/** Where the SQLite engine's numbered migrations live. */
export const SQLITE_MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations', 'sqlite');

/**
 * SQLite's page cache per connection, in KiB (default 64 MiB; SQLite's own default is 2 MiB). Pages
 * are allocated as they are read, so a small data dir never uses it all. At 1M chunks the FTS5
 * posting lists a search walks did not fit 2 MiB and were re-read through the OS every query: BM25
 * p50 16.7 → 9.7 ms with 64 MiB (bench/README.md, "Issue 17 at 1M: BM25 split").
 */
export const SQLITE_CACHE_KIB = 65_536;

/**
 * How long one attempt waits inside SQLite (synchronously, on the calling thread) for another
 * process's write lock, in ms. Kept tiny: beyond it the write backs off asynchronously, so the event
 * loop keeps serving while an ingest commits.
 */
export const SQLITE_BUSY_SLICE_MS = 2;
/** First asynchronous back-off after SQLITE_BUSY, in ms; doubles up to SQLITE_BUSY_MAX_BACKOFF_MS. */
export const SQLITE_BUSY_FIRST_BACKOFF_MS = 2;
export const SQLITE_BUSY_MAX_BACKOFF_MS = 8;
/**
 * Writer fairness between processes. SQLite has no queue for its write lock: a bulk writer (an
 * ingest committing a 250k-chunk file in back-to-back transactions) leaves only microsecond gaps,
 * and a server polling for the lock misses them for seconds (and its other writes queue behind
 * that one). So a connection locked out marks `<db>-writewait` (its pid, refreshed at most every
 * WRITE_WAIT_MARK_MS while it waits), and every connection about to write first steps aside for
 * WRITE_YIELD_MS while another process's mark is fresher than WRITE_WAIT_FRESH_MS, at most
 * WRITE_YIELD_MAX_MS in all. Measured with bench/serve-under-ingest.ts (bench/README.md).
 */
export const WRITE_WAIT_FRESH_MS = 100;
export const WRITE_WAIT_MARK_MS = 10;
export const WRITE_YIELD_MS = 12;
export const WRITE_YIELD_MAX_MS = 120;
/** A write still locked out after this long fails with 503 `database_busy`, in ms (default 30 s). */
export const SQLITE_WRITE_DEADLINE_MS = 30_000;

export interface SqliteConnectionOptions {
  /** Open read-only (no migrations, no writes); used by `doctor`. Default false. */
  readonly?: boolean;
  /** Migrations folder. Default SQLITE_MIGRATIONS_DIR. */
  migrationsDir?: string;
  /** Give up on a locked-out write after this many ms. Default SQLITE_WRITE_DEADLINE_MS. */
  writeDeadlineMs?: number;
  /** Load mneme's FTS5 extension (fts-native.ts) when it is built. Default true (config: MNEME_FTS_NATIVE). */
  ftsNative?: boolean;
}

/** A SQLite error code (SQLITE_BUSY, SQLITE_CONSTRAINT_UNIQUE, ...), or undefined for other errors. */
export function sqliteCode(err: unknown): string | undefined {
  return err instanceof Database.SqliteError ? err.code : undefined;
}

function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class SqliteConnection {
  readonly db: SqliteDb;
  readonly file: string;
  /** Whether this connection ranks with mneme_bm25 (fts-native.ts) and why not. */
  readonly fts: FtsNativeState;
  /** The ftsNative option it was opened with (a reader thread's connection follows it). */
  readonly ftsNativeWanted: boolean;
  private readonly cache = new Map<string, Statement<unknown[], unknown>>();
  private readonly writeDeadlineMs: number;
  private closed = false;
  /** Writes of this process run one at a time, in arrival order (SQLite has one writer anyway). */
  private writeChain: Promise<unknown> = Promise.resolve();
  /** The write-wait mark shared by every process writing this file (null: read-only). */
  private readonly waitMark: string | null;
  private lastMarkAt = 0;

  /**
   * Opens (creating if needed) the database at `file` and applies pending migrations.
   * @throws ConfigError when the file cannot be opened or created (message names the path), or when
   * an applied migration was edited since (message names the file).
   */
  constructor(file: string, options: SqliteConnectionOptions = {}) {
    this.file = file;
    this.writeDeadlineMs = options.writeDeadlineMs ?? SQLITE_WRITE_DEADLINE_MS;
    this.waitMark = options.readonly ? null : `${file}-writewait`;
    const readonly = options.readonly ?? false;
    try {
      if (!readonly) {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        // Owner-only (0600): created so before SQLite opens it; SQLite gives -wal/-shm the same mode.
        fs.closeSync(fs.openSync(file, 'a', DB_FILE_MODE));
        restrictFileModes(file);
      }
      this.db = new Database(file, { readonly, fileMustExist: readonly });
    } catch (cause) {
      throw new ConfigError(`cannot open database ${file}: ${(cause as Error).message}`, { cause });
    }
    try {
      this.db.pragma(`busy_timeout = ${SQLITE_BUSY_SLICE_MS}`);
      if (!readonly) {
        this.db.pragma('journal_mode = WAL');
        // WAL + NORMAL survives a killed process (only an OS crash can lose the last commits).
        this.db.pragma('synchronous = NORMAL');
      }
      // Erased rows are overwritten with zeros, not left readable in free pages (GDPR erasure).
      this.db.pragma('secure_delete = ON');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma(`cache_size = -${SQLITE_CACHE_KIB}`);
      this.ftsNativeWanted = options.ftsNative ?? true;
      this.fts = loadFtsExtension(this.db, this.ftsNativeWanted);
      if (!readonly) this.migrateWithRetry(options.migrationsDir ?? SQLITE_MIGRATIONS_DIR);
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  /** A cached prepared statement for `sql` (prepared once per connection: ~1 µs per call after). */
  stmt<P extends unknown[] | object = unknown[], R = unknown>(sql: string): Statement<P, R> {
    let s = this.cache.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.cache.set(sql, s);
    }
    return s as unknown as Statement<P, R>;
  }

  /** Runs `fn` in a deferred read transaction: one consistent snapshot, never waits for a lock in WAL. */
  read<T>(fn: () => T): T {
    return this.db.transaction(fn).deferred();
  }

  /**
   * Runs `fn` in one IMMEDIATE write transaction. When another process holds the write lock, waits
   * asynchronously (exponential back-off from SQLITE_BUSY_FIRST_BACKOFF_MS), never on the event loop
   * for more than SQLITE_BUSY_SLICE_MS. `fn` must be synchronous: a transaction never spans an await.
   * @throws UnavailableError('database_busy') after the write deadline; whatever `fn` throws.
   */
  write<T>(fn: () => T): Promise<T> {
    const run = this.writeChain.then(() => this.writeNow(fn));
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  private async writeNow<T>(fn: () => T): Promise<T> {
    const tx = this.db.transaction(fn);
    await this.stepAsideForWaiters();
    const deadline = Date.now() + this.writeDeadlineMs;
    let backoff = SQLITE_BUSY_FIRST_BACKOFF_MS;
    for (;;) {
      try {
        return tx.immediate();
      } catch (err) {
        if (!isBusy(err) || this.closed) throw err;
        if (Date.now() >= deadline) {
          throw new UnavailableError('database_busy', `the database stayed locked by another process for ${this.writeDeadlineMs} ms`, 1, { cause: err });
        }
        this.markWaiting();
        await sleep(backoff);
        backoff = Math.min(backoff * 2, SQLITE_BUSY_MAX_BACKOFF_MS);
      }
    }
  }

  /** Says "this process waits for the write lock" to the other writers (see WRITE_WAIT_FRESH_MS). */
  private markWaiting(): void {
    const now = Date.now();
    if (this.waitMark === null || now - this.lastMarkAt < WRITE_WAIT_MARK_MS) return;
    this.lastMarkAt = now;
    try {
      fs.writeFileSync(this.waitMark, String(process.pid), { mode: DB_FILE_MODE });
    } catch {
      // Fairness only: a read-only directory just means no mark.
    }
  }

  /** Waits while another process's write-wait mark is fresh (bounded by WRITE_YIELD_MAX_MS). */
  private async stepAsideForWaiters(): Promise<void> {
    if (this.waitMark === null) return;
    for (let waited = 0; waited < WRITE_YIELD_MAX_MS; waited += WRITE_YIELD_MS) {
      const st = fs.statSync(this.waitMark, { throwIfNoEntry: false });
      if (!st || Date.now() - st.mtimeMs > WRITE_WAIT_FRESH_MS) return;
      let pid = '';
      try {
        pid = fs.readFileSync(this.waitMark, 'utf8');
      } catch {
        return;
      }
      if (pid === String(process.pid)) return;
      await sleep(WRITE_YIELD_MS);
    }
  }

  /**
   * Synchronous write for code that cannot await (migrations, CLI-only maintenance); waits for the
   * lock by blocking. Never use it on a server request path.
   */
  writeSync<T>(fn: () => T, waitMs = SQLITE_WRITE_DEADLINE_MS): T {
    const tx = this.db.transaction(fn);
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        return tx.immediate();
      } catch (err) {
        if (!isBusy(err) || Date.now() >= deadline) throw err;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      }
    }
  }

  /** Moves WAL content into the main file and truncates the WAL (after an erase: no copy left there). */
  checkpoint(): void {
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    this.db.close();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  private migrateWithRetry(dir: string): void {
    this.writeSync(() => this.db.exec(MIGRATIONS_TABLE_SQL));
    migrate(this, dir);
  }
}

const MIGRATIONS_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL, sha256 TEXT)';

/** sha256 hex of a migration file's text with line endings normalized (a CRLF checkout is no edit). */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

/**
 * Applies pending migrations in file-name order, each once, each in its own IMMEDIATE transaction
 * (safe when several processes start at once), recording each file's checksum.
 * @throws ConfigError naming the file when an applied migration's text changed since it was applied,
 * or when the database records a migration this build does not have (a newer mneme wrote it).
 */
export function migrate(conn: SqliteConnection, dir = SQLITE_MIGRATIONS_DIR): string[] {
  const db = conn.db;
  const columns = db.prepare<[], { name: string }>('PRAGMA table_info(schema_migrations)').all();
  if (!columns.some((c) => c.name === 'sha256')) conn.writeSync(() => db.exec('ALTER TABLE schema_migrations ADD COLUMN sha256 TEXT'));
  const files = fs.readdirSync(dir).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const recorded = db.prepare<[string], { name: string; sha256: string | null }>('SELECT name, sha256 FROM schema_migrations WHERE name = ?');
  const record = db.prepare('INSERT INTO schema_migrations (name, applied_at, sha256) VALUES (?, ?, ?)');
  const backfill = db.prepare('UPDATE schema_migrations SET sha256 = ? WHERE name = ? AND sha256 IS NULL');
  const applied: string[] = [];
  for (const name of files) {
    const sql = fs.readFileSync(path.join(dir, name), 'utf8');
    const sum = migrationChecksum(sql);
    const check = (row: { sha256: string | null }) => {
      if (row.sha256 !== null && row.sha256 !== sum) {
        throw new ConfigError(
          `migration ${name} was edited after it was applied to ${conn.file} (recorded sha256 ${row.sha256.slice(0, 12)}…, file ${sum.slice(0, 12)}…); ` +
            'restore the file and add a new numbered migration for the change',
        );
      }
    };
    const before = recorded.get(name);
    if (before) {
      check(before);
      // Databases migrated before checksums were recorded learn them on their next start.
      if (before.sha256 === null) conn.writeSync(() => backfill.run(sum, name));
      continue;
    }
    conn.writeSync(() => {
      // Re-check inside the write transaction: another process may have applied it meanwhile.
      const row = recorded.get(name);
      if (row) return check(row);
      db.exec(sql);
      record.run(name, new Date().toISOString(), sum);
      applied.push(name);
    });
  }
  const known = new Set(files);
  const unknown = db.prepare<[], { name: string }>('SELECT name FROM schema_migrations').all().filter((r) => !known.has(r.name));
  if (unknown.length > 0) {
    throw new ConfigError(`${conn.file} was migrated by a newer mneme (${unknown.map((r) => r.name).join(', ')}); upgrade mneme to open it`);
  }
  return applied;
}

/** Mode of the database file and its -wal/-shm companions: owner read/write only. */
export const DB_FILE_MODE = 0o600;

/** chmods `file` and its existing -wal/-shm to DB_FILE_MODE; a file owned by someone else is left as is. */
function restrictFileModes(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, DB_FILE_MODE);
    } catch {
      // Missing (-wal/-shm not created yet) or not ours (EPERM): nothing to tighten.
    }
  }
}
