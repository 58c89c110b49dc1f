/**
 * The signed-in user's conversations, for the chat page's sidebar (docs/admin-api.md):
 * - GET /v1/conversations?limit=N&before=CURSOR → `{conversations:[{id, title, created_at, updated_at,
 *   messages}], next_before}` newest activity first (`limit` 1..MAX_CONVERSATIONS_PAGE, default
 *   DEFAULT_CONVERSATIONS_PAGE). `before` is the previous page's `next_before` (`<updated_at>|<id>`,
 *   so conversations updated in the same millisecond are neither skipped nor repeated) or a plain
 *   ISO datetime; `next_before` is null on the last page.
 * - GET /v1/conversations/:id/messages → `{conversation:{id, title, created_at, updated_at},
 *   messages:[{id, role, content, created_at, response_id, citations, model, rating, correction}]}`
 *   oldest first; assistant turns carry their citations (from the prediction log) and the user's
 *   current rating (latest feedback row) so the page can redraw them exactly.
 *
 * User-scoped: another user's conversation id answers 404 exactly like an unknown id.
 * Mount AFTER `authenticate` (src/chat/http/auth.ts): the routes read `res.locals.user` via
 * `currentUser`, which throws InternalError when authentication did not run.
 */
import { Router } from 'express';
import type { Request } from 'express';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../../../core/errors.ts';
import type { ConversationCursor } from '../../../core/store/conversations.ts';
import type { Store } from '../../../core/store/index.ts';
import type { Citation } from '../../citations.ts';
import { currentUser } from '../auth.ts';

/** Default conversations per page. */
export const DEFAULT_CONVERSATIONS_PAGE = 50;
/** Most conversations per page. */
export const MAX_CONVERSATIONS_PAGE = 200;
/** Most messages returned for one conversation (the newest ones; older ones are dropped). */
export const MAX_MESSAGES_PER_CONVERSATION = 1000;
/** Longest accepted conversation id, in characters (same bound as POST /v1/chat). */
const MAX_ID_CHARS = 128;

/** A page cursor: the last row's `updated_at` and, to break ties, its id. */
export type PageCursor = ConversationCursor;

const isoSchema = z.iso.datetime({ offset: true });

/** `<iso>|<id>` or `<iso>` → cursor, or null when malformed. Pure. */
export function parseCursor(text: string): PageCursor | null {
  const bar = text.indexOf('|');
  const updatedAt = bar === -1 ? text : text.slice(0, bar);
  const id = bar === -1 ? null : text.slice(bar + 1);
  if (!isoSchema.safeParse(updatedAt).success || (id !== null && (id.length === 0 || id.length > MAX_ID_CHARS))) return null;
  return { updatedAt, id };
}

const listQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_CONVERSATIONS_PAGE).default(DEFAULT_CONVERSATIONS_PAGE),
  before: z
    .string()
    .transform((v, ctx) => {
      const c = parseCursor(v);
      if (!c) ctx.addIssue({ code: 'custom', message: 'expected a next_before value or an ISO-8601 datetime' });
      return c as PageCursor;
    })
    .optional(),
});

export interface ConversationSummary {
  id: string;
  title: string | null;
  created_at: string;
  updated_at: string;
  /** Messages shown in the transcript (user + assistant). */
  messages: number;
}

export interface ConversationMessage {
  id: number;
  role: 'user' | 'assistant';
  content: string;
  created_at: string;
  response_id: string | null;
  /** Assistant turns: the citations of the answer; [] for user turns. */
  citations: Citation[];
  /** Assistant turns: the model that answered; null for user turns. */
  model: { backend: string; id: string } | null;
  /** Assistant turns: the user's current rating (latest feedback row), null when unrated. */
  rating: 1 | -1 | null;
  /** The correction attached to that latest rating, if any. */
  correction: string | null;
}

/**
 * Validates the query string with `schema`.
 * @throws ValidationError naming the first bad parameter.
 */
export function parseQuery<S extends z.ZodType>(schema: S, req: Request): z.infer<S> {
  const res = schema.safeParse(req.query);
  if (!res.success) {
    const issue = res.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'query';
    throw new ValidationError(`${where}: ${issue?.message ?? 'invalid'}`, { cause: res.error });
  }
  return res.data;
}

/** Conversations of `userId`, newest activity first (ties: id descending), after `before`. */
export async function listConversations(
  store: Pick<Store, 'conversations'>,
  userId: number,
  opts: { limit: number; before?: PageCursor | undefined },
): Promise<ConversationSummary[]> {
  const rows = await store.conversations.listPage(userId, opts);
  return rows.map((r) => ({ id: r.id, title: r.title, created_at: r.createdAt, updated_at: r.updatedAt, messages: r.messages }));
}

/**
 * The transcript of one conversation of `userId`, oldest first.
 * @throws NotFoundError for an unknown id or another user's conversation (same message for both).
 */
export async function conversationMessages(
  store: Pick<Store, 'conversations'>,
  userId: number,
  conversationId: string,
): Promise<{ conversation: Omit<ConversationSummary, 'messages'>; messages: ConversationMessage[] }> {
  const found = await store.conversations.transcript(userId, conversationId, MAX_MESSAGES_PER_CONVERSATION);
  if (!found) throw new NotFoundError(`no conversation ${conversationId}`);
  const c = found.conversation;
  return {
    conversation: { id: c.id, title: c.title, created_at: c.createdAt, updated_at: c.updatedAt },
    messages: found.messages.map((m) => ({
      id: m.id,
      role: m.role,
      content: m.content,
      created_at: m.createdAt,
      response_id: m.responseId,
      citations: m.citations,
      model: m.model,
      rating: m.rating,
      correction: m.correction,
    })),
  };
}

/** Router with the two routes above. Mount after `authenticate`. */
export function conversationsRouter(deps: { store: Pick<Store, 'conversations'> }): Router {
  const router = Router({ strict: true });
  router.get('/v1/conversations', async (req, res) => {
    const q = parseQuery(listQuerySchema, req);
    const conversations = await listConversations(deps.store, currentUser(res).id, q);
    const last = conversations.at(-1);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ conversations, next_before: conversations.length === q.limit && last ? `${last.updated_at}|${last.id}` : null });
  });
  router.get('/v1/conversations/:id/messages', async (req, res) => {
    const id = req.params.id;
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS) throw new NotFoundError('no such conversation');
    res.setHeader('Cache-Control', 'no-store');
    res.json(await conversationMessages(deps.store, currentUser(res).id, id));
  });
  return router;
}
