/**
 * Collection access control (issue 14, item 4): what one user may read and write.
 *
 * Rule (see src/core/store/collections.ts): a collection without an access row, or a `public` one,
 * is readable by every user; a `private` one by admins and granted users. Writing (uploads,
 * deletes) needs an admin or a grant with can_write. A grant is held by a user or by a group (every
 * member holds it; `mneme groups`). Enforcement is by exclusion: the scope lists
 * the collections a user may NOT read (`hidden`), and every search, listing and count filters them
 * out inside the engine (CorpusStore `excludeCollections`), before ranking and limits.
 *
 * The scope is read from the store on every request (one query over the small ACL tables, no
 * documents): a grant or revoke, by this process or another (`mneme collections revoke` while a
 * server runs), takes effect on the next request. The expensive part, the chunk ids of a hidden
 * collection for the HNSW filter, is cached by the retriever and patched from the change feed.
 */
import { nowIso } from '../core/clock.ts';
import { CollectionNotFoundError, ConflictError, NotFoundError, ValidationError } from '../core/errors.ts';
import type { CollectionVisibility } from '../core/store/collections.ts';
import type { CollectionSummary } from '../core/store/corpus.ts';
import type { Store } from '../core/store/index.ts';

/** The feature listing collection names (features/definitions.ts `top_collections`). */
export const COLLECTION_FEATURE = 'top_collections';

export interface CollectionScope {
  /** Admins read and write everything. */
  admin: boolean;
  /** Collections this user may not read (private, no grant); sorted; [] for admins. */
  hidden: readonly string[];
  /** Collections this user holds a write grant on (admins: empty, they write everywhere). */
  writable: ReadonlySet<string>;
}

/** The user an access decision is about. */
export interface AccessUser {
  id: number;
  isAdmin: boolean;
}

/** The full access of an admin (pure). */
export const ADMIN_SCOPE: CollectionScope = { admin: true, hidden: [], writable: new Set() };

/** `user`'s scope, read from the store now. */
export async function collectionScope(store: Pick<Store, 'collections'>, user: AccessUser): Promise<CollectionScope> {
  if (user.isAdmin) return ADMIN_SCOPE;
  const access = await store.collections.accessOf(user.id);
  return { admin: false, hidden: access.hidden, writable: new Set(access.grants.filter((g) => g.canWrite).map((g) => g.name)) };
}

/** Whether the scope reads `collection` (pure). */
export function canRead(scope: CollectionScope, collection: string): boolean {
  return scope.admin || !scope.hidden.includes(collection);
}

/** Whether the scope writes `collection` (pure). */
export function canWrite(scope: CollectionScope, collection: string): boolean {
  return scope.admin || scope.writable.has(collection);
}

/** `excludeCollections` for the store and the retriever: undefined when nothing is hidden (pure). */
export function excludedBy(scope: CollectionScope): readonly string[] | undefined {
  return scope.hidden.length === 0 ? undefined : scope.hidden;
}

/** The collections of `all` the scope reads (pure). */
export function readableSummaries<T extends { name: string }>(scope: CollectionScope, all: readonly T[]): T[] {
  return all.filter((c) => canRead(scope, c.name));
}

/**
 * Checks a requested collection: it must hold live documents AND be readable; an unreadable one
 * answers exactly like an unknown one (404 `collection_not_found` listing only readable
 * collections), so its existence is never revealed.
 * @throws CollectionNotFoundError
 */
export async function assertReadableCollection(store: Pick<Store, 'corpus'>, scope: CollectionScope, collection: string | null | undefined): Promise<void> {
  if (collection === undefined || collection === null) return;
  const visible: CollectionSummary[] = readableSummaries(scope, await store.corpus.collections());
  if (!visible.some((c) => c.name === collection)) throw new CollectionNotFoundError(collection, visible.map((c) => ({ name: c.name, documents: c.documents })));
}

/**
 * Feature values with hidden collections' names removed from `top_collections` (pure): a user's
 * features may name a collection they could read once (a revoke came since).
 */
export function withoutHiddenCollections<T extends Record<string, unknown>>(values: T, hidden: readonly string[] | undefined): T {
  const list = values[COLLECTION_FEATURE];
  if (!hidden || hidden.length === 0 || !Array.isArray(list)) return values;
  return { ...values, [COLLECTION_FEATURE]: list.filter((c) => typeof c !== 'string' || !hidden.includes(c)) };
}

// ---------------------------------------------------------------------------------------------
// Administration (`mneme collections`, /v1/admin/collections): one code path for both.

/** A collection as admins see it: its access row (or the public default) and its live counts. */
export interface CollectionAdminView {
  name: string;
  visibility: CollectionVisibility;
  /** False for a collection without an access row (public by default). */
  configured: boolean;
  documents: number;
  chunks: number;
  createdAt: string | null;
  grants: Array<{ user: string; canWrite: boolean; grantedAt: string }>;
  groupGrants: Array<{ group: string; canWrite: boolean; grantedAt: string }>;
}

/** Every collection: those with live documents and those with an access row, by name (byte order). */
export async function listCollectionsForAdmin(store: Pick<Store, 'corpus' | 'collections'>): Promise<CollectionAdminView[]> {
  const counts = new Map((await store.corpus.collections()).map((c) => [c.name, c]));
  const rows = new Map((await store.collections.list()).map((r) => [r.name, r]));
  const names = [...new Set([...counts.keys(), ...rows.keys()])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names.map((name) => {
    const row = rows.get(name);
    const c = counts.get(name);
    return {
      name,
      visibility: row?.visibility ?? 'public',
      configured: row !== undefined,
      documents: c?.documents ?? 0,
      chunks: c?.chunks ?? 0,
      createdAt: row?.createdAt ?? null,
      grants: (row?.grants ?? []).map((g) => ({ user: g.userName, canWrite: g.canWrite, grantedAt: g.grantedAt })),
      groupGrants: (row?.groupGrants ?? []).map((g) => ({ group: g.group, canWrite: g.canWrite, grantedAt: g.grantedAt })),
    };
  });
}

/** The JSON shape of a CollectionAdminView (CLI --json and HTTP; pure). */
export function collectionAdminJson(v: CollectionAdminView): Record<string, unknown> {
  return {
    name: v.name,
    visibility: v.visibility,
    configured: v.configured,
    documents: v.documents,
    chunks: v.chunks,
    created_at: v.createdAt,
    grants: v.grants.map((g) => ({ user: g.user, write: g.canWrite, granted_at: g.grantedAt })),
    group_grants: v.groupGrants.map((g) => ({ group: g.group, write: g.canWrite, granted_at: g.grantedAt })),
  };
}

/**
 * Creates `name`'s access row (private unless `visibility` says public). An existing collection
 * (with documents) may be given: its documents follow the new setting. A collection that already
 * has a row gets its visibility changed instead (idempotent).
 * @throws ValidationError for a malformed name
 */
export async function setCollectionAccess(
  store: Pick<Store, 'collections'>,
  name: string,
  visibility: CollectionVisibility,
  createdBy: number | null,
): Promise<{ created: boolean }> {
  checkCollectionName(name);
  try {
    await store.collections.create({ name, visibility, createdBy, createdAt: nowIso() });
    return { created: true };
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
    await store.collections.setVisibility(name, visibility);
    return { created: false };
  }
}

/** Who a grant goes to: one user, or one group (every member). */
export type Grantee = { user: string } | { group: string };

/** A collection with documents but no access row gets a public row first. @throws NotFoundError */
async function ensureAccessRow(store: Pick<Store, 'corpus' | 'collections'>, name: string): Promise<void> {
  if (await store.collections.get(name)) return;
  if (!(await store.corpus.collections()).some((c) => c.name === name)) throw new NotFoundError(`no collection "${name}" (create it first: mneme collections create ${name})`);
  await setCollectionAccess(store, name, 'public', null);
}

/**
 * Grants a user or a group read (and with `write`, write) access to `name`. A collection with
 * documents but no access row gets a public row first (it stays readable by everyone: the grant
 * then only adds write access).
 * @throws NotFoundError when there is no such user or group, or no such collection (no documents, no row)
 */
export async function grantCollection(store: Pick<Store, 'corpus' | 'collections' | 'users'>, name: string, to: Grantee, write: boolean): Promise<void> {
  if ('group' in to) {
    if (!(await store.collections.listGroups()).some((g) => g.name === to.group)) throw new NotFoundError(`no group named "${to.group}" (create it first: mneme groups create ${to.group})`);
    await ensureAccessRow(store, name);
    if (!(await store.collections.grantGroup(name, to.group, write, nowIso()))) throw new NotFoundError(`no collection "${name}" or no group "${to.group}"`);
    return;
  }
  const user = await store.users.findByName(to.user);
  if (!user || user.revokedAt !== null) throw new NotFoundError(`no user named "${to.user}"`);
  await ensureAccessRow(store, name);
  if (!(await store.collections.grant(name, user.id, write, nowIso()))) throw new NotFoundError(`no collection "${name}"`);
}

/**
 * Removes a user's or a group's grant on `name`; takes effect on the next request of everyone concerned.
 * @throws NotFoundError when there is no such user or the grantee holds no grant on it
 */
export async function revokeCollection(store: Pick<Store, 'collections' | 'users'>, name: string, from: Grantee): Promise<void> {
  if ('group' in from) {
    if (!(await store.collections.revokeGroup(name, from.group))) throw new NotFoundError(`group "${from.group}" holds no grant on collection "${name}"`);
    return;
  }
  const user = await store.users.findByName(from.user);
  if (!user) throw new NotFoundError(`no user named "${from.user}"`);
  if (!(await store.collections.revoke(name, user.id))) throw new NotFoundError(`"${from.user}" holds no grant on collection "${name}"`);
}

// ---------------------------------------------------------------------------------------------
// Groups (`mneme groups`, /v1/admin/groups): a grant to a group is held by each of its members.

/** A group as admins see it (CLI --json and HTTP). */
export interface GroupAdminView {
  name: string;
  createdAt: string;
  members: string[];
  grants: Array<{ collection: string; canWrite: boolean }>;
}

/** Every group, by name (byte order). */
export async function listGroupsForAdmin(store: Pick<Store, 'collections'>): Promise<GroupAdminView[]> {
  return (await store.collections.listGroups()).map((g) => ({ name: g.name, createdAt: g.createdAt, members: g.members.map((m) => m.userName), grants: g.grants }));
}

/** The JSON shape of a GroupAdminView (pure). */
export function groupAdminJson(g: GroupAdminView): Record<string, unknown> {
  return { name: g.name, created_at: g.createdAt, members: g.members, grants: g.grants.map((x) => ({ collection: x.collection, write: x.canWrite })) };
}

/** @returns the group `name`. @throws NotFoundError */
export async function groupForAdmin(store: Pick<Store, 'collections'>, name: string): Promise<GroupAdminView> {
  const g = (await listGroupsForAdmin(store)).find((x) => x.name === name);
  if (!g) throw new NotFoundError(`no group named "${name}"`);
  return g;
}

/**
 * Creates group `name` (idempotent: an existing group is left as it is).
 * @throws ValidationError for a malformed name
 */
export async function createGroup(store: Pick<Store, 'collections'>, name: string): Promise<{ created: boolean }> {
  checkGroupName(name);
  try {
    await store.collections.createGroup(name, nowIso());
    return { created: true };
  } catch (err) {
    if (err instanceof ConflictError) return { created: false };
    throw err;
  }
}

/** Deletes group `name`, its memberships and its grants. @throws NotFoundError */
export async function deleteGroup(store: Pick<Store, 'collections'>, name: string): Promise<void> {
  if (!(await store.collections.deleteGroup(name))) throw new NotFoundError(`no group named "${name}"`);
}

/** Adds user `userName` to group `group` (idempotent). @throws NotFoundError for an unknown user or group */
export async function addGroupMember(store: Pick<Store, 'collections' | 'users'>, group: string, userName: string): Promise<void> {
  const user = await store.users.findByName(userName);
  if (!user || user.revokedAt !== null) throw new NotFoundError(`no user named "${userName}"`);
  if (!(await store.collections.addMember(group, user.id, nowIso()))) throw new NotFoundError(`no group named "${group}" (create it first: mneme groups create ${group})`);
}

/** Removes user `userName` from group `group`. @throws NotFoundError when they were not a member */
export async function removeGroupMember(store: Pick<Store, 'collections' | 'users'>, group: string, userName: string): Promise<void> {
  const user = await store.users.findByName(userName);
  if (!user) throw new NotFoundError(`no user named "${userName}"`);
  if (!(await store.collections.removeMember(group, user.id))) throw new NotFoundError(`"${userName}" is not a member of group "${group}"`);
}

/** Group names: the same alphabet as collection names. */
export const GROUP_NAME_PATTERN = /^[\w.-]{1,64}$/;

/** @throws ValidationError for a malformed group name */
export function checkGroupName(name: string): void {
  if (!GROUP_NAME_PATTERN.test(name)) throw new ValidationError(`group name "${name}": letters, digits, "_", "-", "." (1-64)`);
}

/** Collection names: as `mneme ingest --collection` and uploads. */
export const COLLECTION_NAME_PATTERN = /^[\w.-]{1,64}$/;

/** @throws ValidationError for a name uploads and ingest would refuse */
export function checkCollectionName(name: string): void {
  if (!COLLECTION_NAME_PATTERN.test(name)) throw new ValidationError(`collection name "${name}": letters, digits, "_", "-", "." (1-64)`);
}
