/**
 * PostgreSQL implementation of {@link UserStore} (schema: migrations/postgres/035_users_chat.sql).
 * Same semantics as sqlite/users.ts. Erasure: one transaction that first locks the user's row
 * (FOR UPDATE: a prediction-log write holding the row FOR KEY SHARE finishes first, one starting
 * later finds the user gone), deletes from every table with a `user_id` column (found in
 * information_schema, so tables of later migrations are covered), then the user, and checks before
 * commit that nothing of the user is left. After commit the affected tables are VACUUMed, so the
 * dead rows' space is reclaimed. Unlike the SQLite engine (secure_delete + WAL checkpoint), this
 * does not guarantee the bytes are gone from disk: PostgreSQL's WAL, WAL archives and backups keep
 * copies for as long as the operator retains them.
 */
import pg from 'pg';
import { ConflictError, InternalError } from '../../errors.ts';
import type { ErasureCounts, NewUser, UserCredential, UserRecord, UserStore } from '../users.ts';
import type { PgTx, PostgresConnection } from './connection.ts';
import { pgText } from './conversations.ts';

interface UserRow {
  id: number;
  name: string;
  api_key_hash: string;
  key_prefix: string;
  is_admin: boolean;
  created_at: string;
  revoked_at: string | null;
}

const USER_COLUMNS = 'id, name, api_key_hash, key_prefix, is_admin, created_at, revoked_at';
/** SQLSTATE of a unique-constraint violation. */
const PG_UNIQUE_VIOLATION = '23505';

/**
 * Erasure order: children before parents, so each table's count is its own rows (the foreign-key
 * cascades would otherwise delete them silently, uncounted). Tables not listed go first.
 */
const ERASE_ORDER = ['feedback', 'messages', 'responses', 'conversations'];

const SQL_USER_DATA_TABLES = `SELECT c.table_name AS name
  FROM information_schema.columns c
  JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
  WHERE c.table_schema = current_schema() AND c.column_name = 'user_id' AND t.table_type = 'BASE TABLE'
  ORDER BY c.table_name COLLATE "C"`;

function toRecord(r: UserRow): UserRecord {
  return { id: r.id, name: r.name, isAdmin: r.is_admin, createdAt: r.created_at, keyPrefix: r.key_prefix, revokedAt: r.revoked_at };
}

export class PostgresUserStore implements UserStore {
  constructor(protected readonly c: PostgresConnection) {}

  async create(user: NewUser): Promise<UserRecord> {
    const name = pgText(user.name);
    try {
      const row = await this.c.one<{ id: number }>(
        'INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id',
        [name, user.apiKeyHash, user.keyPrefix, user.isAdmin, user.createdAt],
      );
      return { id: row!.id, name, isAdmin: user.isAdmin, createdAt: user.createdAt, keyPrefix: user.keyPrefix, revokedAt: null };
    } catch (cause) {
      if (cause instanceof pg.DatabaseError && cause.code === PG_UNIQUE_VIOLATION) throw new ConflictError(`a user named "${user.name}" already exists`, { cause });
      throw cause;
    }
  }

  async findByKeyHash(apiKeyHash: string): Promise<UserCredential | null> {
    const row = await this.c.one<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE api_key_hash = $1 AND revoked_at IS NULL`, [apiKeyHash]);
    return row ? { user: toRecord(row), apiKeyHash: row.api_key_hash } : null;
  }

  async findByName(name: string): Promise<UserRecord | null> {
    const row = await this.c.one<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE name = $1`, [pgText(name)]);
    return row ? toRecord(row) : null;
  }

  async list(): Promise<UserRecord[]> {
    return (await this.c.rows<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE revoked_at IS NULL ORDER BY id`)).map(toRecord);
  }

  async revoke(userId: number, at: string): Promise<boolean> {
    return (await this.c.run('UPDATE users SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [at, userId])) > 0;
  }

  async erase(userId: number): Promise<ErasureCounts> {
    const counts = await this.c.tx((q) => this.eraseInTransaction(q, userId));
    const touched = Object.entries(counts)
      .filter(([, n]) => n > 0)
      .map(([t]) => pg.escapeIdentifier(t));
    // Reclaims the erased rows' space now rather than whenever autovacuum comes by. Best effort:
    // the erasure is committed; a VACUUM that cannot run (e.g. not the tables' owner) changes nothing.
    if (touched.length > 0) await this.c.dynamic(`VACUUM ${touched.join(', ')}`).catch(() => undefined);
    return counts;
  }

  async userDataTables(): Promise<string[]> {
    return this.tablesWithUserId(this.c);
  }

  /** Tables (any migration, present or future) with a `user_id` column, sorted by name. */
  private async tablesWithUserId(q: Pick<PgTx, 'rows'>): Promise<string[]> {
    return (await q.rows<{ name: string }>(SQL_USER_DATA_TABLES)).map((r) => r.name);
  }

  /** Body of `erase`, inside its transaction. */
  private async eraseInTransaction(q: PgTx, userId: number): Promise<ErasureCounts> {
    // Waits for prediction-log writes of this user in flight (they hold the row FOR KEY SHARE);
    // writes starting from now wait for this transaction and then find no user.
    await q.rows('SELECT id FROM users WHERE id = $1 FOR UPDATE', [userId]);
    const rank = (t: string) => ERASE_ORDER.indexOf(t);
    const tables = (await this.tablesWithUserId(q)).sort((a, b) => rank(a) - rank(b));
    const counts: ErasureCounts = {};
    for (const t of tables) {
      const [row] = await q.dynamic<{ n: number }>(`WITH d AS (DELETE FROM ${pg.escapeIdentifier(t)} WHERE user_id = $1 RETURNING 1) SELECT count(*) AS n FROM d`, [userId]);
      counts[t] = row?.n ?? 0;
    }
    counts.users = await q.run('DELETE FROM users WHERE id = $1', [userId]);
    for (const t of tables) {
      const [row] = await q.dynamic<{ n: number }>(`SELECT count(*) AS n FROM ${pg.escapeIdentifier(t)} WHERE user_id = $1`, [userId]);
      const left = row?.n ?? 0;
      if (left > 0) throw new InternalError(`erasure of user ${userId} left ${left} rows in ${t}`);
    }
    return counts;
  }
}
