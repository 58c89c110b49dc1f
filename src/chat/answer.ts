/**
 * One chat turn, end to end (the inference pipeline):
 *   conversation → features (online + on-demand) → retrieve (with personalization signals)
 *   → fit the passages into the model's context budget → render the prompt → generate (queue,
 *   streaming) → finalize citations → write the prediction log.
 *
 * Exactly one `responses` row is written for every turn that passed validation and the conversation
 * check, whatever happens next: status 'ok', 'error' (with the error code) or 'cancelled' (the client
 * went away or the server shut down; any partial answer is kept).
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../core/config.ts';
import type { Store } from '../core/store/index.ts';
import { CancelledError, ContextOverflowError, MnemeError, NotFoundError } from '../core/errors.ts';
import { samplingFromConfig } from '../core/llm/index.ts';
import type { ChatMessage, ChatModel, GenerateRequest, GenerateResult, SamplingParams } from '../core/llm/types.ts';
import type { PromptTemplate } from '../core/prompts.ts';
import { renderPrompt } from '../core/prompts.ts';
import { computeOnDemandFeatures } from '../features/on-demand.ts';
import { withoutHiddenCollections } from './access.ts';
import { formatPersonalizationBlock, toPersonalizationSignals } from '../features/personalize.ts';
import type { FeatureReader, FeatureValue } from '../features/types.ts';
import type { Citation } from './citations.ts';
import { displaySource, finalizeCitations } from './citations.ts';
import type { AnswerFinishReason, AnswerFlag, ClosestSource, Evidence } from './evidence.ts';
import { ENTRY_SEARCH_DEPTH, answerOutcome, assessEvidence, closestSources, evidenceNote, missingEntries, uncoveredTerms, withDefiningChunks } from './evidence.ts';
import { fitContext, formatContext, formatHistory, toPassages } from './context.ts';
import { retrievalQuery } from './follow-up.ts';
import type { LoggedChunk, Logger, PredictionRecord, PredictionWriteOutcome } from './log.ts';
import { silentLogger, writePredictionLog } from './log.ts';
import type { FifoGate } from './gate.ts';
import type { ChatMetrics } from './metrics.ts';
import type { FusionSettings, RetrievedChunk, Retriever, RetrieveResult } from './types.ts';
import type { User } from './users.ts';

/** Earlier conversation messages (user + assistant) given to the model as history. */
export const HISTORY_MAX_MESSAGES = 6;
/** Tokens counted per chat message for role markers and separators (chat templates add a few). */
export const PROMPT_MESSAGE_OVERHEAD_TOKENS = 8;
/** Default number of passages retrieved per question. */
export const DEFAULT_TOP_K = 6;

/** Where generation happens (the GenerationQueue in production). */
export interface Generator {
  run(req: GenerateRequest): Promise<GenerateResult>;
}

export interface AnswerDeps {
  /** Conversations (history) and the prediction log; the corpus, when given, refines the abstention evidence. */
  store: Pick<Store, 'conversations' | 'predictions'> & Partial<Pick<Store, 'corpus'>>;
  retriever: Retriever;
  /** Names the backend/model in responses and counts tokens for the context budget. */
  model: ChatModel;
  /** Runs generation (bounded queue); usually wraps `model`. */
  generator: Generator;
  /** The 'answer' prompt template. */
  prompt: PromptTemplate;
  config: Config;
  /** Optional feature store: without it, no precomputed features and no personalization. */
  features?: FeatureReader | undefined;
  metrics?: ChatMetrics | undefined;
  logger?: Logger | undefined;
  /** The release answering (issue 15): logged with the row, returned as `release`; its retrieval settings apply. */
  release?: AnswerRelease | undefined;
  /**
   * Admission control (src/chat/gate.ts): an answer holds a turn from its features to the end of an
   * extractive generation (a remote or queued model is released before generating). Absent: no limit.
   */
  gate?: FifoGate | undefined;
}

/** Which release answers a turn, on which arm, with its retrieval settings. */
export interface AnswerRelease {
  name: string;
  arm: 'live' | 'candidate';
  retrieval: { mode: 'hybrid' | 'bm25' | 'dense'; fusion: FusionSettings };
}

export interface TurnInput {
  user: User;
  endpoint: 'chat' | 'chat.completions';
  message: string;
  /** An existing conversation of this user; absent = start a new one. */
  conversationId?: string | undefined;
  /**
   * Explicit history (the OpenAI-compatible endpoint, where the client sends the transcript).
   * Absent = the last HISTORY_MAX_MESSAGES messages of the conversation.
   */
  history?: ChatMessage[] | undefined;
  topK: number;
  collection?: string | undefined;
  /** Collections the user may not read (CollectionScope.hidden): never retrieved, never weighed as evidence. */
  excludeCollections?: readonly string[] | undefined;
  /** Per-request sampling overrides (the completions endpoint). */
  sampling?: Partial<SamplingParams> | undefined;
  /** The validated request, logged as is. */
  request: unknown;
  /** Pre-allocated response id (streams announce it before the end); default: a new one. */
  responseId?: string | undefined;
}

export interface TurnOptions {
  /** Aborting cancels the turn: the log row gets status 'cancelled' and CancelledError is thrown. */
  signal: AbortSignal;
  /** Receives generated text as it arrives (raw model output, before citation clean-up). */
  onToken?: ((text: string) => void) | undefined;
}

export interface ChatTimings {
  features_ms: number;
  retrieve_ms: number;
  generate_ms: number;
  /** From the start of generation (queue wait included) to the first generated text; null when none came. */
  first_token_ms: number | null;
  total_ms: number;
}

/** The /v1/chat response body (also the SSE `done` event). */
export interface ChatAnswer {
  id: string;
  conversation_id: string;
  answer: string;
  citations: Citation[];
  model: { backend: string; id: string };
  prompt: { name: string; sha256: string };
  timings: ChatTimings;
  usage: { prompt_tokens: number; completion_tokens: number };
  /** 'no_evidence': the documents do not cover the question (the answer says so and lists `closest_sources`). */
  finish_reason: AnswerFinishReason;
  /** Warnings: 'uncited' (an answer citing nothing), 'weak_evidence' (cited although retrieval coverage was low). */
  flags: AnswerFlag[];
  /** With finish_reason 'no_evidence': the best-ranked retrieved documents; [] otherwise. */
  closest_sources: ClosestSource[];
  retrieval_mode: RetrieveResult['mode'];
  /** Name of the release that answered (null when the server runs without releases). */
  release: string | null;
}

export interface ConversationState {
  id: string;
  isNew: boolean;
  /** Completed turns so far (0 for a new conversation). */
  turnIndex: number;
  /** Recent messages, oldest first. */
  history: ChatMessage[];
}

/**
 * Loads the conversation of `userId` (or plans a new one).
 * @throws NotFoundError for an unknown id or another user's conversation (same message for both).
 */
export async function loadConversation(
  store: Pick<Store, 'conversations'>,
  userId: number,
  conversationId: string | undefined,
  maxMessages = HISTORY_MAX_MESSAGES,
): Promise<ConversationState> {
  if (conversationId === undefined) return { id: `conv_${randomUUID()}`, isNew: true, turnIndex: 0, history: [] };
  const found = await store.conversations.history(userId, conversationId, maxMessages);
  if (!found) throw new NotFoundError(`no conversation ${conversationId}`);
  return { id: conversationId, isNew: false, turnIndex: found.turnIndex, history: found.history };
}

/** A new public response id (`resp_<uuid>`). */
export function newResponseId(): string {
  return `resp_${randomUUID()}`;
}

/** Milliseconds since `t0` (performance clock), rounded to 0.01 ms. */
function since(t0: number): number {
  return Math.round((performance.now() - t0) * 100) / 100;
}

function throwIfCancelled(signal: AbortSignal): void {
  if (signal.aborted) throw new CancelledError('the request was cancelled', { cause: signal.reason });
}

function toLoggedChunks(chunks: RetrievedChunk[], kept: Set<number>): LoggedChunk[] {
  return chunks.map((c) => ({
    chunk_id: c.chunkId,
    document_id: c.documentId,
    content_sha256: c.contentSha256,
    score: c.score,
    bm25_rank: c.bm25Rank,
    dense_rank: c.denseRank,
    in_context: kept.has(c.chunkId),
  }));
}

/** Tokens of a rendered prompt as the model counts them, with per-message overhead. */
export function promptTokens(messages: ChatMessage[], countTokens: (text: string) => number): number {
  return messages.reduce((n, m) => n + countTokens(m.content) + PROMPT_MESSAGE_OVERHEAD_TOKENS, 0);
}

/**
 * Runs one turn. See the module comment for the stages and the logging guarantee.
 * @throws NotFoundError (unknown conversation, before anything is logged); CancelledError;
 * UnavailableError (queue full / model loading); UpstreamError / UpstreamTimeoutError;
 * ContextOverflowError when even the bare question does not fit; ValidationError from retrieval.
 */
export async function answerTurn(deps: AnswerDeps, input: TurnInput, opts: TurnOptions): Promise<ChatAnswer> {
  const { store, model, prompt } = deps;
  const logger = deps.logger ?? silentLogger;
  const t0 = performance.now();
  const createdAt = new Date().toISOString();
  const conversation = await loadConversation(store, input.user.id, input.conversationId);
  const history = input.history ?? conversation.history;
  const responseId = input.responseId ?? newResponseId();
  const sampling: SamplingParams = { ...samplingFromConfig(deps.config), ...stripUndefined(input.sampling ?? {}) };

  // Filled in as the stages run, so a failure logs everything known up to that point.
  const timings: ChatTimings & Record<string, number | null> = { features_ms: 0, retrieve_ms: 0, generate_ms: 0, first_token_ms: null, total_ms: 0 };
  let precomputed: Record<string, FeatureValue> = {};
  let onDemand: Record<string, unknown> = {};
  let retrieval: RetrieveResult | null = null;
  let kept: RetrievedChunk[] = [];
  let usedHistory: ChatMessage[] = history;
  let rendered: ChatMessage[] = [];
  let partial = '';
  let result: GenerateResult | null = null;
  let finalized: { answer: string; citations: Citation[] } | null = null;
  let evidence: Evidence | null = null;
  let outcome: ReturnType<typeof answerOutcome> | null = null;

  const record = (status: PredictionRecord['status'], err: unknown): PredictionRecord => ({
    id: responseId,
    userId: input.user.id,
    userCreatedAt: input.user.createdAt,
    conversationId: conversation.id,
    newConversation: conversation.isNew,
    turnIndex: conversation.turnIndex,
    createdAt,
    endpoint: input.endpoint,
    request: input.request,
    query: input.message,
    queryVector: retrieval?.queryVector ?? null,
    history: usedHistory,
    collection: input.collection ?? null,
    topK: input.topK,
    retrieved: retrieval ? toLoggedChunks(retrieval.chunks, new Set(kept.map((c) => c.chunkId))) : [],
    features: { precomputed, on_demand: onDemand },
    promptName: prompt.name,
    promptSha256: prompt.sha256,
    renderedPrompt: rendered,
    modelBackend: model.backend,
    modelId: model.modelId,
    sampling,
    answer: finalized?.answer ?? (partial === '' ? null : partial),
    citations: finalized?.citations ?? [],
    timings,
    promptTokens: result?.promptTokens ?? null,
    completionTokens: result?.completionTokens ?? null,
    status,
    errorCode: err === null ? null : err instanceof MnemeError ? err.code : 'internal_error',
    errorMessage: err === null ? null : err instanceof Error ? err.message : String(err),
    release: deps.release?.name ?? null,
    arm: deps.release?.arm ?? null,
    finishReason: outcome?.finishReason ?? null,
    flags: outcome?.flags,
    evidence,
  });

  let leave: (() => void) | null = null;
  try {
    throwIfCancelled(opts.signal);
    leave = deps.gate ? await deps.gate.enter(opts.signal) : null;
    // 1. Features: what the store knows (precomputed) + what this request says (on-demand).
    const tf = performance.now();
    // A collection named in the features but no longer readable (a revoke since) is dropped.
    precomputed = withoutHiddenCollections(await readOnlineFeatures(deps, input.user.id, logger), input.excludeCollections);
    onDemand = await safeOnDemand(store, input, conversation, model, logger);
    timings.features_ms = since(tf);
    deps.metrics?.featuresDuration.observe({}, timings.features_ms / 1000);

    // 2. Retrieval, personalized by the precomputed features.
    throwIfCancelled(opts.signal);
    const personalization = deps.features ? toPersonalizationSignals(precomputed, deps.config.personalizationWeight) : undefined;
    const tr = performance.now();
    const settings = deps.release?.retrieval;
    // A follow-up ("How do I create one?") is searched with the thread's key terms; the prompt keeps the real message.
    const retrievalText = retrievalQuery(input.message, history);
    if (retrievalText !== input.message) logger.info('follow-up: retrieval query extended', { response_id: responseId, query: input.message, retrieval_query: retrievalText });
    const retrieveAt = (topK: number) => deps.retriever.retrieve({
      query: retrievalText, topK, collection: input.collection, excludeCollections: input.excludeCollections, personalization, mode: settings?.mode, fusion: settings?.fusion,
    });
    retrieval = await retrieveAt(input.topK);
    // A question naming an identifier (`work_mem`) whose entry is not among the chunks: the entry is
    // looked for deeper in the same ranking and swapped in (evidence.ts withDefiningChunks).
    if (input.topK < ENTRY_SEARCH_DEPTH && missingEntries(retrievalText, retrieval.chunks)) {
      retrieval = { ...retrieval, chunks: withDefiningChunks(retrievalText, retrieval.chunks, (await retrieveAt(ENTRY_SEARCH_DEPTH)).chunks) };
    }
    timings.retrieve_ms = since(tr);
    Object.assign(timings, retrieval.timings);
    deps.metrics?.retrieveDuration.observe({}, timings.retrieve_ms / 1000);
    // Weak evidence (store.corpus, when present, tells which missing terms no document has): the extractive answerer gets no passages (it says the documents do not cover
    // it), a language model gets the prompt's `evidence` note; see src/chat/evidence.ts.
    evidence = await weighEvidence(deps, retrievalText, retrieval.chunks, input.collection, input.excludeCollections);
    const note: Record<string, string> = prompt.variables.includes('evidence') ? { evidence: evidenceNote(evidence) } : {};
    const closest = closestSources(retrieval.chunks).map((c) => ({ document_id: c.documentId, title: c.title, source: displaySource(c.source) }));

    // 3. Context budget: window minus the answer's tokens minus the prompt without passages.
    throwIfCancelled(opts.signal);
    const personalizationBlock = deps.features ? formatPersonalizationBlock(precomputed) : '';
    const render = (context: string, turns: ChatMessage[]) =>
      renderPrompt(prompt, { question: input.message, context, personalization: personalizationBlock, history: formatHistory(turns), ...note });
    const count = (text: string) => model.countTokens(text);
    const windowBudget = deps.config.llm.contextTokens - sampling.maxTokens;
    // History is the first thing to go when the question alone is long: oldest messages first, and
    // an answer whose question was dropped goes with it (it would read as context-free).
    while (promptTokens(render('', usedHistory), count) > windowBudget && usedHistory.length > 0) {
      usedHistory = usedHistory.slice(1);
      while (usedHistory[0]?.role === 'assistant') usedHistory = usedHistory.slice(1);
    }
    const base = promptTokens(render('', usedHistory), count);
    if (base > windowBudget) {
      throw new ContextOverflowError(
        `the question needs ${base} prompt tokens but the model's window leaves ${windowBudget} (${deps.config.llm.contextTokens} minus ${sampling.maxTokens} for the answer)`,
      );
    }
    const fit = fitContext(retrieval.chunks, windowBudget - base, count);
    kept = fit.kept;
    if (fit.dropped.length > 0) {
      deps.metrics?.contextDropped.inc({}, fit.dropped.length);
      logger.warn('context budget: dropped retrieved chunks', {
        response_id: responseId,
        dropped_chunk_ids: fit.dropped.map((c) => c.chunkId),
        budget_tokens: windowBudget - base,
      });
    }
    rendered = render(formatContext(kept), usedHistory);

    // 4. Generation (queued; streams through onToken). Only the extractive answerer computes in this
    // process: any other model has its own queue, so the turn ends here.
    if (model.backend !== 'extractive') {
      leave?.();
      leave = null;
    }
    const tg = performance.now();
    try {
      result = await deps.generator.run({
        messages: rendered,
        sampling,
        signal: opts.signal,
        onToken: (text) => {
          if (timings.first_token_ms === null) timings.first_token_ms = since(tg);
          partial += text;
          opts.onToken?.(text);
        },
        // The extractive answerer quotes for what the thread is about ("How do I create one? brin index").
        context: { query: retrievalText, passages: evidence.abstain && model.backend === 'extractive' ? [] : toPassages(kept) },
      });
    } finally {
      timings.generate_ms = since(tg);
      deps.metrics?.generateDuration.observe({}, timings.generate_ms / 1000);
      if (timings.first_token_ms !== null) deps.metrics?.firstTokenDuration.observe({}, timings.first_token_ms / 1000);
    }
    leave?.();
    leave = null;
    // A backend that finished although the client left still counts as cancelled: nobody got it.
    throwIfCancelled(opts.signal);

    // 5. Citations: only [n] that point at passages in the prompt survive.
    finalized = finalizeCitations(result.text, kept);
    outcome = answerOutcome({
      citations: finalized.citations.length,
      finishReason: result.finishReason,
      evidence,
      extractive: model.backend === 'extractive',
      closest,
    });
    if (outcome.suffix !== '') {
      opts.onToken?.(outcome.suffix);
      finalized = { ...finalized, answer: finalized.answer + outcome.suffix };
    }
    timings.total_ms = since(t0);
    noteDropped(deps, responseId, await writePredictionLog(store, record('ok', null)));
    deps.metrics?.answers.inc({ endpoint: input.endpoint, status: 'ok' });
    deps.metrics?.answerDuration.observe({}, timings.total_ms / 1000);
    deps.metrics?.tokens.inc({ kind: 'prompt' }, result.promptTokens);
    deps.metrics?.tokens.inc({ kind: 'completion' }, result.completionTokens);
    deps.metrics?.completionTokens.observe({}, result.completionTokens);
    return {
      id: responseId,
      conversation_id: conversation.id,
      answer: finalized.answer,
      citations: finalized.citations,
      model: { backend: model.backend, id: model.modelId },
      prompt: { name: prompt.name, sha256: prompt.sha256 },
      timings: {
        features_ms: timings.features_ms,
        retrieve_ms: timings.retrieve_ms,
        generate_ms: timings.generate_ms,
        first_token_ms: timings.first_token_ms,
        total_ms: timings.total_ms,
      },
      usage: { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens },
      finish_reason: outcome.finishReason,
      flags: outcome.flags,
      closest_sources: outcome.finishReason === 'no_evidence' ? closest : [],
      retrieval_mode: retrieval.mode,
      release: deps.release?.name ?? null,
    };
  } catch (caught) {
    const cancelled = opts.signal.aborted || caught instanceof CancelledError;
    const err = cancelled && !(caught instanceof CancelledError) ? new CancelledError('the request was cancelled', { cause: caught }) : caught;
    timings.total_ms = since(t0);
    const status = cancelled ? 'cancelled' : 'error';
    try {
      noteDropped(deps, responseId, await writePredictionLog(store, record(status, err)));
    } catch (logErr) {
      // The original error is what the client must see; the lost row is loud in the server log.
      logger.error('prediction log write failed', { response_id: responseId, error: (logErr as Error).message });
    }
    deps.metrics?.answers.inc({ endpoint: input.endpoint, status });
    throw err;
  } finally {
    leave?.();
  }
}

/**
 * assessEvidence, with the key terms missing from the top chunks looked up in the whole collection
 * (one full-text query each, only for those; skipped without a corpus store): a term no document
 * has weighs ABSENT_TERM_WEIGHT.
 */
async function weighEvidence(deps: AnswerDeps, query: string, chunks: RetrievedChunk[], collection: string | undefined, excludeCollections?: readonly string[]): Promise<Evidence> {
  const thresholds = { minCoverage: deps.config.abstainMinCoverage };
  const first = assessEvidence(query, chunks, thresholds);
  const corpus = deps.store.corpus;
  const missing = uncoveredTerms(first);
  if (!corpus || missing.length === 0) return first;
  const absent = new Set<string>();
  for (const t of missing) if ((await corpus.searchText(t, { limit: 1, collection, excludeCollections })).length === 0) absent.add(t);
  return absent.size === 0 ? first : assessEvidence(query, chunks, thresholds, absent);
}

/**
 * Counts (metric `mneme_log_rows_dropped_total{reason}`) and logs a prediction-log row that was not
 * written on purpose: its user was erased while the answer ran.
 */
function noteDropped(deps: AnswerDeps, responseId: string, outcome: PredictionWriteOutcome): void {
  if (outcome.written) return;
  deps.metrics?.logRowsDropped.inc({ reason: outcome.reason });
  (deps.logger ?? silentLogger).info('prediction log row dropped', { response_id: responseId, reason: outcome.reason });
}

/** Online features, or {} (with a warning) when the store fails: features never break chat. */
async function readOnlineFeatures(deps: AnswerDeps, userId: number, logger: Logger): Promise<Record<string, FeatureValue>> {
  if (!deps.features) return {};
  try {
    return await deps.features.getOnlineFeatures(userId);
  } catch (err) {
    logger.warn('feature store read failed; answering without features', { user_id: userId, error: (err as Error).message });
    return {};
  }
}

async function safeOnDemand(
  store: Pick<Store, 'conversations'>,
  input: TurnInput,
  conversation: ConversationState,
  model: ChatModel,
  logger: Logger,
): Promise<Record<string, unknown>> {
  try {
    const previousMessageAt = await store.conversations.lastUserMessageAt(input.user.id);
    return { ...computeOnDemandFeatures({
      message: input.message,
      turnIndex: conversation.turnIndex,
      previousMessageAt,
      now: new Date(),
      countTokens: (t: string) => model.countTokens(t),
    }) };
  } catch (err) {
    logger.warn('on-demand features failed; answering without them', { error: (err as Error).message });
    return {};
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
