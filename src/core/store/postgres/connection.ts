/**
 * The PostgreSQL engine's connection: a `pg.Pool`, numbered migrations with a recorded checksum
 * (applied under an advisory lock, so several replicas starting at once are safe), transactions on
 * one pooled client, and named prepared statements for the engine's fixed SQL.
 *
 * Only files under src/core/store/ may use this (a dependency-cruiser rule enforces it).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ConfigError, UnavailableError } from '../../errors.ts';

/** Where the PostgreSQL engine's numbered migrations live. */
export const POSTGRES_MIGRATIONS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations', 'postgres');

/** Pooled connections per process (default 10, pg's own default). */
export const PG_POOL_MAX = 10;
/** Giving up on opening a connection after this many ms (default 5 s): the server is down or unreachable. */
export const PG_CONNECT_TIMEOUT_MS = 5_000;
/** An idle pooled connection is closed after this many ms (default 30 s). */
export const PG_IDLE_TIMEOUT_MS = 30_000;
/**
 * Session advisory-lock key held while migrating (per database): one replica migrates, the others
 * wait, then find every file applied. Distinct from the corpus write lock of 030_corpus.sql.
 */
export const PG_MIGRATION_LOCK_KEY = 7749310001;

/** OIDs of the built-in types whose text form the engine parses itself. */
const OID_INT8 = 20;
const OID_TIMESTAMPTZ = 1184;
/** Largest bigint the engine hands out as a JS number (ids, counts, sequences stay far below it). */
const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Type parsing for this engine's pools (not pg's global defaults, which other code may share):
 * bigint → number (ids, counts and sequence numbers; throws past 2^53), timestamptz → ISO-8601 UTC
 * string with milliseconds (what the SQLite engine stores and `nowIso()` returns).
 */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === OID_INT8) {
      return (v: string) => {
        const n = BigInt(v);
        if (n > MAX_SAFE_BIGINT || n < -MAX_SAFE_BIGINT) throw new RangeError(`bigint ${v} exceeds Number.MAX_SAFE_INTEGER`);
        return Number(n);
      };
    }
    if (oid === OID_TIMESTAMPTZ) {
      const parse = pg.types.getTypeParser(OID_TIMESTAMPTZ, 'text') as (v: string) => Date;
      return (v: string) => parse(v).toISOString();
    }
    return pg.types.getTypeParser(oid, format ?? 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

export interface PostgresConnectionOptions {
  /** Migrations folder. Default POSTGRES_MIGRATIONS_DIR. */
  migrationsDir?: string;
  /** Pool size. Default PG_POOL_MAX. */
  max?: number;
  /** Connection timeout in ms. Default PG_CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
}

/** What both the pool and a transaction offer. */
export interface PgQueries {
  /**
   * Rows of `sql`, run as a named prepared statement (parsed and planned once per pooled
   * connection). Only for the engine's fixed SQL text: every distinct text becomes a statement.
   */
  rows<R>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** First row of `sql` (prepared like rows()), or undefined. */
  one<R>(sql: string, params?: readonly unknown[]): Promise<R | undefined>;
  /** Runs `sql` (prepared like rows()); returns the number of rows it affected. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  /** Rows of `sql` as an unnamed statement: for SQL built at run time (never cached). */
  dynamic<R>(sql: string, params?: readonly unknown[]): Promise<R[]>;
}

/** Statement names by SQL text, shared by every connection of the process (the name derives from the text). */
const statementNames = new Map<string, string>();
function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (!name) {
    name = `mneme_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
    statementNames.set(sql, name);
  }
  return name;
}

type Runner = pg.Pool | pg.PoolClient;

class Queries implements PgQueries {
  constructor(protected readonly runner: Runner) {}

  async rows<R>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    const res = await this.runner.query({ name: statementName(sql), text: sql, values: params as unknown[] });
    return res.rows as R[];
  }

  async one<R>(sql: string, params: readonly unknown[] = []): Promise<R | undefined> {
    return (await this.rows<R>(sql, params))[0];
  }

  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    const res = await this.runner.query({ name: statementName(sql), text: sql, values: params as unknown[] });
    return res.rowCount ?? 0;
  }

  async dynamic<R>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
    const res = await this.runner.query(sql, params as unknown[]);
    return res.rows as R[];
  }
}

/** Queries of one transaction, on one pooled client. */
export class PgTx extends Queries {
  /** Runs `sql` as a simple query (no parameters; several statements allowed): DDL, SET LOCAL. */
  async exec(sql: string): Promise<void> {
    await this.runner.query(sql);
  }
}

/** The pool and its migrations. Open with {@link PostgresConnection.open}. */
export class PostgresConnection extends Queries {
  private closed = false;

  private constructor(
    readonly pool: pg.Pool,
    /** The URL with any password removed (for messages). */
    readonly label: string,
  ) {
    super(pool);
  }

  /**
   * Connects to `url` and applies pending migrations.
   * @throws UnavailableError('database_busy') when the server cannot be reached; ConfigError when an
   * applied migration was edited (message names the file), a newer mneme migrated the database, or
   * a migration fails (e.g. pgvector missing: the message says how to install it).
   */
  static async open(url: string, options: PostgresConnectionOptions = {}): Promise<PostgresConnection> {
    const pool = new pg.Pool({
      connectionString: url,
      max: options.max ?? PG_POOL_MAX,
      connectionTimeoutMillis: options.connectTimeoutMs ?? PG_CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: PG_IDLE_TIMEOUT_MS,
      types: TYPES,
    });
    // An idle pooled client losing its server emits here; without a listener the process would
    // crash. The pool drops that client and the next query opens a new one (or fails, typed).
    pool.on('error', () => undefined);
    const conn = new PostgresConnection(pool, redact(url));
    try {
      await migrate(conn, options.migrationsDir ?? POSTGRES_MIGRATIONS_DIR);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return conn;
  }

  /**
   * Runs `fn` in one BEGIN…COMMIT transaction on one pooled client (READ COMMITTED); rolls back
   * when `fn` throws. Unlike the SQLite engine's write(), `fn` is async and may run several queries.
   * @throws whatever `fn` or the server throws (after rolling back)
   */
  async tx<T>(fn: (q: PgTx) => Promise<T>): Promise<T> {
    const client = await this.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(new PgTx(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      // A client whose rollback failed is in an unknown state: destroy it instead of pooling it.
      client.release(broken);
    }
  }

  /** One pooled client (release it!); for session-level work such as the migration lock. */
  async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (cause) {
      throw new UnavailableError('database_busy', `cannot connect to PostgreSQL at ${this.label}: ${(cause as Error).message}`, 1, { cause });
    }
  }

  /** Closes every pooled connection (idempotent); queries already running finish first. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  get isOpen(): boolean {
    return !this.closed;
  }
}

/** `postgres://user:secret@host/db` → `postgres://user@host/db` (never print a password). */
function redact(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '(unparseable database URL)';
  }
}

/**
 * sha256 hex of a migration file's text with line endings normalized (a CRLF checkout is no edit);
 * the same function as the SQLite engine's (not imported: this engine must not load better-sqlite3).
 */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

const MIGRATIONS_TABLE_SQL = 'CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL, sha256 text NOT NULL)';

/**
 * Applies pending migrations in file-name order, each once, each in its own transaction, recording
 * each file's checksum; the whole run holds a session advisory lock (PG_MIGRATION_LOCK_KEY), so
 * replicas starting together migrate one after the other.
 * @returns the names of the files applied now
 * @throws ConfigError naming the file when an applied migration's text changed since it was
 * applied, when the database records a migration this build does not have, or when one fails.
 */
export async function migrate(conn: PostgresConnection, dir = POSTGRES_MIGRATIONS_DIR): Promise<string[]> {
  const files = fs.readdirSync(dir).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const client = await conn.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [PG_MIGRATION_LOCK_KEY]);
    try {
      await client.query(MIGRATIONS_TABLE_SQL);
      const recorded = new Map(
        (await client.query<{ name: string; sha256: string }>('SELECT name, sha256 FROM schema_migrations')).rows.map((r) => [r.name, r.sha256]),
      );
      const applied: string[] = [];
      for (const name of files) {
        const sql = fs.readFileSync(path.join(dir, name), 'utf8');
        const sum = migrationChecksum(sql);
        const before = recorded.get(name);
        if (before !== undefined) {
          if (before !== sum) throw editedMigration(name, conn.label, before, sum);
          continue;
        }
        await applyOne(client, name, sql, sum, conn.label);
        applied.push(name);
      }
      const known = new Set(files);
      const unknown = [...recorded.keys()].filter((n) => !known.has(n));
      if (unknown.length > 0) throw new ConfigError(`${conn.label} was migrated by a newer mneme (${unknown.join(', ')}); upgrade mneme to open it`);
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [PG_MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
}

function editedMigration(name: string, label: string, recorded: string, file: string): ConfigError {
  return new ConfigError(
    `migration ${name} was edited after it was applied to ${label} (recorded sha256 ${recorded.slice(0, 12)}…, file ${file.slice(0, 12)}…); ` +
      'restore the file and add a new numbered migration for the change',
  );
}

/** One migration file in one transaction (simple-query protocol: several statements, $$ bodies). */
async function applyOne(client: pg.PoolClient, name: string, sql: string, sum: string, label: string): Promise<void> {
  try {
    await client.query('BEGIN');
    await client.query(sql);
    await client.query('INSERT INTO schema_migrations (name, applied_at, sha256) VALUES ($1, now(), $2)', [name, sum]);
    await client.query('COMMIT');
  } catch (cause) {
    await client.query('ROLLBACK').catch(() => undefined);
    const hint = /CREATE EXTENSION IF NOT EXISTS vector/i.test(sql) && isExtensionProblem(cause) ? pgvectorHint() : '';
    throw new ConfigError(`migration ${name} failed on ${label}: ${(cause as Error).message}${hint}`, { cause });
  }
}

/** SQLSTATEs of a CREATE EXTENSION that cannot work: control file missing, not available, not allowed. */
const EXTENSION_PROBLEM_CODES = new Set(['58P01', '0A000', '42501']);
function isExtensionProblem(err: unknown): boolean {
  return err instanceof pg.DatabaseError && err.code !== undefined && EXTENSION_PROBLEM_CODES.has(err.code);
}

function pgvectorHint(): string {
  return (
    ' (the pgvector extension is missing: install it on the server — a distribution package such as ' +
    'postgresql-16-pgvector, the pgvector/pgvector image, or from source — then `CREATE EXTENSION vector` as a superuser)'
  );
}
