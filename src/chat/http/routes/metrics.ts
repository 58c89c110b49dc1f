/** GET /metrics: Prometheus text exposition. Needs an admin key (403 for other users). */
import { Router } from 'express';
import { PROMETHEUS_CONTENT_TYPE } from '../../metrics.ts';
import type { AppContext } from '../context.ts';
import { requireAdmin } from '../auth.ts';

export function metricsRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/metrics', requireAdmin, async (_req, res) => {
    const text = await ctx.metrics.render();
    res.setHeader('Content-Type', PROMETHEUS_CONTENT_TYPE);
    res.send(text);
  });
  return router;
}
