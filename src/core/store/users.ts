/**
 * Users and their named API keys (095_api_keys.sql: several per user, each with a name, prefix,
 * creation, last use and revocation); erasure of everything a user left.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/users.ts.
 */

/** A user as stored (never the key itself: only its hash exists). */
export interface UserRecord {
  id: number;
  name: string;
  isAdmin: boolean;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** First characters of the user's FIRST key (see `keys()` for all of them). */
  keyPrefix: string;
  /** ISO-8601 UTC; null for a live user. */
  revokedAt: string | null;
}

/** A live user found by key hash, with the stored hash (for a constant-time re-check). */
export interface UserCredential {
  user: UserRecord;
  /** sha256 hex of the key, as stored. */
  apiKeyHash: string;
  /** The api_keys row the key is (for last-use tracking and "revoke this key"). */
  keyId: number;
}

/** One named API key (never the key itself: only its hash is stored). */
export interface ApiKeyRecord {
  /** Never reused, even after the key is revoked or its user erased. */
  id: number;
  userId: number;
  /** e.g. `default` (the key made with the user), `laptop`; unique among the user's live keys. */
  name: string;
  /** First characters of the key, to recognise it. */
  keyPrefix: string;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** ISO-8601 UTC, accurate to about a minute (see recordKeyUse); null: never used. */
  lastUsedAt: string | null;
  /** ISO-8601 UTC; null while the key works. */
  revokedAt: string | null;
}

/** A key to add to a user. */
export interface NewApiKey {
  userId: number;
  name: string;
  /** sha256 hex of the key. */
  keyHash: string;
  keyPrefix: string;
  /** ISO-8601 UTC. */
  createdAt: string;
}

/** The key replacing a rotated one (it takes the old key's name). */
export interface ReplacementKey {
  keyHash: string;
  keyPrefix: string;
  /** ISO-8601 UTC: the new key's created_at and the old one's revoked_at. */
  at: string;
}

export interface NewUser {
  name: string;
  /** sha256 hex of the API key. */
  apiKeyHash: string;
  keyPrefix: string;
  isAdmin: boolean;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** Name of the first key, stored in api_keys with the user. Default `default`. */
  keyName?: string | undefined;
}

/** Name of a user's first key when none is given (and of every key moved in by 095_api_keys.sql). */
export const DEFAULT_KEY_NAME = 'default';

/** Rows removed per table by an erasure (`users` included: 1 when the user row went). */
export type ErasureCounts = Record<string, number>;

export interface UserStore {
  /**
   * Inserts a user and their first key (named `keyName`), in one transaction.
   * @throws ConflictError when the name (or, astronomically unlikely, the key hash) is taken.
   */
  create(user: NewUser): Promise<UserRecord>;
  /** The live user owning the live (not revoked) key that hashes to `apiKeyHash`, or null. */
  findByKeyHash(apiKeyHash: string): Promise<UserCredential | null>;
  /**
   * Adds a named key to a live user.
   * @throws NotFoundError when there is no live user `userId`; ConflictError when the user already
   * has a live key of that name (or, astronomically unlikely, the hash is taken).
   */
  addKey(key: NewApiKey): Promise<ApiKeyRecord>;
  /** Keys (revoked ones too) of `userId`, or of every live user when omitted; by user id, then key id. */
  keys(userId?: number): Promise<ApiKeyRecord[]>;
  /**
   * Revokes one live key of the user. `at`: ISO-8601 UTC.
   * @returns false when the user has no live key with that id.
   */
  revokeKey(userId: number, keyId: number, at: string): Promise<boolean>;
  /**
   * Replaces a live key of the user: in one transaction the old key is revoked (at `replacement.at`)
   * and a new key with the same name is stored.
   * @returns both records, or null when the user has no live key with that id.
   */
  rotateKey(userId: number, keyId: number, replacement: ReplacementKey): Promise<{ revoked: ApiKeyRecord; key: ApiKeyRecord } | null>;
  /**
   * Records when keys were last used, in one write: each key's last_used_at becomes the later of the
   * stored value and `at` (unknown ids are ignored). Callers batch and throttle (auth.ts).
   */
  recordKeyUse(uses: ReadonlyArray<{ keyId: number; at: string }>): Promise<void>;
  /** The user called `name` (revoked or not), or null. */
  findByName(name: string): Promise<UserRecord | null>;
  /** Live users, oldest first. */
  list(): Promise<UserRecord[]>;
  /**
   * Revokes the user (every key of theirs stops working; the user and their data stay). `at`: ISO-8601 UTC.
   * @returns false when there is no live user with that id.
   */
  revoke(userId: number, at: string): Promise<boolean>;
  /**
   * Erases the user and every row holding their `user_id`, in every table that has one (those of
   * later migrations included), in one write transaction, then checkpoints the log so no copy of the
   * erased rows remains in it (deleted content is zeroed in the file: secure_delete).
   * Unknown ids erase nothing (all counts 0).
   * @throws InternalError if a row of the user survived (checked before commit: nothing is erased then).
   */
  erase(userId: number): Promise<ErasureCounts>;
  /** Names of the tables holding a `user_id` column (what `erase` covers), sorted. */
  userDataTables(): Promise<string[]>;
}
