/**
 * What the chat app's routes share: the dependencies the app is built from (`AppDeps`), the running
 * answers tracker (`InFlight`) and the per-app context handed to every route module (`AppContext`).
 * Routes import this module, never app.ts (app.ts imports the routes).
 */
import type { Config } from '../../core/config.ts';
import type { CorpusWriter, IngestFilesFn } from '../../core/corpus-writer.ts';
import type { OnlineFeatureStore } from '../../core/online-features.ts';
import type { ChatModel, GenerateRequest, GenerateResult } from '../../core/llm/types.ts';
import type { PromptTemplate } from '../../core/prompts.ts';
import type { Store } from '../../core/store/index.ts';
import type { FeatureReader } from '../../features/types.ts';
import type { AnswerDeps } from '../answer.ts';
import type { ReleaseRouting, RoutedAnswer } from '../release-router.ts';
import type { PromotionGate } from '../releases.ts';
import type { Logger } from '../log.ts';
import type { ChatMetrics } from '../metrics.ts';
import type { TokenBucketLimiter } from '../rate-limit.ts';
import type { Retriever } from '../types.ts';

/** The generation queue as the app sees it (GenerationQueue in production). */
export interface GenerationQueueLike {
  run(req: GenerateRequest): Promise<GenerateResult>;
  /** Requests waiting. */
  depth(): number;
  /** Requests generating now. */
  active(): number;
}

/** The feature store as the app sees it: online reads (erasure goes through `UserStore.erase`). */
export type FeatureStoreLike = FeatureReader;

/** What /healthz reports about retrieval; read at request time. */
export interface VectorInfo {
  embedder: { model_id: string; dimension: number } | null;
  /** Live vectors in the loaded HNSW index, null without an embedder. */
  vectors(): number | null;
  /** Change-feed entries not yet applied to the in-memory index (`index_lag`); absent = not reported. */
  indexLag?(): number;
}

export interface AppDeps {
  /** The data layer (every read and write of the app goes through it). */
  store: Store;
  config: Config;
  retriever: Retriever;
  model: ChatModel;
  queue: GenerationQueueLike;
  /** The 'answer' template (from PromptStore.get('answer')). */
  prompt: PromptTemplate;
  /** Optional: without it chat works, unpersonalized, and /v1/me/features returns {}. */
  features?: FeatureStoreLike | undefined;
  /** For /healthz; default: no embedder. */
  vectors?: VectorInfo | undefined;
  /** Default: a fresh ChatMetrics. */
  metrics?: ChatMetrics | undefined;
  /** Default: silent. */
  logger?: Logger | undefined;
  /** Per-user limiter; default: a TokenBucketLimiter at config.server.rateLimitPerMin. May be async (RedisTokenBucketLimiter). */
  rateLimiter?: { consume(key: string): void | Promise<void> } | undefined;
  /** The online feature store in front of SQL (Redis); DELETE /v1/me erases the user there too. Default: none. */
  onlineFeatures?: Pick<OnlineFeatureStore, 'erase'> | undefined;
  /** Tracks running answers for graceful shutdown; default: a fresh one (`app.locals.inflight`). */
  inflight?: InFlight | undefined;
  /** Built web pages (`npm run build`); default DEFAULT_WEB_ASSETS_DIR (dist/web). */
  webAssetsDir?: string | undefined;
  /** Which release answers each request (issue 15); absent: `model`/`prompt`/`config` answer, `release` is null. */
  releases?: ReleaseRouting | undefined;
  /** Scores two releases on the regression set, for the admin promote button; absent: no gate. */
  promotionGate?: PromotionGate | undefined;
  /** Corpus writes of this server (DELETE /v1/documents/:id, upload jobs); absent: 404 on those routes. */
  corpusWriter?: CorpusWriter | undefined;
  /** The ingest pipeline for uploads (ingest/upload.ts, given by the entry point); absent: uploads answer 404. */
  ingestFiles?: IngestFilesFn | undefined;
}

/**
 * Running answers (cancellable) and every other request still being handled, so shutdown can wait
 * for all of them before the store closes, and cancel the answers.
 */
export class InFlight {
  private readonly controllers = new Set<AbortController>();
  /** Requests between arrival and the end of their response (answers included). */
  private held = 0;
  private waiters: Array<() => void> = [];
  private closing = false;

  /** Registers a request's controller; call the returned function when the request ends. */
  add(controller: AbortController): () => void {
    this.controllers.add(controller);
    return () => {
      this.controllers.delete(controller);
      this.wakeIfIdle();
    };
  }

  /**
   * Counts a request as running from its arrival (before authentication and body parsing) until the
   * returned function is called (its response ended), so the store is not closed under it.
   * Idempotent release.
   */
  hold(): () => void {
    this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held--;
      this.wakeIfIdle();
    };
  }

  private isIdle(): boolean {
    return this.controllers.size === 0 && this.held === 0;
  }

  private wakeIfIdle(): void {
    if (!this.isIdle()) return;
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  size(): number {
    return this.controllers.size;
  }

  /** True once `beginShutdown` ran: new requests get 503 shutting_down. */
  get shuttingDown(): boolean {
    return this.closing;
  }

  beginShutdown(): void {
    this.closing = true;
  }

  /** Resolves true when every running answer and request finished, false after `timeoutMs`. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }

  /** Aborts every running answer (each logs a 'cancelled' row). */
  abortAll(reason: string): void {
    for (const c of this.controllers) c.abort(new Error(reason));
  }
}

/** Everything a route module needs, defaults resolved. */
export interface AppContext {
  deps: AppDeps;
  answerDeps: AnswerDeps;
  metrics: ChatMetrics;
  logger: Logger;
  inflight: InFlight;
  /** Failed authentications per client IP (`ip:<address>`), MNEME_AUTH_FAIL_PER_MIN. */
  authFailures: TokenBucketLimiter;
  /** The answer context of a request of `userId`: its release (sticky arm), model and default top_k. */
  route(userId: number): RoutedAnswer;
}

