/**
 * Users and API keys. A key is 256 random bits (`mn_` + base64url), shown once at creation; only its
 * sha256 is stored (a fast hash is enough for 256-bit random secrets: there is nothing to brute-force).
 * Deleting a user erases everything derived from them: conversations, messages, responses (the
 * prediction log), feedback and features (`UserStore.erase`, src/core/store/users.ts).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../core/errors.ts';
import type { Store } from '../core/store/index.ts';
import type { ErasureCounts, UserRecord } from '../core/store/users.ts';
import type { OnlineFeatureStore } from '../core/online-features.ts';

export type { ErasureCounts } from '../core/store/users.ts';

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

/** sha256 hex of a key, as stored in `users.api_key_hash`. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new random API key. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(API_KEY_BYTES).toString('base64url');
}

function toUser(r: UserRecord): User {
  return { id: r.id, name: r.name, isAdmin: r.isAdmin, createdAt: r.createdAt };
}

/**
 * Creates a user and returns its key (the only time it exists in clear).
 * @throws ValidationError for a bad name; ConflictError when the name is taken.
 */
export async function createUser(store: Pick<Store, 'users'>, opts: { name: string; admin?: boolean }): Promise<{ user: User; apiKey: string }> {
  const name = userNameSchema.safeParse(opts.name);
  if (!name.success) throw new ValidationError(`user name: ${name.error.issues[0]?.message ?? 'invalid'}`);
  const apiKey = generateApiKey();
  const record = await store.users.create({
    name: name.data,
    apiKeyHash: hashApiKey(apiKey),
    keyPrefix: apiKey.slice(0, KEY_PREFIX_CHARS),
    isAdmin: Boolean(opts.admin),
    createdAt: new Date().toISOString(),
  });
  return { user: toUser(record), apiKey };
}

/** The live (not revoked) user owning `apiKey`, or null. Constant-time compare of the stored hash. */
export async function findUserByApiKey(store: Pick<Store, 'users'>, apiKey: string): Promise<User | null> {
  const hash = hashApiKey(apiKey);
  const found = await store.users.findByKeyHash(hash);
  if (!found) return null;
  // The lookup is by index; the explicit compare guards against any collation surprise.
  if (!timingSafeEqual(Buffer.from(found.apiKeyHash, 'hex'), Buffer.from(hash, 'hex'))) return null;
  return toUser(found.user);
}

export async function findUserByName(store: Pick<Store, 'users'>, name: string): Promise<User | null> {
  const r = await store.users.findByName(name);
  return r ? toUser(r) : null;
}

export async function listUsers(store: Pick<Store, 'users'>): Promise<UserListing[]> {
  return (await store.users.list()).map((r) => ({ ...toUser(r), keyPrefix: r.keyPrefix }));
}

/**
 * Erases a user and everything derived from them (every table with a `user_id`, then the user row,
 * so the key stops working), leaving no copy in the database file or its WAL. Other users' rows are
 * untouched. See UserStore.erase. With `online` (the Redis online feature store), the user's entry
 * there goes first (with a tombstone refusing writes racing with the erasure), then the SQL rows.
 * @throws InternalError if any row of the user survives (nothing is erased then); RedisUnavailableError
 * when the online store cannot erase (nothing is erased then either: retry).
 */
export async function eraseUser(store: Pick<Store, 'users'>, userId: number, online?: Pick<OnlineFeatureStore, 'erase'>): Promise<ErasureCounts> {
  await online?.erase(userId);
  return store.users.erase(userId);
}

/**
 * Erases the user called `name`.
 * @throws NotFoundError when there is no such user.
 */
export async function deleteUserByName(store: Pick<Store, 'users'>, name: string, online?: Pick<OnlineFeatureStore, 'erase'>): Promise<{ user: User; erased: ErasureCounts }> {
  const user = await findUserByName(store, name);
  if (!user) throw new NotFoundError(`no user named "${name}"`);
  return { user, erased: await eraseUser(store, user.id, online) };
}
