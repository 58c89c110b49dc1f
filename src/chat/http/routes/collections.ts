/**
 * Collection access for admins (issue 14, item 4; every route needs an admin key, else 403):
 * - `GET /v1/admin/collections` → `{data: [{name, visibility, configured, documents, chunks,
 *   created_at, grants: [{user, write, granted_at}]}]}`: every collection (with documents or an
 *   access row); `configured: false` = no row, public by default.
 * - `POST /v1/admin/collections` `{name, visibility?: "private"|"public"}` (default private) →
 *   201 with the collection (200 when it had a row: its visibility is set).
 * - `POST /v1/admin/collections/:name/grants` `{user, write?: false}` → 200 with the collection;
 *   404 for an unknown user or collection.
 * - `DELETE /v1/admin/collections/:name/grants/:user` → 204; 404 when the user held no grant.
 * Changes take effect on the next request of the user concerned (the scope is read per request).
 * The same operations as `mneme collections` (src/commands/collections.ts), through src/chat/access.ts.
 */
import { Router } from 'express';
import { z } from 'zod';
import { NotFoundError } from '../../../core/errors.ts';
import { collectionAdminJson, grantCollection, listCollectionsForAdmin, revokeCollection, setCollectionAccess } from '../../access.ts';
import { currentUser, requireAdmin } from '../auth.ts';
import type { AppContext } from '../context.ts';
import { parseBody } from '../errors.ts';

const createSchema = z.object({ name: z.string().min(1).max(64), visibility: z.enum(['private', 'public']).default('private') }).strict();
const grantSchema = z.object({ user: z.string().min(1).max(128), write: z.boolean().default(false) }).strict();

export function collectionsAdminRoutes(ctx: AppContext): Router {
  const router = Router({ strict: true });
  const store = ctx.deps.store;
  router.use('/v1/admin/collections', requireAdmin, (_req, res, next) => {
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
    await grantCollection(store, name, body.user, body.write);
    ctx.logger.info('collection granted', { collection: name, user: body.user, write: body.write, by: currentUser(res).name });
    res.json(await view(name));
  });
  router.delete('/v1/admin/collections/:name/grants/:user', async (req, res) => {
    const name = String(req.params.name);
    await revokeCollection(store, name, String(req.params.user));
    ctx.logger.info('collection grant revoked', { collection: name, user: String(req.params.user), by: currentUser(res).name });
    res.status(204).end();
  });
  return router;
}
