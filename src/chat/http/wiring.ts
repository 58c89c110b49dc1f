/**
 * Builds everything `createApp` needs from a Config, the way `mneme serve` runs it: the store (the
 * SQLite file of the data dir), the embedder + HNSW generation (src/core/deps.ts), the hybrid
 * retriever following the change feed in the background, the 'answer' prompt, the chat model behind
 * a bounded generation queue, and the feature store. `close()` releases it all in reverse order (the
 * store last, so its WAL is checkpointed after the final log rows).
 */
import type { Config } from '../../core/config.ts';
import { CorpusWriter } from '../../core/corpus-writer.ts';
import { openStore, openVectorStack } from '../../core/deps.ts';
import { BatchingEmbedder } from '../../core/embed-batcher.ts';
import { EmbedderUnavailableError, TransformersEmbedder } from '../../core/embedder.ts';
import type { Embedder } from '../../core/embedder.ts';
import type { VectorStack } from '../../core/deps.ts';
import { createChatModel } from '../../core/llm/index.ts';
import type { ChatModel } from '../../core/llm/types.ts';
import { PROMPTS_DIR, PromptStore } from '../../core/prompts.ts';
import { FeatureStore } from '../../features/store.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { FifoGate } from '../gate.ts';
import { ChatMetrics } from '../metrics.ts';
import { GenerationQueue } from '../queue.ts';
import { HybridRetriever } from '../retrieve.ts';
import { regressionGate } from '../regression.ts';
import { configModelKey } from '../release-parts.ts';
import { ModelPool, ReleaseRouter } from '../release-router.ts';
import { ensureInitialRelease } from '../releases.ts';
import type { AppDeps } from './context.ts';
import { InFlight } from './context.ts';
import { SqliteStore } from '../../core/store/sqlite/index.ts';
import { buildRedisParts } from './redis.ts';
import type { RedisParts } from './redis.ts';

/** The prompt template chat answers with. */
export const ANSWER_PROMPT = 'answer';

/**
 * Generations run at once, per backend. A local model (gguf, transformers) saturates the cores with
 * one generation, so more would only slow each down; an OpenAI-compatible server batches parallel
 * requests itself (llama.cpp slots, vLLM); the extractive backend costs microseconds of CPU per word
 * but yields to the event loop between words, so a concurrency of 1 would make the queue, not the
 * CPU, the bottleneck (bench/chat-throughput.ts: 18 req/s at concurrency 1).
 */
export const GENERATION_CONCURRENCY: Readonly<Record<string, number>> = { extractive: 64, openai: 4, gguf: 1, transformers: 1 };
/** For a backend missing from GENERATION_CONCURRENCY. */
export const DEFAULT_GENERATION_CONCURRENCY = 1;

/** Counter of questions retrieved with BM25 alone while the embedder was down. */
export const RETRIEVAL_FALLBACK_METRIC = 'mneme_retrieval_fallback_total';

/**
 * `inner` with every EmbedderUnavailableError counted in `counter` and logged; the error still
 * reaches the retriever, which then answers from BM25 (`retrieval_mode: "bm25_fallback"`).
 */
function countingFallbacks(inner: Embedder, counter: { inc(labels?: Record<string, string>, n?: number): void }, logger: Logger): Embedder {
  return {
    get info() {
      return inner.info;
    },
    countTokens: (text) => inner.countTokens(text),
    embed: async (texts) => {
      try {
        return await inner.embed(texts);
      } catch (err) {
        if (err instanceof EmbedderUnavailableError) {
          counter.inc({}, texts.length);
          logger.warn('embedder unavailable: BM25-only retrieval', { error: err.message });
        }
        throw err;
      }
    },
    close: () => inner.close(),
  };
}

/** Logs embedding workers dying and coming back (they are respawned with backoff). */
function watchEmbedderHealth(embedder: TransformersEmbedder, logger: Logger): void {
  embedder.listener = {
    onWorkerDown: (index, error, restartInMs) => logger.error('embedding worker died; restarting', { worker: index, error: error.message, restart_in_ms: restartInMs }),
    onWorkerUp: (index) => logger.info('embedding worker restarted', { worker: index }),
  };
}

/** Generations allowed at once for `backend`. */
export function generationConcurrency(backend: string): number {
  return GENERATION_CONCURRENCY[backend] ?? DEFAULT_GENERATION_CONCURRENCY;
}

export interface ServerDeps extends AppDeps {
  retriever: HybridRetriever;
  queue: GenerationQueue;
  features: FeatureStore;
  metrics: ChatMetrics;
  inflight: InFlight;
  /** Things the operator should know (BM25-only, repaired index...). */
  warnings: string[];
  /** The loaded embedding model (null: BM25 only); its workers respawn after a crash. */
  embedder: Embedder | null;
  /** Redis parts (MNEME_REDIS_URL), null without Redis; `redis.sync` goes to the feature scheduler. */
  redis: RedisParts | null;
  /** Which release answers (issue 15); refreshed from the store in the background. */
  releases: ReleaseRouter;
  /** Stops the index sync, closes the model, the embedder and the store (in that order). Idempotent. */
  close(): Promise<void>;
}

export interface BuildServerDepsOptions {
  /** Prompt directory. Default PROMPTS_DIR (the repository's prompts/). */
  promptsDir?: string;
  logger?: Logger;
}

/**
 * Opens and loads everything for `mneme serve`.
 * @throws ConfigError (bad prompt template, bad MNEME_LLM, unopenable database), ConflictError (the
 * data dir's index uses another embedding model), ModelLoadError. Whatever was opened before the
 * failure is closed again.
 */
export async function buildServerDeps(config: Config, options: BuildServerDepsOptions = {}): Promise<ServerDeps> {
  const logger = options.logger ?? silentLogger;
  const store = await openStore(config);
  // A full-text query over a large corpus costs seconds of CPU: with MNEME_SEARCH_THREAD=1 it runs on
  // a reader thread, never on the event loop that answers every other request.
  if (config.searchThread && store instanceof SqliteStore) store.startReader();
  let stack: VectorStack | null = null;
  let model: ChatModel | null = null;
  let retriever: HybridRetriever | null = null;
  let redis: RedisParts | null = null;
  let router: ReleaseRouter | null = null;
  let pool: ModelPool | null = null;
  try {
    // Templates first: a broken prompt should fail the start before any model loads.
    const prompt = PromptStore.load(options.promptsDir ?? PROMPTS_DIR).get(ANSWER_PROMPT);
    stack = await openVectorStack(store, config);
    const metrics = new ChatMetrics();
    // Concurrent questions share one model call instead of queueing one by one at the worker.
    const queryEmbedder = stack.embedder
      ? countingFallbacks(
          new BatchingEmbedder(stack.embedder, { onBatch: ({ calls }) => metrics.queryEmbedBatch.observe({}, calls) }),
          metrics.registry.counter(RETRIEVAL_FALLBACK_METRIC, 'Questions answered from BM25 alone because the embedding worker was down (respawning).'),
          logger,
        )
      : null;
    if (stack.embedder instanceof TransformersEmbedder) watchEmbedderHealth(stack.embedder, logger);
    // Background index work (a large ingest's vectors) rests between slices while requests are answered.
    const inflight = new InFlight();
    retriever = new HybridRetriever({ store, embedder: queryEmbedder, index: stack.index, logger, syncBusy: () => inflight.size() > 0 });
    model = await createChatModel(config);
    const queue = new GenerationQueue({ model, maxQueued: config.server.queueMax, concurrency: generationConcurrency(model.backend) });
    redis = config.redis ? await buildRedisParts(config.redis, config, store, metrics, logger) : null;
    const features = new FeatureStore({ store, online: redis?.reader });
    // Releases: the first start makes the configuration the live release `initial` (a changed
    // configuration later becomes `config-<hash>`, promoted); every request is then answered by the
    // live release or the candidate (sticky per user).
    const initial = await ensureInitialRelease(store, config, options.promptsDir ?? PROMPTS_DIR);
    if (initial.created) logger.info('a release made from the configuration is live', { release: initial.live.name });
    pool = new ModelPool(config.server.queueMax, generationConcurrency);
    pool.add(configModelKey(config), model, queue);
    const answerGate = new FifoGate(config.server.answerConcurrency);
    router = new ReleaseRouter({ store, config, models: pool, logger, base: { store, retriever, features, metrics, logger, gate: answerGate } });
    await router.start();
    const ownedRouter = router;
    const ownedPool = pool;
    const embedder = stack.embedder;
    let closed = false;
    const ownedModel = model;
    const ownedStack = stack;
    const ownedRetriever = retriever;
    const ownedRedis = redis;
    // Corpus changes of other processes (an ingest) are applied in the background, never on a request;
    // with Redis, an ingest's notice starts it at once (the poll stays as the fallback).
    ownedRetriever.startSync();
    ownedRedis?.follow(() => void ownedRetriever.syncer.poke());
    return {
      store,
      config,
      retriever,
      model,
      queue,
      prompt,
      features,
      redis,
      releases: router,
      promotionGate: regressionGate(store, retriever, config.releaseGateMargin),
      corpusWriter: new CorpusWriter({
        store,
        dataDir: config.dataDir,
        sharedDatabase: config.databaseUrl !== null,
        followed: stack.index ? { index: stack.index, syncer: retriever.syncer } : null,
      }),
      ...(redis ? { rateLimiter: redis.limiter, onlineFeatures: redis.services.online } : {}),
      vectors: {
        embedder: embedder ? { model_id: embedder.info.modelId, dimension: embedder.info.dimension } : null,
        vectors: () => ownedRetriever.vectorCount(),
        indexLag: () => ownedRetriever.indexLag(),
      },
      metrics,
      logger,
      inflight,
      warnings: [...stack.warnings],
      embedder,
      async close() {
        if (closed) return;
        closed = true;
        ownedRouter.stop();
        await ownedPool.close(ownedModel);
        ownedRetriever.close();
        await ownedModel.close().catch((err: unknown) => logger.warn('closing the chat model failed', { error: String(err) }));
        await ownedStack.embedder?.close().catch((err: unknown) => logger.warn('closing the embedder failed', { error: String(err) }));
        await ownedRedis?.close().catch((err: unknown) => logger.warn('closing redis failed', { error: String(err) }));
        await store.close();
      },
    };
  } catch (err) {
    router?.stop();
    await pool?.close(model).catch(() => {});
    retriever?.close();
    await redis?.close().catch(() => {});
    await model?.close().catch(() => {});
    await stack?.embedder?.close().catch(() => {});
    await store.close();
    throw err;
  }
}
