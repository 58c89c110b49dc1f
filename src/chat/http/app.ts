/**
 * The chat HTTP server: `createApp(deps)` builds the Express 5 app from already-constructed
 * components (see wiring.ts for how `mneme serve` builds them). Nothing here opens files or loads
 * models, so tests build the app from real components of a temp data dir.
 *
 * Pipeline per request: metrics → in-flight tracking (shutdown waits for it) → (/healthz: no auth)
 * → authenticate (failed attempts limited per client IP) → shutdown gate → rate limit (per key) →
 * JSON body (size, nesting depth) → route → errorHandler (the one error → status mapping).
 */
import express from 'express';
import type { Express, RequestHandler } from 'express';
import { NotFoundError, UnavailableError } from '../../core/errors.ts';
import { DEFAULT_TOP_K } from '../answer.ts';
import { silentLogger } from '../log.ts';
import { FifoGate } from '../gate.ts';
import { ChatMetrics } from '../metrics.ts';
import { TokenBucketLimiter } from '../rate-limit.ts';
import { KeyUseRecorder, authenticate, currentUser } from './auth.ts';
import type { AppContext, AppDeps } from './context.ts';
import { InFlight } from './context.ts';
import { errorHandler } from './errors.ts';
import { jsonBody } from './json-body.ts';
import { adminRouter } from './routes/admin.ts';
import { releasesAdminRouter } from './routes/releases.ts';
import { chatRoutes } from './routes/chat.ts';
import { conversationsRouter } from './routes/conversations.ts';
import { documentsRoutes } from './routes/documents.ts';
import { collectionsAdminRoutes } from './routes/collections.ts';
import { jobsRoutes } from './routes/jobs.ts';
import { webRouter } from './routes/web.ts';
import { completionsRoutes } from './routes/completions.ts';
import { modelsRoutes } from './routes/models.ts';
import { feedbackRoutes } from './routes/feedback.ts';
import { healthRoutes } from './routes/health.ts';
import { meRoutes } from './routes/me.ts';
import { peopleRoutes } from './routes/people.ts';
import { metricsRoutes } from './routes/metrics.ts';

export type { AppContext, AppDeps, FeatureStoreLike, GenerationQueueLike, VectorInfo } from './context.ts';
export { InFlight } from './context.ts';

/** Route labels for metrics: the fixed set of paths (anything else is "other", bounding cardinality). */
export const ROUTES = ['/v1/chat', '/v1/chat/completions', '/v1/feedback', '/v1/me', '/v1/me/features', '/healthz', '/metrics'] as const;

function routeLabel(path: string): string {
  return (ROUTES as readonly string[]).includes(path) ? path : 'other';
}

/** Observes request count + latency per route, method and status (499: the client went away first). */
function metricsMiddleware(metrics: ChatMetrics): RequestHandler {
  return (req, res, next) => {
    const t0 = performance.now();
    let done = false;
    const observe = (status: number) => {
      if (done) return;
      done = true;
      const labels = { route: routeLabel(req.path), method: req.method, status: String(status) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, (performance.now() - t0) / 1000);
    };
    res.once('finish', () => observe(res.statusCode));
    res.once('close', () => observe(res.writableFinished ? res.statusCode : 499));
    next();
  };
}

/**
 * Builds the app. Register the returned app with `app.listen(port, host)`; `app.locals.inflight`
 * is the InFlight tracker used for graceful shutdown.
 */
export function createApp(deps: AppDeps): Express {
  const metrics = deps.metrics ?? new ChatMetrics();
  const logger = deps.logger ?? silentLogger;
  const inflight = deps.inflight ?? new InFlight();
  const limiter = deps.rateLimiter ?? new TokenBucketLimiter({ perMinute: deps.config.server.rateLimitPerMin });
  // Failed authentications per client IP (401s), so API keys cannot be guessed at full speed.
  const authFailures = new TokenBucketLimiter({ perMinute: deps.config.server.authFailPerMin });
  metrics.observeQueue(deps.queue);
  metrics.observeModel(deps.model);

  const ctx: AppContext = {
    deps,
    metrics,
    logger,
    inflight,
    authFailures,
    route: (userId) => (deps.releases ? deps.releases.route(userId) : { answerDeps: ctx.answerDeps, model: deps.model, topK: DEFAULT_TOP_K, release: null }),
    answerDeps: {
      store: deps.store,
      retriever: deps.retriever,
      model: deps.model,
      generator: deps.queue,
      prompt: deps.prompt,
      config: deps.config,
      features: deps.features,
      metrics,
      logger,
      gate: new FifoGate(deps.config.server.answerConcurrency),
    },
  };

  const app = express();
  app.disable('x-powered-by');
  app.locals.inflight = inflight;
  app.use(metricsMiddleware(metrics));
  // Shutdown waits for every request that arrived (not only answers) before closing the store.
  app.use((_req, res, next) => {
    const release = inflight.hold();
    res.once('close', release);
    res.once('finish', release);
    next();
  });
  app.use(healthRoutes(ctx));
  // Pages load before sign-in (a browser cannot send the key for them); their data routes need one.
  app.use(webRouter({ assetsDir: deps.webAssetsDir }));

  app.use(authenticate(deps.store, authFailures, new KeyUseRecorder(deps.store, { logger })));
  app.use((_req, _res, next) => {
    next(inflight.shuttingDown ? new UnavailableError('shutting_down', 'the server is shutting down', 5) : undefined);
  });
  // Async: the limiter may live in Redis (a rejection reaches the error handler).
  app.use(async (_req, res, next) => {
    await limiter.consume(`user:${currentUser(res).id}`);
    next();
  });
  // Only JSON bodies are parsed; anything else leaves req.body undefined and the route's validation
  // answers 400. The limit makes body-parser fail with 413 before reading a huge body.
  // Nesting deeper than MNEME_JSON_MAX_DEPTH is refused before JSON.parse (400).
  app.use(jsonBody({ limitBytes: deps.config.server.bodyLimitBytes, maxDepth: deps.config.server.jsonMaxDepth }));

  app.use(chatRoutes(ctx));
  app.use(completionsRoutes(ctx));
  app.use(modelsRoutes(ctx));
  app.use(feedbackRoutes(ctx));
  app.use(meRoutes(ctx));
  app.use(peopleRoutes(ctx));
  app.use(metricsRoutes(ctx));
  app.use(conversationsRouter({ store: deps.store }));
  app.use(documentsRoutes(ctx));
  app.use(collectionsAdminRoutes(ctx));
  app.use(jobsRoutes(ctx));
  app.use(releasesAdminRouter({ store: deps.store, router: deps.releases, gate: deps.promotionGate }));
  app.use(
    adminRouter({
      store: deps.store,
      queueDepth: () => deps.queue.depth(),
      queueActive: () => deps.queue.active(),
      model: deps.model,
      vectors: deps.vectors,
      metrics,
    }),
  );
  app.use((req, _res, next) => {
    next(new NotFoundError(`no route ${req.method} ${req.path}`));
  });
  app.use(errorHandler(logger));
  return app;
}
