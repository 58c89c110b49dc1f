/**
 * PostgreSQL implementation of {@link ConversationStore} (schema: migrations/postgres/035_users_chat.sql).
 * Same semantics as sqlite/conversations.ts; reads of several statements run in one snapshot
 * (a REPEATABLE READ, READ ONLY transaction), as the SQLite engine's `read()` does.
 */
import type {
  ConversationCursor,
  ConversationHeader,
  ConversationHistory,
  ConversationStore,
  ConversationSummary,
  MessageRole,
  NewConversation,
  NewMessage,
  TranscriptMessage,
} from '../conversations.ts';
import type { StoredCitation } from '../predictions.ts';
import type { PgQueries, PgTx, PostgresConnection } from './connection.ts';

/** What PostgreSQL's `text` cannot hold (U+0000), replaced by U+FFFD REPLACEMENT CHARACTER. */
const NUL = /\u0000/g;
const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * `s` as PostgreSQL `text` can store it: every U+0000 replaced by U+FFFD (PostgreSQL rejects NUL
 * in text; SQLite keeps it). Free text that reaches the database (questions, answers, titles,
 * corrections) goes through this, so such content never fails a write. Pure.
 */
export function pgText(s: string): string;
export function pgText(s: string | null): string | null;
export function pgText(s: string | null): string | null {
  return s !== null && s.includes('\u0000') ? s.replace(NUL, REPLACEMENT_CHARACTER) : s;
}

/**
 * Runs `fn` in one read-only REPEATABLE READ transaction: every statement sees the same snapshot.
 * @throws whatever the server throws
 */
export function snapshot<T>(c: PostgresConnection, fn: (q: PgTx) => Promise<T>): Promise<T> {
  return c.tx(async (q) => {
    await q.exec('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    return fn(q);
  });
}

interface HeaderRow {
  id: string;
  title: string | null;
  created_at: string;
  updated_at: string;
}

interface SummaryRow extends HeaderRow {
  messages: number;
}

interface TranscriptRow {
  id: number;
  role: MessageRole;
  content: string;
  created_at: string;
  response_id: string | null;
  /** json column: parsed by pg. */
  citations_json: unknown;
  model_backend: string | null;
  model_id: string | null;
  rating: number | null;
  correction: string | null;
}

/** INSERT of a conversation (no-op when it exists). */
export async function insertConversation(q: PgQueries, conv: NewConversation): Promise<void> {
  await q.run(
    'INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING',
    [pgText(conv.id), conv.userId, pgText(conv.title), conv.createdAt],
  );
}

/** INSERT of a message; returns its id. */
export async function insertMessage(q: PgQueries, m: NewMessage): Promise<number> {
  const row = await q.one<{ id: number }>(
    'INSERT INTO messages (conversation_id, user_id, role, content, response_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
    [pgText(m.conversationId), m.userId, m.role, pgText(m.content), pgText(m.responseId), m.createdAt],
  );
  return row!.id;
}

/** UPDATE of a conversation's activity time. */
export async function touchConversation(q: PgQueries, conversationId: string, updatedAt: string): Promise<void> {
  await q.run('UPDATE conversations SET updated_at = $1 WHERE id = $2', [updatedAt, pgText(conversationId)]);
}

function toTranscriptMessage(r: TranscriptRow): TranscriptMessage {
  const assistant = r.role === 'assistant';
  return {
    id: r.id,
    role: r.role,
    content: r.content,
    createdAt: r.created_at,
    responseId: r.response_id,
    citations: assistant ? ((r.citations_json ?? []) as StoredCitation[]) : [],
    model: assistant && r.model_backend && r.model_id ? { backend: r.model_backend, id: r.model_id } : null,
    rating: r.rating === 1 || r.rating === -1 ? r.rating : null,
    correction: r.correction,
  };
}

const SQL_LIST_PAGE = `SELECT c.id, c.title, c.created_at, c.updated_at,
         (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages
    FROM conversations c
   WHERE c.user_id = $1
     AND ($2::timestamptz IS NULL OR c.updated_at < $2::timestamptz
          OR (c.updated_at = $2::timestamptz AND $3::text IS NOT NULL AND c.id < $3::text))
   ORDER BY c.updated_at DESC, c.id DESC
   LIMIT $4`;

const SQL_TRANSCRIPT = `SELECT * FROM (
    SELECT m.id, m.role, m.content, m.created_at, m.response_id,
           CASE WHEN m.role = 'assistant' THEN r.citations_json END AS citations_json,
           CASE WHEN m.role = 'assistant' THEN r.model_backend END AS model_backend,
           CASE WHEN m.role = 'assistant' THEN r.model_id END AS model_id,
           f.rating, f.correction
      FROM messages m
      LEFT JOIN responses r ON r.id = m.response_id
      LEFT JOIN LATERAL (
        SELECT rating, correction FROM feedback
         WHERE response_id = m.response_id AND user_id = m.user_id
         ORDER BY id DESC LIMIT 1) f ON m.role = 'assistant'
     WHERE m.conversation_id = $1 AND m.user_id = $2
     ORDER BY m.id DESC
     LIMIT $3) t
  ORDER BY id`;

export class PostgresConversationStore implements ConversationStore {
  constructor(protected readonly c: PostgresConnection) {}

  async create(conv: NewConversation): Promise<void> {
    await insertConversation(this.c, conv);
  }

  async touch(conversationId: string, updatedAt: string): Promise<void> {
    await touchConversation(this.c, conversationId, updatedAt);
  }

  async appendMessage(m: NewMessage): Promise<number> {
    return this.c.tx(async (q) => {
      const id = await insertMessage(q, m);
      await touchConversation(q, m.conversationId, m.createdAt);
      return id;
    });
  }

  async listPage(userId: number, opts: { limit: number; before?: ConversationCursor | undefined }): Promise<ConversationSummary[]> {
    const at = opts.before?.updatedAt ?? null;
    const id = opts.before?.id ?? null;
    const rows = await this.c.rows<SummaryRow>(SQL_LIST_PAGE, [userId, at, id === null ? null : pgText(id), opts.limit]);
    return rows.map((r) => ({ id: r.id, title: r.title, createdAt: r.created_at, updatedAt: r.updated_at, messages: r.messages }));
  }

  async transcript(userId: number, conversationId: string, maxMessages: number): Promise<{ conversation: ConversationHeader; messages: TranscriptMessage[] } | null> {
    const convId = pgText(conversationId);
    return snapshot(this.c, async (q) => {
      const conv = await q.one<HeaderRow>('SELECT id, title, created_at, updated_at FROM conversations WHERE id = $1 AND user_id = $2', [convId, userId]);
      if (!conv) return null;
      const rows = await q.rows<TranscriptRow>(SQL_TRANSCRIPT, [convId, userId, maxMessages]);
      return {
        conversation: { id: conv.id, title: conv.title, createdAt: conv.created_at, updatedAt: conv.updated_at },
        messages: rows.map(toTranscriptMessage),
      };
    });
  }

  async history(userId: number, conversationId: string, maxMessages: number): Promise<ConversationHistory | null> {
    const convId = pgText(conversationId);
    return snapshot(this.c, async (q) => {
      const head = await q.one<{ owner: number | null; turns: number }>(
        `SELECT (SELECT user_id FROM conversations WHERE id = $1) AS owner,
                (SELECT count(*) FROM messages WHERE conversation_id = $1 AND role = 'user') AS turns`,
        [convId],
      );
      if (!head || head.owner !== userId) return null;
      const rows = await q.rows<{ role: MessageRole; content: string }>(
        'SELECT role, content FROM messages WHERE conversation_id = $1 ORDER BY id DESC LIMIT $2',
        [convId, maxMessages],
      );
      return { turnIndex: head.turns, history: rows.reverse() };
    });
  }

  async lastUserMessageAt(userId: number): Promise<string | null> {
    const row = await this.c.one<{ at: string | null }>("SELECT max(created_at) AS at FROM messages WHERE user_id = $1 AND role = 'user'", [userId]);
    return row?.at ?? null;
  }
}
