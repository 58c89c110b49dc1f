/**
 * POST /v1/chat/completions: the OpenAI Chat Completions API, so existing clients (the `openai`
 * npm client, chat UIs) work unchanged. Retrieval happens server side:
 * - the LAST message must be a user message: it is the question;
 * - earlier user/assistant messages are the history (the last HISTORY_MAX_MESSAGES of them); system
 *   and developer messages from the client are logged with the request but not sent to the model
 *   (the server's prompt template owns the instructions);
 * - each call is its own conversation (the API is stateless: the client sends the transcript);
 * - `max_tokens` / `max_completion_tokens` are capped at MNEME_LLM_MAX_TOKENS; `temperature`,
 *   `top_p`, `seed`, `stop` override the server defaults for this request;
 * - extensions: request `top_k`, `collection`; response `release` (the release that answered, also
 *   in every stream chunk), `citations` (same objects as /v1/chat) and
 *   `mneme` {response_id, conversation_id, model, prompt, timings, release, finish_reason, flags,
 *   closest_sources} (finish_reason 'no_evidence' is 'stop' in `choices`). `id` is the prediction-log
 *   response id, usable with POST /v1/feedback.
 * Streaming sends `chat.completion.chunk` objects (role first, then content deltas of the raw model
 * text, then a final chunk with `finish_reason` + `citations`, a usage chunk when
 * `stream_options.include_usage`), then `data: [DONE]`. An error after the stream started is one
 * `data: {"error": {...}}` message (what OpenAI servers send), without [DONE].
 */
import { Router } from 'express';
import { z } from 'zod';
import { ValidationError } from '../../../core/errors.ts';
import type { ChatMessage, SamplingParams } from '../../../core/llm/types.ts';
import { HISTORY_MAX_MESSAGES, answerTurn, newResponseId } from '../../answer.ts';
import type { ChatAnswer, TurnInput } from '../../answer.ts';
import { MAX_TOP_K } from '../../retrieve.ts';
import type { AppContext } from '../context.ts';
import { currentUser } from '../auth.ts';
import { parseBody, toHttpError } from '../errors.ts';
import { SseStream } from '../sse.ts';
import { RELEASE_HEADER, assertCollection, assertModelReady, checkMessageLength, withCancellation } from './chat.ts';

/** OpenAI allows up to 4 stop sequences. */
const MAX_STOP_SEQUENCES = 4;

const contentPart = z.object({ type: z.string(), text: z.string().optional() }).passthrough();

const messageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  })
  .passthrough();

export const completionsRequestSchema = z
  .object({
    model: z.string().optional(),
    messages: z.array(messageSchema).min(1, 'must contain at least one message'),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).passthrough().nullish(),
    max_tokens: z.number().int().min(1).nullish(),
    max_completion_tokens: z.number().int().min(1).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    seed: z.number().int().nullish(),
    stop: z.union([z.string(), z.array(z.string()).max(MAX_STOP_SEQUENCES)]).nullish(),
    n: z.literal(1, 'only n = 1 is supported').nullish(),
    top_k: z.number().int().min(1).max(MAX_TOP_K).nullish(),
    collection: z.string().min(1).max(128).nullish(),
  })
  .passthrough();

type CompletionsRequest = z.infer<typeof completionsRequestSchema>;

/** Text of a message's content (string, or the text parts of a content array). */
function textOf(content: z.infer<typeof messageSchema>['content']): string {
  if (typeof content === 'string') return content;
  if (!content) return '';
  return content
    .filter((p) => p.type === 'text' && typeof p.text === 'string')
    .map((p) => p.text)
    .join('\n');
}

/**
 * Splits the transcript into question + history. Pure.
 * @throws ValidationError when the last message is not a non-empty user message.
 */
export function splitTranscript(messages: CompletionsRequest['messages'], maxHistory = HISTORY_MAX_MESSAGES): { question: string; history: ChatMessage[] } {
  const last = messages[messages.length - 1];
  if (!last || last.role !== 'user') throw new ValidationError('messages: the last message must have role "user" (it is the question)');
  const question = textOf(last.content);
  if (question.trim() === '') throw new ValidationError('messages: the last user message must not be empty');
  const history: ChatMessage[] = messages
    .slice(0, -1)
    .filter((m) => m.role === 'user' || m.role === 'assistant')
    .map((m) => ({ role: m.role as 'user' | 'assistant', content: textOf(m.content) }))
    .filter((m) => m.content.trim() !== '');
  return { question, history: history.slice(-maxHistory) };
}

function samplingOverrides(body: CompletionsRequest, maxTokensCap: number): Partial<SamplingParams> {
  const requested = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  return {
    maxTokens: requested === undefined ? undefined : Math.min(requested, maxTokensCap),
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    seed: body.seed ?? undefined,
    stop: body.stop === null || body.stop === undefined ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop,
  } as Partial<SamplingParams>;
}

function mnemeExtension(a: ChatAnswer) {
  return {
    response_id: a.id,
    conversation_id: a.conversation_id,
    model: a.model,
    prompt: a.prompt,
    timings: a.timings,
    retrieval_mode: a.retrieval_mode,
    release: a.release,
    finish_reason: a.finish_reason,
    flags: a.flags,
    closest_sources: a.closest_sources,
  };
}

/**
 * OpenAI's finish_reason for an answer: 'no_evidence' (the documents do not cover the question) is
 * not one of OpenAI's values, so clients get 'stop' there and mneme's own reason in `mneme.finish_reason`.
 */
export function openAiFinishReason(r: ChatAnswer['finish_reason']): 'stop' | 'length' {
  return r === 'length' ? 'length' : 'stop';
}

export function completionsRoutes(ctx: AppContext): Router {
  const router = Router();
  router.post('/v1/chat/completions', async (req, res) => {
    const body = parseBody(completionsRequestSchema, req.body);
    const { question, history } = splitTranscript(body.messages);
    checkMessageLength(question, ctx.deps.config.server.maxMessageChars, 'the last user message');
    const user = currentUser(res);
    const excludeCollections = await assertCollection(ctx, user, body.collection);
    // The release (sticky arm) is chosen once: the whole answer runs on it, whatever changes meanwhile.
    const routed = ctx.route(user.id);
    assertModelReady(routed.model);
    const model = routed.model;
    const release = routed.release?.name ?? null;
    if (release) res.setHeader(RELEASE_HEADER, release);
    const input: TurnInput = {
      user,
      endpoint: 'chat.completions',
      message: question,
      history,
      topK: body.top_k ?? routed.topK,
      collection: body.collection ?? undefined,
      excludeCollections,
      sampling: samplingOverrides(body, ctx.deps.config.llm.maxTokens),
      request: body,
    };
    const created = Math.floor(Date.now() / 1000);

    if (!body.stream) {
      const a = await withCancellation(ctx, res, (signal) => answerTurn(routed.answerDeps, input, { signal }));
      res.json({
        id: a.id,
        object: 'chat.completion',
        created,
        model: model.modelId,
        release,
        choices: [{ index: 0, message: { role: 'assistant', content: a.answer, refusal: null }, finish_reason: openAiFinishReason(a.finish_reason), logprobs: null }],
        usage: { prompt_tokens: a.usage.prompt_tokens, completion_tokens: a.usage.completion_tokens, total_tokens: a.usage.prompt_tokens + a.usage.completion_tokens },
        citations: a.citations,
        mneme: mnemeExtension(a),
      });
      return;
    }

    const sse = new SseStream(res);
    // Every chunk carries the prediction-log id, as the non-streaming response does.
    const streamId = newResponseId();
    input.responseId = streamId;
    const chunk = (delta: Record<string, unknown>, finishReason: string | null, extra: Record<string, unknown> = {}) => ({
      id: streamId,
      object: 'chat.completion.chunk',
      created,
      model: model.modelId,
      release,
      choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }],
      ...extra,
    });
    let sentRole = false;
    const onToken = (text: string) => {
      if (!sentRole) {
        sse.data(chunk({ role: 'assistant', content: '' }, null));
        sentRole = true;
      }
      sse.data(chunk({ content: text }, null));
    };
    let a: ChatAnswer;
    try {
      a = await withCancellation(ctx, res, (signal) => answerTurn(routed.answerDeps, input, { signal, onToken }));
    } catch (err) {
      if (!res.headersSent) throw err;
      const mapped = toHttpError(err);
      if (mapped.unexpected) ctx.logger.error('stream failed', { error: String(err) });
      sse.data({ error: { ...mapped.body.error, type: mapped.body.error.code, status: mapped.status } });
      sse.end();
      return;
    }
    if (!sentRole) sse.data(chunk({ role: 'assistant', content: '' }, null));
    sse.data(chunk({}, openAiFinishReason(a.finish_reason), { citations: a.citations, mneme: mnemeExtension(a) }));
    if (body.stream_options?.include_usage) {
      sse.data({
        id: streamId,
        object: 'chat.completion.chunk',
        created,
        model: model.modelId,
        release,
        choices: [],
        usage: { prompt_tokens: a.usage.prompt_tokens, completion_tokens: a.usage.completion_tokens, total_tokens: a.usage.prompt_tokens + a.usage.completion_tokens },
      });
    }
    sse.data('[DONE]');
    sse.end();
  });
  return router;
}
