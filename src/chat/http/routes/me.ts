/**
 * GET /v1/me/features → `{user, admin, features}` (the online feature values the chat pipeline reads
 * for this user; `{}` without a feature store or before the first materialization).
 * DELETE /v1/me → erases the caller: conversations, messages, responses, feedback, features and the
 * user row (so the key is 401 from then on) → `{deleted: true, user, erased: {table: rows}}`.
 */
import { Router } from 'express';
import type { AppContext } from '../app.ts';
import { currentUser } from '../auth.ts';
import { eraseUser } from '../../users.ts';

export function meRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/v1/me/features', (_req, res) => {
    const user = currentUser(res);
    const features = ctx.deps.features?.getOnlineFeatures(user.id) ?? {};
    res.json({ user: user.name, admin: user.isAdmin, features });
  });
  router.delete('/v1/me', (_req, res) => {
    const user = currentUser(res);
    const store = ctx.deps.features;
    const erased = eraseUser(ctx.deps.db, user.id, store?.eraseUser ? (id) => void store.eraseUser?.(id) : undefined);
    ctx.logger.info('user erased', { user_id: user.id, erased });
    res.json({ deleted: true, user: user.name, erased });
  });
  return router;
}
