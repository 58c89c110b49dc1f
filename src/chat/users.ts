/**
 * Users and their named API keys. A key is 256 random bits (`mn_` + base64url), shown once at creation
 * (or rotation); only its sha256 is stored (a fast hash is enough for 256-bit random secrets: there
 * is nothing to brute-force). A user holds one or more named keys (`default` is made with the user),
 * each revocable on its own.
 * Deleting a user erases everything derived from them: conversations, messages, responses (the
 * prediction log), feedback and features (`UserStore.erase`, src/core/store/users.ts).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../core/errors.ts';
import type { Store } from '../core/store/index.ts';
import type { ApiKeyRecord, ErasureCounts, UserRecord } from '../core/store/users.ts';
import { DEFAULT_KEY_NAME } from '../core/store/users.ts';
import type { OnlineFeatureStore } from '../core/online-features.ts';

export type { ApiKeyRecord, ErasureCounts } from '../core/store/users.ts';
export { DEFAULT_KEY_NAME } from '../core/store/users.ts';

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

/** Key names: letters, digits, space and `_ - . @ :`, 1-64 characters (they are shown, never parsed). */
export const keyNameSchema = z
  .string()
  .regex(/^[\w .@:-]{1,64}$/, 'letters, digits, space, "_", "-", ".", "@", ":" (1-64 characters)')
  .refine((s) => s.trim() === s, 'no leading or trailing spaces');

/** A user with every key of theirs (revoked ones too), for the admin listing. */
export interface UserWithKeys extends User {
  keys: ApiKeyRecord[];
}

/** A key as made: the record and the key in clear (returned once, never stored). */
export interface IssuedKey {
  key: ApiKeyRecord;
  apiKey: string;
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
 * A key name, validated.
 * @throws ValidationError for a bad name.
 */
export function parseKeyName(name: unknown): string {
  const parsed = keyNameSchema.safeParse(name);
  if (!parsed.success) throw new ValidationError(`key name: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/**
 * Creates a user with a first key named `keyName` (default `default`) and returns the key (the only
 * time it exists in clear).
 * @throws ValidationError for a bad user or key name; ConflictError when the name is taken.
 */
export async function createUser(
  store: Pick<Store, 'users'>,
  opts: { name: string; admin?: boolean; keyName?: string | undefined },
): Promise<{ user: User; apiKey: string }> {
  const name = userNameSchema.safeParse(opts.name);
  if (!name.success) throw new ValidationError(`user name: ${name.error.issues[0]?.message ?? 'invalid'}`);
  const keyName = parseKeyName(opts.keyName ?? DEFAULT_KEY_NAME);
  const apiKey = generateApiKey();
  const record = await store.users.create({
    name: name.data,
    apiKeyHash: hashApiKey(apiKey),
    keyPrefix: apiKey.slice(0, KEY_PREFIX_CHARS),
    isAdmin: Boolean(opts.admin),
    createdAt: new Date().toISOString(),
    keyName,
  });
  return { user: toUser(record), apiKey };
}

/**
 * The live user owning the live key `apiKey` with the key's id, or null. Constant-time compare of
 * the stored hash.
 */
export async function authenticateApiKey(store: Pick<Store, 'users'>, apiKey: string): Promise<{ user: User; keyId: number } | null> {
  const hash = hashApiKey(apiKey);
  const found = await store.users.findByKeyHash(hash);
  if (!found) return null;
  // The lookup is by index; the explicit compare guards against any collation surprise.
  if (!timingSafeEqual(Buffer.from(found.apiKeyHash, 'hex'), Buffer.from(hash, 'hex'))) return null;
  return { user: toUser(found.user), keyId: found.keyId };
}

/** The live (not revoked) user owning the live key `apiKey`, or null. */
export async function findUserByApiKey(store: Pick<Store, 'users'>, apiKey: string): Promise<User | null> {
  return (await authenticateApiKey(store, apiKey))?.user ?? null;
}

/**
 * Adds a named key to a live user and returns it in clear (once).
 * @throws ValidationError for a bad name; NotFoundError for no such live user; ConflictError when the
 * user has a live key of that name.
 */
export async function issueApiKey(store: Pick<Store, 'users'>, userId: number, keyName: unknown): Promise<IssuedKey> {
  const name = parseKeyName(keyName);
  const apiKey = generateApiKey();
  const key = await store.users.addKey({ userId, name, keyHash: hashApiKey(apiKey), keyPrefix: apiKey.slice(0, KEY_PREFIX_CHARS), createdAt: new Date().toISOString() });
  return { key, apiKey };
}

/**
 * Rotates a live key: the old one is revoked and a new one with the same name returned in clear (once).
 * @throws NotFoundError when the user has no live key `keyId`.
 */
export async function rotateApiKey(store: Pick<Store, 'users'>, userId: number, keyId: number): Promise<IssuedKey & { revoked: ApiKeyRecord }> {
  const apiKey = generateApiKey();
  const r = await store.users.rotateKey(userId, keyId, { keyHash: hashApiKey(apiKey), keyPrefix: apiKey.slice(0, KEY_PREFIX_CHARS), at: new Date().toISOString() });
  if (!r) throw new NotFoundError(`no live key ${keyId}`);
  return { key: r.key, apiKey, revoked: r.revoked };
}

/**
 * Revokes a live key of the user.
 * @throws NotFoundError when the user has no live key `keyId`.
 */
export async function revokeApiKey(store: Pick<Store, 'users'>, userId: number, keyId: number): Promise<void> {
  if (!(await store.users.revokeKey(userId, keyId, new Date().toISOString()))) throw new NotFoundError(`no live key ${keyId}`);
}

/** Live users, oldest first, each with all their keys (revoked ones too). */
export async function listUsersWithKeys(store: Pick<Store, 'users'>): Promise<UserWithKeys[]> {
  const [users, keys] = await Promise.all([store.users.list(), store.users.keys()]);
  const byUser = new Map<number, ApiKeyRecord[]>();
  for (const k of keys) {
    const list = byUser.get(k.userId);
    if (list) list.push(k);
    else byUser.set(k.userId, [k]);
  }
  return users.map((u) => ({ ...toUser(u), keys: byUser.get(u.id) ?? [] }));
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
