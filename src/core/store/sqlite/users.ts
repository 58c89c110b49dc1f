/** SQLite implementation of {@link UserStore} (every statement of this aggregate lives here). */
import { ConflictError, InternalError } from '../../errors.ts';
import type { ErasureCounts, NewUser, UserCredential, UserRecord, UserStore } from '../users.ts';
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
      const id = await this.c.write(
        () =>
          this.c
            .stmt<[string, string, string, number, string]>('INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at) VALUES (?, ?, ?, ?, ?)')
            .run(user.name, user.apiKeyHash, user.keyPrefix, user.isAdmin ? 1 : 0, user.createdAt).lastInsertRowid,
      );
      return { id: Number(id), name: user.name, isAdmin: user.isAdmin, createdAt: user.createdAt, keyPrefix: user.keyPrefix, revokedAt: null };
    } catch (cause) {
      if (sqliteCode(cause) === 'SQLITE_CONSTRAINT_UNIQUE') throw new ConflictError(`a user named "${user.name}" already exists`, { cause });
      throw cause;
    }
  }

  async findByKeyHash(apiKeyHash: string): Promise<UserCredential | null> {
    const row = this.c.stmt<[string], UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE api_key_hash = ? AND revoked_at IS NULL`).get(apiKeyHash);
    return row ? { user: toRecord(row), apiKeyHash: row.api_key_hash } : null;
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
