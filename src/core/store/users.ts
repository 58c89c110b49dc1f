/**
 * Users and their API keys; erasure of everything a user left.
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
  /** First characters of the key, to recognise it in listings. */
  keyPrefix: string;
  /** ISO-8601 UTC; null for a live user. */
  revokedAt: string | null;
}

/** A live user found by key hash, with the stored hash (for a constant-time re-check). */
export interface UserCredential {
  user: UserRecord;
  /** sha256 hex of the key, as stored. */
  apiKeyHash: string;
}

export interface NewUser {
  name: string;
  /** sha256 hex of the API key. */
  apiKeyHash: string;
  keyPrefix: string;
  isAdmin: boolean;
  /** ISO-8601 UTC. */
  createdAt: string;
}

/** Rows removed per table by an erasure (`users` included: 1 when the user row went). */
export type ErasureCounts = Record<string, number>;

export interface UserStore {
  /**
   * Inserts a user.
   * @throws ConflictError when the name (or, astronomically unlikely, the key hash) is taken.
   */
  create(user: NewUser): Promise<UserRecord>;
  /** The live (not revoked) user whose key hashes to `apiKeyHash`, or null. */
  findByKeyHash(apiKeyHash: string): Promise<UserCredential | null>;
  /** The user called `name` (revoked or not), or null. */
  findByName(name: string): Promise<UserRecord | null>;
  /** Live users, oldest first. */
  list(): Promise<UserRecord[]>;
  /**
   * Revokes the user's key (the user and their data stay). `at`: ISO-8601 UTC.
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
