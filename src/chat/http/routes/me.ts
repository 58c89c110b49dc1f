/**
 * GET /v1/me/features → `{user, admin, features}` (the online feature values the chat pipeline reads
 * for this user; `{}` without a feature store or before the first materialization).
 * DELETE /v1/me → erases the caller: conversations, messages, responses, feedback, features and the
 * user row (so the key is 401 from then on), leaving no copy in the database file or its WAL →
 * `{deleted: true, user, erased: {table: rows}}`.
 */
import { Router } from 'express';
import type { AppContext } from '../context.ts';
import { currentUser } from '../auth.ts';
import { eraseUser } from '../../users.ts';
import { collectionScope, withoutHiddenCollections } from '../../access.ts';

export function meRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/v1/me/features', async (_req, res) => {
    const user = currentUser(res);
    // A collection the user can no longer read (revoked since) is not named back to them.
    const hidden = (await collectionScope(ctx.deps.store, user)).hidden;
    const features = withoutHiddenCollections((await ctx.deps.features?.getOnlineFeatures(user.id)) ?? {}, hidden);
    res.json({ user: user.name, admin: user.isAdmin, features });
  });
  router.delete('/v1/me', async (_req, res) => {
    const user = currentUser(res);
    // Every table with a user_id (features included), one transaction, then a WAL checkpoint. An
    // answer of this user still running finds the user gone when it logs, and drops its row.
    const erased = await eraseUser(ctx.deps.store, user.id, ctx.deps.onlineFeatures);
    ctx.logger.info('user erased', { user_id: user.id, erased });
    res.json({ deleted: true, user: user.name, erased });
  });
  return router;
}
