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
import type { Db } from '../../../core/db.ts';
import { NotFoundError, ValidationError } from '../../../core/errors.ts';
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
export interface PageCursor {
  updatedAt: string;
  id: string | null;
}

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

/** JSON text from the log, or `fallback` when it does not parse (old or hand-edited rows). */
export function safeJson<T>(text: string | null | undefined, fallback: T): T {
  if (text === null || text === undefined) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** Conversations of `userId`, newest activity first (ties: id descending), after `before`. */
export function listConversations(db: Db, userId: number, opts: { limit: number; before?: PageCursor | undefined }): ConversationSummary[] {
  const b = opts.before;
  return db
    .prepare(
      `SELECT c.id, c.title, c.created_at, c.updated_at,
              (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages
         FROM conversations c
        WHERE c.user_id = ?
          AND (? IS NULL OR c.updated_at < ? OR (c.updated_at = ? AND ? IS NOT NULL AND c.id < ?))
        ORDER BY c.updated_at DESC, c.id DESC
        LIMIT ?`,
    )
    .all(userId, b?.updatedAt ?? null, b?.updatedAt ?? null, b?.updatedAt ?? null, b?.id ?? null, b?.id ?? null, opts.limit) as ConversationSummary[];
}

interface MessageRow {
  id: number;
  role: 'user' | 'assistant';
  content: string;
  created_at: string;
  response_id: string | null;
  citations_json: string | null;
  model_backend: string | null;
  model_id: string | null;
  rating: number | null;
  correction: string | null;
}

/**
 * The transcript of one conversation of `userId`, oldest first.
 * @throws NotFoundError for an unknown id or another user's conversation (same message for both).
 */
export function conversationMessages(db: Db, userId: number, conversationId: string): { conversation: Omit<ConversationSummary, 'messages'>; messages: ConversationMessage[] } {
  const conversation = db
    .prepare('SELECT id, title, created_at, updated_at FROM conversations WHERE id = ? AND user_id = ?')
    .get(conversationId, userId) as Omit<ConversationSummary, 'messages'> | undefined;
  if (!conversation) throw new NotFoundError(`no conversation ${conversationId}`);
  const rows = db
    .prepare(
      `SELECT * FROM (
         SELECT m.id, m.role, m.content, m.created_at, m.response_id,
                CASE WHEN m.role = 'assistant' THEN r.citations_json END AS citations_json,
                CASE WHEN m.role = 'assistant' THEN r.model_backend END AS model_backend,
                CASE WHEN m.role = 'assistant' THEN r.model_id END AS model_id,
                f.rating, f.correction
           FROM messages m
           LEFT JOIN responses r ON r.id = m.response_id
           LEFT JOIN feedback f ON m.role = 'assistant' AND f.id = (
             SELECT max(id) FROM feedback WHERE response_id = m.response_id AND user_id = m.user_id)
          WHERE m.conversation_id = ? AND m.user_id = ?
          ORDER BY m.id DESC
          LIMIT ?)
        ORDER BY id`,
    )
    .all(conversationId, userId, MAX_MESSAGES_PER_CONVERSATION) as MessageRow[];
  const messages = rows.map(
    (r): ConversationMessage => ({
      id: r.id,
      role: r.role,
      content: r.content,
      created_at: r.created_at,
      response_id: r.response_id,
      citations: r.role === 'assistant' ? safeJson<Citation[]>(r.citations_json, []) : [],
      model: r.role === 'assistant' && r.model_backend && r.model_id ? { backend: r.model_backend, id: r.model_id } : null,
      rating: r.rating === 1 || r.rating === -1 ? r.rating : null,
      correction: r.correction,
    }),
  );
  return { conversation, messages };
}

/** Router with the two routes above. Mount after `authenticate`. */
export function conversationsRouter(deps: { db: Db }): Router {
  const router = Router({ strict: true });
  router.get('/v1/conversations', (req, res) => {
    const q = parseQuery(listQuerySchema, req);
    const conversations = listConversations(deps.db, currentUser(res).id, q);
    const last = conversations.at(-1);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ conversations, next_before: conversations.length === q.limit && last ? `${last.updated_at}|${last.id}` : null });
  });
  router.get('/v1/conversations/:id/messages', (req, res) => {
    const id = req.params.id;
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_CHARS) throw new NotFoundError('no such conversation');
    res.setHeader('Cache-Control', 'no-store');
    res.json(conversationMessages(deps.db, currentUser(res).id, id));
  });
  return router;
}
