/**
 * GET /healthz, no authentication (load balancers, `curl`). Body:
 * `{status, model:{backend, id, state}, embedder:{model_id, dimension}|null, retrieval, index:{generation,
 * vectors}|null, index_lag, documents, chunks}` (`index_lag`: corpus changes the in-memory vector index
 * has not applied yet; null when not reported).
 * Readiness semantics: 200 with status "ok" only when the chat model is ready; 503 with status
 * "loading" while it loads and "failed" when it could not be loaded (chat would answer 503 too), so a
 * load balancer only routes to instances that can answer. The failure reason is in the server log,
 * not here (it may name paths). A BM25-only instance (no embedder) is still "ok": it answers.
 */
import { Router } from 'express';
import type { AppContext } from '../context.ts';

export function healthRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/healthz', async (_req, res) => {
    const { store, model, vectors } = ctx.deps;
    const state = model.status().state;
    const counts = await store.monitoring.health();
    const vectorCount = vectors?.vectors() ?? null;
    const body = {
      status: state === 'ready' ? 'ok' : state,
      model: { backend: model.backend, id: model.modelId, state },
      embedder: vectors?.embedder ?? null,
      retrieval: vectors?.embedder ? 'hybrid' : 'bm25',
      index: counts.activeGeneration !== null && vectorCount !== null ? { generation: counts.activeGeneration, vectors: vectorCount } : null,
      // Change-feed entries the in-memory index has not applied yet (dense search catching up).
      index_lag: vectors?.indexLag ? vectors.indexLag() : null,
      documents: counts.documents,
      chunks: counts.chunks,
    };
    if (state !== 'ready') res.setHeader('Retry-After', '5');
    res.status(state === 'ready' ? 200 : 503).json(body);
  });
  return router;
}
