/**
 * POST /v1/chat `{message, conversation_id?, stream?, top_k?, collection?}`.
 * JSON: the ChatAnswer object. `stream: true`: SSE `event: token` (data `{text}`) per generated
 * piece, then one `event: done` carrying the same object as the JSON response; an error after the
 * stream started is one `event: error` (data `{code, message, status}`). Errors before the first
 * token are ordinary HTTP errors (the status still says what happened).
 * Streamed tokens are the model's raw text; `done.answer` is the final text after citation
 * clean-up, which clients should display in the end.
 */
import { Router } from 'express';
import type { Response } from 'express';
import { z } from 'zod';
import { PayloadTooLargeError, UnavailableError } from '../../../core/errors.ts';
import type { ChatModel } from '../../../core/llm/types.ts';
import { DEFAULT_TOP_K, answerTurn } from '../../answer.ts';
import type { ChatAnswer, TurnInput } from '../../answer.ts';
import { MAX_TOP_K } from '../../retrieve.ts';
import { assertReadableCollection, collectionScope, excludedBy } from '../../access.ts';
import type { AccessUser } from '../../access.ts';
import type { AppContext } from '../context.ts';
import { currentUser } from '../auth.ts';
import { parseBody, toHttpError } from '../errors.ts';
import { SseStream } from '../sse.ts';

/** Longest accepted conversation id / collection name, in characters. */
const MAX_ID_CHARS = 128;

export const chatRequestSchema = z
  .object({
    message: z.string().refine((s) => s.trim() !== '', 'must not be empty'),
    conversation_id: z.string().min(1).max(MAX_ID_CHARS).nullish(),
    stream: z.boolean().default(false),
    top_k: z.number().int().min(1).max(MAX_TOP_K).default(DEFAULT_TOP_K),
    collection: z.string().min(1).max(MAX_ID_CHARS).nullish(),
  })
  .strict();

/**
 * The message limit is a size limit, so it answers 413 like the body limit.
 * @throws PayloadTooLargeError when `message` is over `maxChars` characters.
 */
export function checkMessageLength(message: string, maxChars: number, field = 'message'): void {
  if (message.length > maxChars) throw new PayloadTooLargeError(`${field} is ${message.length} characters; the limit is ${maxChars}`);
}

/** Response header naming the release that answers (also `release` in the body). */
export const RELEASE_HEADER = 'mneme-release';

/** Retry-After while the chat model loads, in seconds. */
export const MODEL_LOADING_RETRY_AFTER_SECONDS = 5;
/** Retry-After when the chat model failed to load (an operator must act), in seconds. */
export const MODEL_FAILED_RETRY_AFTER_SECONDS = 60;

/**
 * Refuses a chat request up front while the model is not ready, before any retrieval work and
 * without a prediction-log row (nothing was attempted). The generation queue re-checks, for a model
 * that fails while a request waits.
 * @throws UnavailableError 'model_loading' or 'model_failed' (503 + Retry-After).
 */
export function assertModelReady(model: ChatModel): void {
  const s = model.status();
  if (s.state === 'loading') {
    throw new UnavailableError('model_loading', `chat model ${model.modelId} is still loading`, MODEL_LOADING_RETRY_AFTER_SECONDS);
  }
  if (s.state === 'failed') {
    // The reason (which may name files) is in the server log, not in the response.
    throw new UnavailableError('model_failed', `chat model ${model.modelId} failed to load; see the server log`, MODEL_FAILED_RETRY_AFTER_SECONDS);
  }
}

/**
 * Runs `fn` with an AbortSignal that fires when the client disconnects (the response closes before
 * it finished) and registers it with the shutdown tracker.
 */
export async function withCancellation<T>(ctx: AppContext, res: Response, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error('client disconnected'));
  };
  res.once('close', onClose);
  const release = ctx.inflight.add(controller);
  try {
    return await fn(controller.signal);
  } finally {
    res.off('close', onClose);
    release();
  }
}

/**
 * Checks a requested collection before any answering work (and without a log row), and returns the
 * collections the answer must never use (the user's unreadable ones: issue 14 access control).
 * @throws CollectionNotFoundError (404 `collection_not_found`, with the collections the user can
 * read) when `collection` is given and holds no live document or is not readable by the user
 * (the same answer: a private collection's existence is never revealed).
 */
export async function assertCollection(ctx: AppContext, user: AccessUser, collection: string | null | undefined): Promise<readonly string[] | undefined> {
  const scope = await collectionScope(ctx.deps.store, user);
  await assertReadableCollection(ctx.deps.store, scope, collection);
  return excludedBy(scope);
}

export function chatRoutes(ctx: AppContext): Router {
  const router = Router();
  router.post('/v1/chat', async (req, res) => {
    const body = parseBody(chatRequestSchema, req.body);
    checkMessageLength(body.message, ctx.deps.config.server.maxMessageChars);
    const user = currentUser(res);
    const excludeCollections = await assertCollection(ctx, user, body.collection);
    // The release (sticky arm) is chosen once: the whole answer runs on it, whatever changes meanwhile.
    const routed = ctx.route(user.id);
    assertModelReady(routed.model);
    if (routed.release) res.setHeader(RELEASE_HEADER, routed.release.name);
    const topKGiven = (req.body as { top_k?: unknown }).top_k !== undefined;
    const input: TurnInput = {
      user,
      endpoint: 'chat',
      message: body.message,
      conversationId: body.conversation_id ?? undefined,
      topK: topKGiven ? body.top_k : routed.topK,
      collection: body.collection ?? undefined,
      excludeCollections,
      request: body,
    };
    if (!body.stream) {
      const answer = await withCancellation(ctx, res, (signal) => answerTurn(routed.answerDeps, input, { signal }));
      res.json(answer);
      return;
    }
    const sse = new SseStream(res);
    let answer: ChatAnswer;
    try {
      answer = await withCancellation(ctx, res, (signal) =>
        answerTurn(routed.answerDeps, input, { signal, onToken: (text) => sse.event('token', { text }) }),
      );
    } catch (err) {
      if (!res.headersSent) throw err;
      const mapped = toHttpError(err);
      if (mapped.unexpected) ctx.logger.error('stream failed', { error: String(err) });
      sse.event('error', { ...mapped.body.error, status: mapped.status });
      sse.end();
      return;
    }
    sse.event('done', answer);
    sse.end();
  });
  return router;
}
