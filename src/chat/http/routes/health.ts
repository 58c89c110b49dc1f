/**
 * GET /healthz, no authentication (load balancers, `curl`). Body:
 * `{status, model:{backend, id, state}, embedder:{model_id, dimension}|null, retrieval, index:{generation,
 * vectors}|null, documents, chunks}`.
 * Readiness semantics: 200 with status "ok" only when the chat model is ready; 503 with status
 * "loading" while it loads and "failed" when it could not be loaded (chat would answer 503 too), so a
 * load balancer only routes to instances that can answer. The failure reason is in the server log,
 * not here (it may name paths). A BM25-only instance (no embedder) is still "ok": it answers.
 */
import { Router } from 'express';
import { activeIndexMeta } from '../../../core/index-store.ts';
import type { AppContext } from '../app.ts';

export function healthRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    const { db, model, vectors } = ctx.deps;
    const state = model.status().state;
    const one = (sql: string) => db.prepare(sql).pluck().get() as number;
    const meta = activeIndexMeta(db);
    const vectorCount = vectors?.vectors() ?? null;
    const body = {
      status: state === 'ready' ? 'ok' : state,
      model: { backend: model.backend, id: model.modelId, state },
      embedder: vectors?.embedder ?? null,
      retrieval: vectors?.embedder ? 'hybrid' : 'bm25',
      index: meta && vectorCount !== null ? { generation: meta.generation, vectors: vectorCount } : null,
      documents: one('SELECT count(*) FROM documents WHERE deleted_at IS NULL'),
      chunks: one('SELECT count(*) FROM chunks'),
    };
    if (state !== 'ready') res.setHeader('Retry-After', '5');
    res.status(state === 'ready' ? 200 : 503).json(body);
  });
  return router;
}
