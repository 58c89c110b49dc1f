/** SQLite implementation of {@link UserStore} (every statement of this aggregate lives here). */
import { ConflictError, InternalError, NotFoundError } from '../../errors.ts';
import type { ApiKeyRecord, ErasureCounts, NewApiKey, NewUser, ReplacementKey, UserCredential, UserRecord, UserStore } from '../users.ts';
import { DEFAULT_KEY_NAME } from '../users.ts';
import type { SqliteConnection } from './connection.ts';
import { sqliteCode } from './connection.ts';

interface UserRow {
  id: number;
  name: string;
  api_key_hash: string;
  key_prefix: string;
  is_admin: number;
  created_at: string;
  revoked_at: string | null;
}

const USER_COLUMNS = 'id, name, api_key_hash, key_prefix, is_admin, created_at, revoked_at';
const USER_COLUMNS_U = 'u.id, u.name, u.api_key_hash, u.key_prefix, u.is_admin, u.created_at, u.revoked_at';

interface KeyRow {
  id: number;
  user_id: number;
  name: string;
  key_prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const KEY_COLUMNS = 'k.id, k.user_id, k.name, k.key_prefix, k.created_at, k.last_used_at, k.revoked_at';
const SQL_INSERT_KEY = 'INSERT INTO api_keys (user_id, name, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?, ?)';
const SQL_KEY_BY_ID = `SELECT ${KEY_COLUMNS} FROM api_keys k WHERE k.id = ?`;

export function keyFromRow(r: KeyRow): ApiKeyRecord {
  return { id: Number(r.id), userId: Number(r.user_id), name: r.name, keyPrefix: r.key_prefix, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at };
}

/**
 * Erasure order: children before parents, so each table's count is its own rows (the foreign-key
 * cascades would otherwise delete them silently, uncounted). Tables not listed go first.
 */
const ERASE_ORDER = ['feedback', 'messages', 'responses', 'conversations'];

function toRecord(r: UserRow): UserRecord {
  return { id: r.id, name: r.name, isAdmin: r.is_admin === 1, createdAt: r.created_at, keyPrefix: r.key_prefix, revokedAt: r.revoked_at };
}

/** A table name as a quoted SQL identifier. */
function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export class SqliteUserStore implements UserStore {
  constructor(protected readonly c: SqliteConnection) {}

  async create(user: NewUser): Promise<UserRecord> {
    try {
      const id = await this.c.write(() => {
        const userId = this.c
          .stmt<[string, string, string, number, string]>('INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at) VALUES (?, ?, ?, ?, ?)')
          .run(user.name, user.apiKeyHash, user.keyPrefix, user.isAdmin ? 1 : 0, user.createdAt).lastInsertRowid;
        this.c.stmt(SQL_INSERT_KEY).run(userId, user.keyName ?? DEFAULT_KEY_NAME, user.apiKeyHash, user.keyPrefix, user.createdAt);
        return userId;
      });
      return { id: Number(id), name: user.name, isAdmin: user.isAdmin, createdAt: user.createdAt, keyPrefix: user.keyPrefix, revokedAt: null };
    } catch (cause) {
      if (sqliteCode(cause) === 'SQLITE_CONSTRAINT_UNIQUE') throw new ConflictError(`a user named "${user.name}" already exists`, { cause });
      throw cause;
    }
  }

  async findByKeyHash(apiKeyHash: string): Promise<UserCredential | null> {
    const row = this.c
      .stmt<[string], UserRow & { key_id: number; key_hash: string }>(
        `SELECT ${USER_COLUMNS_U}, k.id AS key_id, k.key_hash FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.revoked_at IS NULL`,
      )
      .get(apiKeyHash);
    return row ? { user: toRecord(row), apiKeyHash: row.key_hash, keyId: row.key_id } : null;
  }

  async addKey(key: NewApiKey): Promise<ApiKeyRecord> {
    try {
      return await this.c.write(() => {
        const live = this.c.stmt<[number], number>('SELECT id FROM users WHERE id = ? AND revoked_at IS NULL').pluck().get(key.userId);
        if (live === undefined) throw new NotFoundError(`no user with id ${key.userId}`);
        const id = this.c.stmt(SQL_INSERT_KEY).run(key.userId, key.name, key.keyHash, key.keyPrefix, key.createdAt).lastInsertRowid;
        return keyFromRow(this.c.stmt<[number], KeyRow>(SQL_KEY_BY_ID).get(Number(id))!);
      });
    } catch (cause) {
      if (sqliteCode(cause) === 'SQLITE_CONSTRAINT_UNIQUE') throw new ConflictError(`the user already has a key named "${key.name}"`, { cause });
      throw cause;
    }
  }

  async keys(userId?: number): Promise<ApiKeyRecord[]> {
    if (userId !== undefined) return this.c.stmt<[number], KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys k WHERE k.user_id = ? ORDER BY k.id`).all(userId).map(keyFromRow);
    return this.c
      .stmt<[], KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id WHERE u.revoked_at IS NULL ORDER BY k.user_id, k.id`)
      .all()
      .map(keyFromRow);
  }

  async revokeKey(userId: number, keyId: number, at: string): Promise<boolean> {
    return this.c.write(
      () => this.c.stmt<[string, number, number]>('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL').run(at, keyId, userId).changes > 0,
    );
  }

  async rotateKey(userId: number, keyId: number, replacement: ReplacementKey): Promise<{ revoked: ApiKeyRecord; key: ApiKeyRecord } | null> {
    return this.c.write(() => {
      const old = this.c.stmt<[number, number], KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys k WHERE k.id = ? AND k.user_id = ? AND k.revoked_at IS NULL`).get(keyId, userId);
      if (!old) return null;
      this.c.stmt('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(replacement.at, keyId);
      const id = this.c.stmt(SQL_INSERT_KEY).run(userId, old.name, replacement.keyHash, replacement.keyPrefix, replacement.at).lastInsertRowid;
      const key = keyFromRow(this.c.stmt<[number], KeyRow>(SQL_KEY_BY_ID).get(Number(id))!);
      return { revoked: { ...keyFromRow(old), revokedAt: replacement.at }, key };
    });
  }

  async recordKeyUse(uses: ReadonlyArray<{ keyId: number; at: string }>): Promise<void> {
    if (uses.length === 0) return;
    await this.c.write(() => {
      const touch = this.c.stmt<[string, number, string]>('UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)');
      for (const u of uses) touch.run(u.at, u.keyId, u.at);
    });
  }

  async findByName(name: string): Promise<UserRecord | null> {
    const row = this.c.stmt<[string], UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE name = ?`).get(name);
    return row ? toRecord(row) : null;
  }

  async list(): Promise<UserRecord[]> {
    return this.c.stmt<[], UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE revoked_at IS NULL ORDER BY id`).all().map(toRecord);
  }

  async revoke(userId: number, at: string): Promise<boolean> {
    return this.c.write(() => this.c.stmt<[string, number]>('UPDATE users SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, userId).changes > 0);
  }

  async erase(userId: number): Promise<ErasureCounts> {
    const counts = await this.c.write(() => this.eraseInTransaction(userId));
    // The deleted pages were zeroed in place (secure_delete), but older copies of them still sit in
    // the WAL until a checkpoint moves the new pages into the file and truncates the log.
    this.c.checkpoint();
    return counts;
  }

  async userDataTables(): Promise<string[]> {
    return this.tablesWithUserId();
  }

  /** Tables (any migration, present or future) with a `user_id` column, sorted by name. */
  private tablesWithUserId(): string[] {
    const tables = this.c
      .stmt<[], string>("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql NOT LIKE 'CREATE VIRTUAL%'")
      .pluck()
      .all();
    const columns = this.c.stmt<[string], string>('SELECT name FROM pragma_table_info(?)').pluck();
    return tables.filter((t) => columns.all(t).includes('user_id')).sort();
  }

  /** Synchronous body of `erase` (runs inside the write transaction). */
  private eraseInTransaction(userId: number): ErasureCounts {
    const rank = (t: string) => ERASE_ORDER.indexOf(t);
    const tables = this.tablesWithUserId().sort((a, b) => rank(a) - rank(b));
    const counts: ErasureCounts = {};
    for (const t of tables) counts[t] = this.c.stmt<[number]>(`DELETE FROM ${ident(t)} WHERE user_id = ?`).run(userId).changes;
    counts.users = this.c.stmt<[number]>('DELETE FROM users WHERE id = ?').run(userId).changes;
    for (const t of tables) {
      const left = this.c.stmt<[number], number>(`SELECT count(*) FROM ${ident(t)} WHERE user_id = ?`).pluck().get(userId) ?? 0;
      if (left > 0) throw new InternalError(`erasure of user ${userId} left ${left} rows in ${t}`);
    }
    return counts;
  }
}
