/**
 * Which existing export manifests hold a user's data, for `mneme users delete` (an erasure must be
 * propagated to training files exported before it). Every export records its manifest path and user
 * hashes in the store before publishing; this checks the recorded manifests that are still on disk
 * and still list the user (a later export to the same path may have replaced one without them).
 */
import fs from 'node:fs';
import type { ExportUserRef } from '../core/store/exports.ts';
import type { Store } from '../core/store/index.ts';

export interface UserExports {
  /** The user's pseudonymous hash: the `user` / `preferred_user` value of their exported lines. */
  userHash: string;
  /** Absolute manifest paths, most recent export first. */
  manifests: string[];
}

/**
 * The manifest's `users` list, or null when the file is gone; a file that cannot be read or parsed
 * counts as listing everyone (better a false alarm than a missed erasure).
 */
function manifestUsers(file: string): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return ['*'];
  }
  try {
    const users = (JSON.parse(text) as { users?: unknown }).users;
    return Array.isArray(users) ? users.filter((u): u is string => typeof u === 'string') : ['*'];
  } catch {
    return ['*'];
  }
}

/** The user's hash and the existing export manifests that list it (also after the user was erased). */
export async function exportsContainingUser(store: Store, user: ExportUserRef): Promise<UserExports> {
  const userHash = await store.exports.userHash(user);
  const manifests: string[] = [];
  for (const file of await store.exports.manifestsContainingUser(user)) {
    const users = manifestUsers(file);
    if (users !== null && (users.includes(userHash) || users.includes('*'))) manifests.push(file);
  }
  return { userHash, manifests };
}
