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
import { ConflictError, InternalError, NotFoundError } from '../../errors.ts';
import type { ApiKeyRecord, ErasureCounts, NewApiKey, NewUser, ReplacementKey, UserCredential, UserRecord, UserStore } from '../users.ts';
import { DEFAULT_KEY_NAME } from '../users.ts';
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
const USER_COLUMNS_U = 'u.id, u.name, u.api_key_hash, u.key_prefix, u.is_admin, u.created_at, u.revoked_at';

interface KeyRow {
  id: number | string;
  user_id: number | string;
  name: string;
  key_prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const KEY_COLUMNS = 'id, user_id, name, key_prefix, created_at, last_used_at, revoked_at';
const SQL_INSERT_KEY = `INSERT INTO api_keys (user_id, name, key_hash, key_prefix, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING ${KEY_COLUMNS}`;

function keyFromRow(r: KeyRow): ApiKeyRecord {
  return { id: Number(r.id), userId: Number(r.user_id), name: r.name, keyPrefix: r.key_prefix, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at };
}

function isUniqueViolation(cause: unknown): boolean {
  return cause instanceof pg.DatabaseError && cause.code === PG_UNIQUE_VIOLATION;
}
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
      const id = await this.c.tx(async (q) => {
        const row = await q.one<{ id: number }>(
          'INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id',
          [name, user.apiKeyHash, user.keyPrefix, user.isAdmin, user.createdAt],
        );
        await q.run(SQL_INSERT_KEY, [row!.id, pgText(user.keyName ?? DEFAULT_KEY_NAME), user.apiKeyHash, user.keyPrefix, user.createdAt]);
        return Number(row!.id);
      });
      return { id, name, isAdmin: user.isAdmin, createdAt: user.createdAt, keyPrefix: user.keyPrefix, revokedAt: null };
    } catch (cause) {
      if (isUniqueViolation(cause)) throw new ConflictError(`a user named "${user.name}" already exists`, { cause });
      throw cause;
    }
  }

  async findByKeyHash(apiKeyHash: string): Promise<UserCredential | null> {
    const row = await this.c.one<UserRow & { key_id: number | string; key_hash: string }>(
      `SELECT ${USER_COLUMNS_U}, k.id AS key_id, k.key_hash FROM api_keys k JOIN users u ON u.id = k.user_id
       WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.revoked_at IS NULL`,
      [apiKeyHash],
    );
    return row ? { user: toRecord(row), apiKeyHash: row.key_hash, keyId: Number(row.key_id) } : null;
  }

  async addKey(key: NewApiKey): Promise<ApiKeyRecord> {
    try {
      return await this.c.tx(async (q) => {
        // FOR KEY SHARE: an erasure or revocation of the user running now waits for this insert, or it waits for them.
        const live = await q.one('SELECT id FROM users WHERE id = $1 AND revoked_at IS NULL FOR KEY SHARE', [key.userId]);
        if (!live) throw new NotFoundError(`no user with id ${key.userId}`);
        return keyFromRow((await q.one<KeyRow>(SQL_INSERT_KEY, [key.userId, pgText(key.name), key.keyHash, key.keyPrefix, key.createdAt]))!);
      });
    } catch (cause) {
      if (isUniqueViolation(cause)) throw new ConflictError(`the user already has a key named "${key.name}"`, { cause });
      throw cause;
    }
  }

  async keys(userId?: number): Promise<ApiKeyRecord[]> {
    const rows =
      userId !== undefined
        ? await this.c.rows<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY id`, [userId])
        : await this.c.rows<KeyRow>(
            `SELECT k.id, k.user_id, k.name, k.key_prefix, k.created_at, k.last_used_at, k.revoked_at FROM api_keys k
             JOIN users u ON u.id = k.user_id WHERE u.revoked_at IS NULL ORDER BY k.user_id, k.id`,
          );
    return rows.map(keyFromRow);
  }

  async revokeKey(userId: number, keyId: number, at: string): Promise<boolean> {
    return (await this.c.run('UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL', [at, keyId, userId])) > 0;
  }

  async rotateKey(userId: number, keyId: number, replacement: ReplacementKey): Promise<{ revoked: ApiKeyRecord; key: ApiKeyRecord } | null> {
    return this.c.tx(async (q) => {
      // The UPDATE locks the old row: two rotations of one key at once make one new key.
      const old = await q.one<KeyRow>(
        `UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL RETURNING ${KEY_COLUMNS}`,
        [replacement.at, keyId, userId],
      );
      if (!old) return null;
      const key = keyFromRow((await q.one<KeyRow>(SQL_INSERT_KEY, [userId, old.name, replacement.keyHash, replacement.keyPrefix, replacement.at]))!);
      return { revoked: keyFromRow(old), key };
    });
  }

  async recordKeyUse(uses: ReadonlyArray<{ keyId: number; at: string }>): Promise<void> {
    if (uses.length === 0) return;
    await this.c.run(
      `UPDATE api_keys k SET last_used_at = u.at FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, at)
       WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`,
      [uses.map((u) => u.keyId), uses.map((u) => u.at)],
    );
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
