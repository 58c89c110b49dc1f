/**
 * Collection access for admins (issue 14, item 4; every route needs an admin key, else 403):
 * - `GET /v1/admin/collections` → `{data: [{name, visibility, configured, documents, chunks,
 *   created_at, grants: [{user, write, granted_at}]}]}`: every collection (with documents or an
 *   access row); `configured: false` = no row, public by default.
 * - `POST /v1/admin/collections` `{name, visibility?: "private"|"public"}` (default private) →
 *   201 with the collection (200 when it had a row: its visibility is set).
 * - `POST /v1/admin/collections/:name/grants` `{user, write?: false}` or `{group, write?: false}` →
 *   200 with the collection (`grants` and `group_grants`); 404 for an unknown user, group or collection.
 * - `DELETE /v1/admin/collections/:name/grants/:user` → 204; 404 when the user held no grant.
 * - `DELETE /v1/admin/collections/:name/group-grants/:group` → 204; 404 when the group held no grant.
 * Groups (a grant to a group is held by each member):
 * - `GET /v1/admin/groups` → `{data: [{name, created_at, members: [user], grants: [{collection, write}]}]}`.
 * - `POST /v1/admin/groups` `{name}` → 201 with the group (200 when it existed).
 * - `DELETE /v1/admin/groups/:name` → 204 (its memberships and grants go with it); 404 when unknown.
 * - `POST /v1/admin/groups/:name/members` `{user}` → 200 with the group; 404 for an unknown user or group.
 * - `DELETE /v1/admin/groups/:name/members/:user` → 204; 404 when the user was not a member.
 * Changes take effect on the next request of the user concerned (the scope is read per request).
 * The same operations as `mneme collections` and `mneme groups` (src/commands/), through src/chat/access.ts.
 */
import { Router } from 'express';
import { z } from 'zod';
import { NotFoundError } from '../../../core/errors.ts';
import {
  addGroupMember, collectionAdminJson, createGroup, deleteGroup, grantCollection, groupAdminJson, groupForAdmin, listCollectionsForAdmin, listGroupsForAdmin,
  removeGroupMember, revokeCollection, setCollectionAccess,
} from '../../access.ts';
import { currentUser, requireAdmin } from '../auth.ts';
import type { AppContext } from '../context.ts';
import { parseBody } from '../errors.ts';

const createSchema = z.object({ name: z.string().min(1).max(64), visibility: z.enum(['private', 'public']).default('private') }).strict();
const grantSchema = z.union([
  z.object({ user: z.string().min(1).max(128), write: z.boolean().default(false) }).strict(),
  z.object({ group: z.string().min(1).max(64), write: z.boolean().default(false) }).strict(),
]);
const groupSchema = z.object({ name: z.string().min(1).max(64) }).strict();
const memberSchema = z.object({ user: z.string().min(1).max(128) }).strict();

export function collectionsAdminRoutes(ctx: AppContext): Router {
  const router = Router({ strict: true });
  const store = ctx.deps.store;
  router.use(['/v1/admin/collections', '/v1/admin/groups'], requireAdmin, (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  const view = async (name: string) => {
    const v = (await listCollectionsForAdmin(store)).find((c) => c.name === name);
    if (!v) throw new NotFoundError(`no collection "${name}"`);
    return collectionAdminJson(v);
  };
  router.get('/v1/admin/collections', async (_req, res) => {
    res.json({ data: (await listCollectionsForAdmin(store)).map(collectionAdminJson) });
  });
  router.post('/v1/admin/collections', async (req, res) => {
    const body = parseBody(createSchema, req.body);
    const { created } = await setCollectionAccess(store, body.name, body.visibility, currentUser(res).id);
    ctx.logger.info('collection access set', { collection: body.name, visibility: body.visibility, by: currentUser(res).name });
    res.status(created ? 201 : 200).json(await view(body.name));
  });
  router.post('/v1/admin/collections/:name/grants', async (req, res) => {
    const name = String(req.params.name);
    const body = parseBody(grantSchema, req.body);
    const to = 'group' in body ? { group: body.group } : { user: body.user };
    await grantCollection(store, name, to, body.write);
    ctx.logger.info('collection granted', { collection: name, ...to, write: body.write, by: currentUser(res).name });
    res.json(await view(name));
  });
  router.delete('/v1/admin/collections/:name/grants/:user', async (req, res) => {
    const name = String(req.params.name);
    await revokeCollection(store, name, { user: String(req.params.user) });
    ctx.logger.info('collection grant revoked', { collection: name, user: String(req.params.user), by: currentUser(res).name });
    res.status(204).end();
  });
  router.delete('/v1/admin/collections/:name/group-grants/:group', async (req, res) => {
    const name = String(req.params.name);
    await revokeCollection(store, name, { group: String(req.params.group) });
    ctx.logger.info('collection group grant revoked', { collection: name, group: String(req.params.group), by: currentUser(res).name });
    res.status(204).end();
  });

  router.get('/v1/admin/groups', async (_req, res) => {
    res.json({ data: (await listGroupsForAdmin(store)).map(groupAdminJson) });
  });
  router.post('/v1/admin/groups', async (req, res) => {
    const body = parseBody(groupSchema, req.body);
    const { created } = await createGroup(store, body.name);
    ctx.logger.info('group created', { group: body.name, created, by: currentUser(res).name });
    res.status(created ? 201 : 200).json(groupAdminJson(await groupForAdmin(store, body.name)));
  });
  router.delete('/v1/admin/groups/:name', async (req, res) => {
    await deleteGroup(store, String(req.params.name));
    ctx.logger.info('group deleted', { group: String(req.params.name), by: currentUser(res).name });
    res.status(204).end();
  });
  router.post('/v1/admin/groups/:name/members', async (req, res) => {
    const name = String(req.params.name);
    const body = parseBody(memberSchema, req.body);
    await addGroupMember(store, name, body.user);
    ctx.logger.info('group member added', { group: name, user: body.user, by: currentUser(res).name });
    res.json(groupAdminJson(await groupForAdmin(store, name)));
  });
  router.delete('/v1/admin/groups/:name/members/:user', async (req, res) => {
    const name = String(req.params.name);
    await removeGroupMember(store, name, String(req.params.user));
    ctx.logger.info('group member removed', { group: name, user: String(req.params.user), by: currentUser(res).name });
    res.status(204).end();
  });
  return router;
}
