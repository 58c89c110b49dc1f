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
 * A grant is held by a user (`collection_grants`) or by a group (`collection_group_grants`,
 * 100_groups.sql): a member of a group holds the group's grants; when both exist, write access wins.
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

/** A grant held by a group: every member holds it. */
export interface CollectionGroupGrant {
  group: string;
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
  /** Group grants, by group name (byte order). */
  groupGrants: CollectionGroupGrant[];
}

/** A group of users (100_groups.sql). */
export interface GroupRecord {
  name: string;
  /** ISO-8601 UTC. */
  createdAt: string;
  /** Members, by user name (byte order). */
  members: Array<{ userId: number; userName: string; addedAt: string }>;
  /** Collections the group holds a grant on, by name (byte order). */
  grants: Array<{ collection: string; canWrite: boolean }>;
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
  /**
   * Collections the user holds a grant on, directly or through a group (private or public), one
   * entry per collection, with whether any of those grants allows writing.
   */
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
   * Grants group `group` read (and with `canWrite`, write) access to `name`, replacing a previous
   * group grant. @returns false when there is no row `name` or no group `group` (nothing stored).
   */
  grantGroup(name: string, group: string, canWrite: boolean, at: string): Promise<boolean>;
  /** Removes group `group`'s grant on `name`. @returns false when there was none. */
  revokeGroup(name: string, group: string): Promise<boolean>;
  /** Creates group `name`. @throws ConflictError when it exists. */
  createGroup(name: string, at: string): Promise<GroupRecord>;
  /** Deletes group `name` with its memberships and grants. @returns false when there is none. */
  deleteGroup(name: string): Promise<boolean>;
  /** Every group with its members and grants, by name (byte order). */
  listGroups(): Promise<GroupRecord[]>;
  /** Adds `userId` to `group` (idempotent). @returns false when there is no group `group`. */
  addMember(group: string, userId: number, at: string): Promise<boolean>;
  /** Removes `userId` from `group`. @returns false when they were not a member. */
  removeMember(group: string, userId: number): Promise<boolean>;
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

export interface GroupGrantRow {
  collection: string;
  group_name: string;
  can_write: number | boolean;
  granted_at: string;
}

export interface GroupRow {
  name: string;
  created_at: string;
}

export interface MemberRow {
  group_name: string;
  user_id: number;
  user_name: string;
  added_at: string;
}

export interface GrantRow {
  collection: string;
  user_id: number;
  user_name: string;
  can_write: number | boolean;
  granted_at: string;
}

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const truthy = (v: number | boolean) => v === true || v === 1;

/** Rows → records (pure; both engines), user and group grants attached to their collection. */
export function collectionsFromRows(rows: readonly CollectionRow[], grants: readonly GrantRow[], groupGrants: readonly GroupGrantRow[]): CollectionRecord[] {
  const groupsOf = new Map<string, CollectionGroupGrant[]>();
  for (const g of groupGrants) {
    const list = groupsOf.get(g.collection) ?? [];
    list.push({ group: g.group_name, canWrite: truthy(g.can_write), grantedAt: g.granted_at });
    groupsOf.set(g.collection, list);
  }
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
    grants: (byName.get(r.name) ?? []).sort((a, b) => byteOrder(a.userName, b.userName)),
    groupGrants: (groupsOf.get(r.name) ?? []).sort((a, b) => byteOrder(a.group, b.group)),
  }));
}

/** Rows → group records (pure; both engines). */
export function groupsFromRows(rows: readonly GroupRow[], members: readonly MemberRow[], grants: readonly GroupGrantRow[]): GroupRecord[] {
  return rows.map((r) => ({
    name: r.name,
    createdAt: r.created_at,
    members: members
      .filter((m) => m.group_name === r.name)
      .map((m) => ({ userId: Number(m.user_id), userName: m.user_name, addedAt: m.added_at }))
      .sort((a, b) => byteOrder(a.userName, b.userName)),
    grants: grants
      .filter((g) => g.group_name === r.name)
      .map((g) => ({ collection: g.collection, canWrite: truthy(g.can_write) }))
      .sort((a, b) => byteOrder(a.collection, b.collection)),
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
  grants.sort((a, b) => byteOrder(a.name, b.name));
  return { hidden, grants };
}
