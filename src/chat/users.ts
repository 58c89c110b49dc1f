/**
 * Users and API keys. A key is 256 random bits (`mn_` + base64url), shown once at creation; only its
 * sha256 is stored (a fast hash is enough for 256-bit random secrets: there is nothing to brute-force).
 * Deleting a user erases everything derived from them: conversations, messages, responses (the
 * prediction log), feedback and features.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../core/db.ts';
import { nowIso } from '../core/db.ts';
import { ConflictError, InternalError, NotFoundError, ValidationError } from '../core/errors.ts';

/** Random bytes per API key (256 bits). */
export const API_KEY_BYTES = 32;
/** Every key starts with this, so a leaked key is recognisable in logs and secret scanners. */
export const API_KEY_PREFIX = 'mn_';
/** Characters of the key kept in clear (`key_prefix`) to recognise it in listings. */
export const KEY_PREFIX_CHARS = 10;

export const userNameSchema = z
  .string()
  .regex(/^[\w.@-]{1,64}$/, 'letters, digits, "_", "-", ".", "@" (1-64 characters)');

export interface User {
  id: number;
  name: string;
  isAdmin: boolean;
  createdAt: string;
}

export interface UserListing extends User {
  keyPrefix: string;
}

interface UserRow {
  id: number;
  name: string;
  is_admin: number;
  created_at: string;
  key_prefix: string;
  api_key_hash: string;
}

/** sha256 hex of a key, as stored in `users.api_key_hash`. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new random API key. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(API_KEY_BYTES).toString('base64url');
}

/**
 * Creates a user and returns its key (the only time it exists in clear).
 * @throws ValidationError for a bad name; ConflictError when the name is taken.
 */
export function createUser(db: Db, opts: { name: string; admin?: boolean }): { user: User; apiKey: string } {
  const name = userNameSchema.safeParse(opts.name);
  if (!name.success) throw new ValidationError(`user name: ${name.error.issues[0]?.message ?? 'invalid'}`);
  const apiKey = generateApiKey();
  const createdAt = nowIso();
  try {
    const res = db
      .prepare('INSERT INTO users (name, api_key_hash, key_prefix, is_admin, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(name.data, hashApiKey(apiKey), apiKey.slice(0, KEY_PREFIX_CHARS), opts.admin ? 1 : 0, createdAt);
    return { user: { id: Number(res.lastInsertRowid), name: name.data, isAdmin: Boolean(opts.admin), createdAt }, apiKey };
  } catch (cause) {
    if ((cause as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
      throw new ConflictError(`a user named "${name.data}" already exists`, { cause });
    }
    throw cause;
  }
}

/** The live (not revoked) user owning `apiKey`, or null. Constant-time compare of the stored hash. */
export function findUserByApiKey(db: Db, apiKey: string): User | null {
  const hash = hashApiKey(apiKey);
  const row = db.prepare('SELECT * FROM users WHERE api_key_hash = ? AND revoked_at IS NULL').get(hash) as UserRow | undefined;
  if (!row) return null;
  // The lookup is by index; the explicit compare guards against any collation surprise.
  if (!timingSafeEqual(Buffer.from(row.api_key_hash, 'hex'), Buffer.from(hash, 'hex'))) return null;
  return toUser(row);
}

export function findUserByName(db: Db, name: string): User | null {
  const row = db.prepare('SELECT * FROM users WHERE name = ?').get(name) as UserRow | undefined;
  return row ? toUser(row) : null;
}

export function listUsers(db: Db): UserListing[] {
  const rows = db.prepare('SELECT * FROM users WHERE revoked_at IS NULL ORDER BY id').all() as UserRow[];
  return rows.map((r) => ({ ...toUser(r), keyPrefix: r.key_prefix }));
}

function toUser(r: UserRow): User {
  return { id: r.id, name: r.name, isAdmin: r.is_admin === 1, createdAt: r.created_at };
}

/** Rows removed per table by an erasure. */
export type ErasureCounts = Record<string, number>;

/** Tables (any migration, present or future) with a `user_id` column: all of them hold user data. */
export function tablesWithUserId(db: Db): string[] {
  const tables = db
    .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql NOT LIKE 'CREATE VIRTUAL%'")
    .pluck()
    .all() as string[];
  return tables.filter((t) => (db.prepare(`SELECT name FROM pragma_table_info(?)`).pluck().all(t) as string[]).includes('user_id')).sort();
}

/**
 * Erases a user and everything derived from them, in one transaction: rows in every table with a
 * `user_id` column (conversations, messages, responses, feedback, feature history/online, and any
 * table a later migration adds), then the user row itself (so the key stops working). Other users'
 * rows are untouched (messages of other users keep existing; `messages.response_id` references are
 * nulled by the schema if they pointed at an erased response).
 * `extraErase` runs inside the transaction (e.g. a feature store's own clean-up).
 * @throws InternalError if any row of the user survives (checked before commit).
 */
export function eraseUser(db: Db, userId: number, extraErase?: (userId: number) => void): ErasureCounts {
  const tx = db.transaction(() => {
    extraErase?.(userId);
    const counts: ErasureCounts = {};
    // Children before parents so the counts are per table (the FK cascades would otherwise hide them).
    const order = ['feedback', 'messages', 'responses', 'conversations'];
    const tables = tablesWithUserId(db).sort((a, b) => rank(a, order) - rank(b, order));
    for (const t of tables) counts[t] = db.prepare(`DELETE FROM "${t}" WHERE user_id = ?`).run(userId).changes;
    counts.users = db.prepare('DELETE FROM users WHERE id = ?').run(userId).changes;
    for (const t of tables) {
      const left = db.prepare(`SELECT count(*) FROM "${t}" WHERE user_id = ?`).pluck().get(userId) as number;
      if (left > 0) throw new InternalError(`erasure of user ${userId} left ${left} rows in ${t}`);
    }
    return counts;
  });
  return tx.immediate();
}

function rank(table: string, order: string[]): number {
  const i = order.indexOf(table);
  return i === -1 ? -1 : i;
}

/**
 * Erases the user called `name`.
 * @throws NotFoundError when there is no such user.
 */
export function deleteUserByName(db: Db, name: string, extraErase?: (userId: number) => void): { user: User; erased: ErasureCounts } {
  const user = findUserByName(db, name);
  if (!user) throw new NotFoundError(`no user named "${name}"`);
  return { user, erased: eraseUser(db, user.id, extraErase) };
}
