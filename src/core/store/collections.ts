/**
 * Collections with access control (issue 14, item 4). A collection is a name in
 * `documents.collection`; this aggregate stores only the collections whose access someone set
 * (090_collection_acl.sql). Rule every reader obeys:
 *
 * - no row, or visibility `public`: every user reads it (all existing collections and those made by
 *   `mneme ingest --collection` stay public: nothing changes for current users);
 * - visibility `private`: admins and the users holding a grant read it;
 * - writing (uploads, deletes) needs an admin or a grant with `canWrite` (public collections too).
 *
 * Engine-neutral: record types and the Promise-returning interface; implementations in
 * sqlite/collections.ts and postgres/collections.ts.
 */

export type CollectionVisibility = 'public' | 'private';
export const COLLECTION_VISIBILITIES: readonly CollectionVisibility[] = ['public', 'private'];

export interface CollectionGrant {
  userId: number;
  /** The user's name (for listings). */
  userName: string;
  canWrite: boolean;
  /** ISO-8601 UTC. */
  grantedAt: string;
}

export interface CollectionRecord {
  name: string;
  visibility: CollectionVisibility;
  /** Who created the row (null: the CLI, or the creator was erased). */
  createdBy: number | null;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** Grants, by user name (byte order). */
  grants: CollectionGrant[];
}

export interface NewCollection {
  name: string;
  visibility: CollectionVisibility;
  createdBy: number | null;
  /** ISO-8601 UTC. */
  createdAt: string;
}

/**
 * What one (non-admin) user may do, as far as the stored rows say. Collections absent from both
 * lists follow the default: readable (public), not writable.
 */
export interface CollectionAccess {
  /** Private collections the user holds no grant on: never readable by them. Sorted. */
  hidden: string[];
  /** Collections the user holds a grant on (private or public), with whether it allows writing. */
  grants: Array<{ name: string; canWrite: boolean }>;
}

export interface CollectionStore {
  /**
   * Stores a collection's access row (an existing documents.collection name may be given: its
   * documents then follow the new row's visibility).
   * @throws ConflictError when a row with that name exists.
   */
  create(c: NewCollection): Promise<CollectionRecord>;
  /** The row of `name` with its grants, or null (no row: public). */
  get(name: string): Promise<CollectionRecord | null>;
  /** Every row with its grants, by name (byte order). */
  list(): Promise<CollectionRecord[]>;
  /** Changes a row's visibility. @returns false when there is no row `name`. */
  setVisibility(name: string, visibility: CollectionVisibility): Promise<boolean>;
  /**
   * Grants `userId` read (and with `canWrite`, write) access to `name`, replacing a previous grant.
   * `at`: ISO-8601 UTC. @returns false when there is no row `name` (nothing stored).
   */
  grant(name: string, userId: number, canWrite: boolean, at: string): Promise<boolean>;
  /** Removes `userId`'s grant on `name`. @returns false when there was none. */
  revoke(name: string, userId: number): Promise<boolean>;
  /**
   * The access of `userId` (one small query over the ACL rows, no documents: called on every
   * request, so a revoke takes effect on the next one, in every process).
   */
  accessOf(userId: number): Promise<CollectionAccess>;
}

/** Row shapes shared by both engines. */
export interface CollectionRow {
  name: string;
  visibility: CollectionVisibility;
  created_by: number | null;
  created_at: string;
}

export interface GrantRow {
  collection: string;
  user_id: number;
  user_name: string;
  can_write: number | boolean;
  granted_at: string;
}

/** Rows → records (pure; both engines), grants attached to their collection. */
export function collectionsFromRows(rows: readonly CollectionRow[], grants: readonly GrantRow[]): CollectionRecord[] {
  const byName = new Map<string, CollectionGrant[]>();
  for (const g of grants) {
    const list = byName.get(g.collection) ?? [];
    list.push({ userId: Number(g.user_id), userName: g.user_name, canWrite: g.can_write === true || g.can_write === 1, grantedAt: g.granted_at });
    byName.set(g.collection, list);
  }
  return rows.map((r) => ({
    name: r.name,
    visibility: r.visibility,
    createdBy: r.created_by === null ? null : Number(r.created_by),
    createdAt: r.created_at,
    grants: (byName.get(r.name) ?? []).sort((a, b) => (a.userName < b.userName ? -1 : a.userName > b.userName ? 1 : 0)),
  }));
}

/** Access rows → CollectionAccess (pure; both engines). `rows`: every row with this user's grant, if any. */
export function accessFromRows(rows: ReadonlyArray<{ name: string; visibility: CollectionVisibility; can_write: number | boolean | null }>): CollectionAccess {
  const hidden: string[] = [];
  const grants: CollectionAccess['grants'] = [];
  for (const r of rows) {
    if (r.can_write === null) {
      if (r.visibility === 'private') hidden.push(r.name);
    } else {
      grants.push({ name: r.name, canWrite: r.can_write === true || r.can_write === 1 });
    }
  }
  hidden.sort();
  return { hidden, grants };
}
