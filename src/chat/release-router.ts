/**
 * Which release answers a request (issue 15). The router caches the live release and the optional
 * candidate with everything an answer needs (prompt template, chat model behind its generation
 * queue, sampling, retrieval settings) and refreshes them from the store every
 * RELEASE_REFRESH_INTERVAL_MS (every replica does the same, so a change reaches all of them within
 * that interval, without a restart).
 *
 * - Sticky assignment: a user is in the candidate arm when hash(experiment id + user id) falls under
 *   the candidate's share, so a user sees one arm for the whole experiment (a share change keeps
 *   the experiment id: users already in stay in).
 * - No failed request on a switch: `route()` hands out an immutable answer context; a refresh only
 *   replaces the router's reference, so answers in flight finish on the release they started with.
 *   A release whose chat model is not ready yet (another LLM, loading) is switched to only once it
 *   is ready (or failed); meanwhile the previous set keeps answering.
 * - Models are cached by spec (MNEME_LLM syntax + model name + context size): two releases with the
 *   same model share one loaded model and queue; another spec loads its own, lazily, on first use
 *   by a live or candidate release, and stays loaded until the server stops.
 */
import { createHash } from 'node:crypto';
import type { Config } from '../core/config.ts';
import { createChatModel } from '../core/llm/index.ts';
import type { ChatModel } from '../core/llm/types.ts';
import type { Store } from '../core/store/index.ts';
import type { ReleaseRecord } from '../core/store/releases.ts';
import type { AnswerDeps } from './answer.ts';
import type { Logger } from './log.ts';
import { silentLogger } from './log.ts';
import { GenerationQueue } from './queue.ts';
import { modelKey, releaseConfig, releasePrompt } from './release-parts.ts';

/** How often a server re-reads the release states, in ms (a change is served within this). */
export const RELEASE_REFRESH_INTERVAL_MS = 2_000;
/** While a new release's model loads, its readiness is checked this often, in ms. */
export const MODEL_READY_POLL_MS = 100;

export type Arm = 'live' | 'candidate';

/**
 * The arm of `userId` in `experiment` at `sharePct` percent: candidate when the first 32 bits of
 * sha256(experiment + ':' + userId), as a fraction of 2^32, are below share/100. Pure.
 */
export function assignArm(userId: number, experiment: string, sharePct: number): Arm {
  if (!(sharePct > 0)) return 'live';
  const h = createHash('sha256').update(`${experiment}:${userId}`).digest().readUInt32BE(0);
  return h / 2 ** 32 < sharePct / 100 ? 'candidate' : 'live';
}

/** What routes need to answer one request. */
export interface RoutedAnswer {
  answerDeps: AnswerDeps;
  model: ChatModel;
  /** Passages per question when the request does not say. */
  topK: number;
  release: { name: string; arm: Arm } | null;
}

/** What the HTTP app sees of the router. */
export interface ReleaseRouting {
  route(userId: number): RoutedAnswer;
  /** Re-reads the states now (after a change made by this process). */
  refresh(): Promise<void>;
  /** What is being served. */
  serving(): { live: string; candidate: { name: string; share: number; experiment: string } | null; loadedModels: string[] };
}

interface Pooled {
  model: ChatModel;
  queue: GenerationQueue;
}

/** Chat models and their queues, by modelKey. */
export class ModelPool {
  private readonly byKey = new Map<string, Promise<Pooled>>();

  constructor(private readonly queueMax: number, private readonly concurrency: (backend: string) => number) {}

  /** Registers an already-built model (the server's configured one). */
  add(key: string, model: ChatModel, queue: GenerationQueue): void {
    this.byKey.set(key, Promise.resolve({ model, queue }));
  }

  /** The model of `key`, created with `config` on first use. @throws whatever createChatModel throws (not cached). */
  get(key: string, config: Config): Promise<Pooled> {
    let p = this.byKey.get(key);
    if (!p) {
      p = createChatModel(config).then((model) => ({ model, queue: new GenerationQueue({ model, maxQueued: this.queueMax, concurrency: this.concurrency(model.backend) }) }));
      this.byKey.set(key, p);
      p.catch(() => this.byKey.delete(key));
    }
    return p;
  }

  keys(): string[] {
    return [...this.byKey.keys()];
  }

  /** Closes every model this pool created or was given, except `keep`. */
  async close(keep: ChatModel | null): Promise<void> {
    for (const p of this.byKey.values()) {
      const pooled = await p.catch(() => null);
      if (!pooled || pooled.model === keep) continue;
      await pooled.queue.close({ cancelInFlight: true }).catch(() => undefined);
      await pooled.model.close().catch(() => undefined);
    }
  }
}

interface ServingSet {
  mark: number;
  live: RoutedAnswer;
  liveRecord: ReleaseRecord;
  candidate: { record: ReleaseRecord; routed: RoutedAnswer } | null;
}

export interface ReleaseRouterOptions {
  store: Pick<Store, 'releases'>;
  config: Config;
  /** Everything of AnswerDeps that does not depend on the release. */
  base: Omit<AnswerDeps, 'model' | 'generator' | 'prompt' | 'config' | 'release'>;
  models: ModelPool;
  refreshMs?: number;
  logger?: Logger;
}

export class ReleaseRouter implements ReleaseRouting {
  private current: ServingSet | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private refreshing: Promise<void> | null = null;
  private readonly logger: Logger;

  constructor(private readonly opts: ReleaseRouterOptions) {
    this.logger = opts.logger ?? silentLogger;
  }

  /** Loads the live/candidate releases and starts the refresh timer. @throws when there is no live release. */
  async start(): Promise<void> {
    await this.load(await this.opts.store.releases.changeMark(), false);
    this.timer = setInterval(() => void this.refresh().catch((err: unknown) => this.logger.warn('release refresh failed', { error: String(err) })), this.opts.refreshMs ?? RELEASE_REFRESH_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  route(userId: number): RoutedAnswer {
    const s = this.current;
    if (!s) throw new Error('ReleaseRouter.route before start()');
    const c = s.candidate;
    if (c && c.record.experiment && assignArm(userId, c.record.experiment, c.record.share ?? 0) === 'candidate') return c.routed;
    return s.live;
  }

  serving(): ReturnType<ReleaseRouting['serving']> {
    const s = this.current;
    const c = s?.candidate?.record;
    return {
      live: s?.liveRecord.name ?? '',
      candidate: c ? { name: c.name, share: c.share ?? 0, experiment: c.experiment ?? '' } : null,
      loadedModels: this.opts.models.keys(),
    };
  }

  /** Re-reads the states when they changed (one refresh at a time). */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const mark = await this.opts.store.releases.changeMark();
        if (mark !== this.current?.mark) await this.load(mark, true);
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private async load(mark: number, waitForModels: boolean): Promise<void> {
    const all = await this.opts.store.releases.list();
    const live = all.find((r) => r.state === 'live');
    if (!live) throw new Error('no live release (the server creates "initial" at start)');
    const cand = all.find((r) => r.state === 'candidate') ?? null;
    const liveAnswer = await this.build(live, 'live', waitForModels);
    const candidate = cand ? { record: cand, routed: await this.build(cand, 'candidate', waitForModels) } : null;
    const before = this.current;
    this.current = { mark, live: liveAnswer, liveRecord: live, candidate };
    if (before && (before.liveRecord.name !== live.name || before.candidate?.record.name !== cand?.name || before.candidate?.record.share !== cand?.share)) {
      this.logger.info('releases changed', { live: live.name, candidate: cand?.name ?? null, share: cand?.share ?? null });
    }
  }

  /** The answer context of one release on one arm; waits for a new model to finish loading when asked. */
  private async build(r: ReleaseRecord, arm: Arm, waitForModel: boolean): Promise<RoutedAnswer> {
    const config = releaseConfig(this.opts.config, r.parts);
    const { model, queue } = await this.opts.models.get(modelKey(r.parts), config);
    if (waitForModel) await waitUntilSettled(model);
    const prompt = releasePrompt(r.parts);
    const ret = r.parts.retrieval;
    return {
      model,
      topK: ret.top_k,
      release: { name: r.name, arm },
      answerDeps: {
        ...this.opts.base,
        model,
        generator: queue,
        prompt,
        config,
        release: { name: r.name, arm, retrieval: { mode: ret.mode, fusion: { k: ret.rrf_k, bm25Weight: ret.bm25_weight, denseWeight: ret.dense_weight } } },
      },
    };
  }
}

/** Resolves once `model` is no longer loading (ready or failed). */
async function waitUntilSettled(model: ChatModel): Promise<void> {
  while (model.status().state === 'loading') await new Promise((r) => setTimeout(r, MODEL_READY_POLL_MS));
}
