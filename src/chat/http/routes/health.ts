/**
 * GET /healthz, no authentication needed (load balancers, `curl`).
 * - Without a key (or with a non-admin key): only state, `{status, model:{state}, index_lag}`.
 * - With an admin key: also `model:{backend, id}`, `embedder:{model_id, dimension}|null`, `retrieval`,
 *   `index:{generation, vectors}|null`, `documents`, `chunks` (model paths and corpus size are
 *   internals).
 * `index_lag`: corpus changes the in-memory vector index has not applied yet; null when not reported.
 * Readiness semantics: 200 with status "ok" only when the chat model is ready; 503 with status
 * "loading" while it loads and "failed" when it could not be loaded (chat would answer 503 too), so a
 * load balancer only routes to instances that can answer. The failure reason is in the server log,
 * not here (it may name paths). A BM25-only instance (no embedder) is still "ok": it answers.
 * A bad key is not an error here (the probe still gets the state), but it counts as a failed
 * authentication for the per-IP limit like anywhere else.
 */
import { Router } from 'express';
import type { Request } from 'express';
import type { AppContext } from '../context.ts';
import { findUserByApiKey } from '../../users.ts';
import { clientIpKey, parseBearer } from '../auth.ts';

/** Retry-After on a 503 /healthz, in seconds. */
const HEALTH_RETRY_AFTER_SECONDS = 5;

/**
 * True when the request carries a live admin key. A key that matches no user counts against the
 * client's failed-authentication budget, and a client out of budget is not checked at all (so this
 * route is no way around the per-IP limit).
 */
async function isAdminRequest(ctx: AppContext, req: Request): Promise<boolean> {
  const key = parseBearer(req.get('authorization'));
  if (!key) return false;
  const ipKey = clientIpKey(req);
  if (!ctx.authFailures.peek(ipKey).ok) return false;
  const user = await findUserByApiKey(ctx.deps.store, key);
  if (!user) ctx.authFailures.take(ipKey);
  return user?.isAdmin === true;
}

export function healthRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/healthz', async (req, res) => {
    const { store, model, vectors } = ctx.deps;
    const state = model.status().state;
    // Change-feed entries the in-memory index has not applied yet (dense search catching up).
    const indexLag = vectors?.indexLag ? vectors.indexLag() : null;
    const status = state === 'ready' ? 'ok' : state;
    let body: Record<string, unknown> = { status, model: { state }, index_lag: indexLag };
    if (await isAdminRequest(ctx, req)) {
      const counts = await store.monitoring.health();
      const vectorCount = vectors?.vectors() ?? null;
      body = {
        status,
        model: { backend: model.backend, id: model.modelId, state },
        embedder: vectors?.embedder ?? null,
        retrieval: vectors?.embedder ? 'hybrid' : 'bm25',
        index: counts.activeGeneration !== null && vectorCount !== null ? { generation: counts.activeGeneration, vectors: vectorCount } : null,
        index_lag: indexLag,
        documents: counts.documents,
        chunks: counts.chunks,
      };
    }
    if (state !== 'ready') res.setHeader('Retry-After', String(HEALTH_RETRY_AFTER_SECONDS));
    res.status(state === 'ready' ? 200 : 503).json(body);
  });
  return router;
}
