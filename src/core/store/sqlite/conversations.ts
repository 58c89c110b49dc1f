/** SQLite implementation of {@link ConversationStore} (every statement of this aggregate lives here). */
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
import type { SqliteConnection } from './connection.ts';

interface SummaryRow {
  id: string;
  title: string | null;
  created_at: string;
  updated_at: string;
  messages: number;
}

interface TranscriptRow {
  id: number;
  role: MessageRole;
  content: string;
  created_at: string;
  response_id: string | null;
  citations_json: string | null;
  model_backend: string | null;
  model_id: string | null;
  rating: number | null;
  correction: string | null;
}

/** Parsed JSON text of the log, or `fallback` when it does not parse (old or hand-edited rows). */
export function parseJsonOr<T>(text: string | null | undefined, fallback: T): T {
  if (text === null || text === undefined) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** INSERT of a conversation (no-op when it exists); synchronous, for use inside a write transaction. */
export function insertConversation(c: SqliteConnection, conv: NewConversation): void {
  c.stmt<[string, number, string | null, string, string]>(
    'INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
  ).run(conv.id, conv.userId, conv.title, conv.createdAt, conv.createdAt);
}

/** INSERT of a message; synchronous, for use inside a write transaction. Returns its id. */
export function insertMessage(c: SqliteConnection, m: NewMessage): number {
  const r = c
    .stmt<[string, number, MessageRole, string, string | null, string]>(
      'INSERT INTO messages (conversation_id, user_id, role, content, response_id, created_at) VALUES (?, ?, ?, ?, ?, ?)',
    )
    .run(m.conversationId, m.userId, m.role, m.content, m.responseId, m.createdAt);
  return Number(r.lastInsertRowid);
}

/** UPDATE of a conversation's activity time; synchronous, for use inside a write transaction. */
export function touchConversation(c: SqliteConnection, conversationId: string, updatedAt: string): void {
  c.stmt<[string, string]>('UPDATE conversations SET updated_at = ? WHERE id = ?').run(updatedAt, conversationId);
}

function toTranscriptMessage(r: TranscriptRow): TranscriptMessage {
  const assistant = r.role === 'assistant';
  return {
    id: r.id,
    role: r.role,
    content: r.content,
    createdAt: r.created_at,
    responseId: r.response_id,
    citations: assistant ? parseJsonOr<StoredCitation[]>(r.citations_json, []) : [],
    model: assistant && r.model_backend && r.model_id ? { backend: r.model_backend, id: r.model_id } : null,
    rating: r.rating === 1 || r.rating === -1 ? r.rating : null,
    correction: r.correction,
  };
}

export class SqliteConversationStore implements ConversationStore {
  constructor(protected readonly c: SqliteConnection) {}

  async create(conv: NewConversation): Promise<void> {
    await this.c.write(() => insertConversation(this.c, conv));
  }

  async touch(conversationId: string, updatedAt: string): Promise<void> {
    await this.c.write(() => touchConversation(this.c, conversationId, updatedAt));
  }

  async appendMessage(m: NewMessage): Promise<number> {
    return this.c.write(() => {
      const id = insertMessage(this.c, m);
      touchConversation(this.c, m.conversationId, m.createdAt);
      return id;
    });
  }

  async listPage(userId: number, opts: { limit: number; before?: ConversationCursor | undefined }): Promise<ConversationSummary[]> {
    const at = opts.before?.updatedAt ?? null;
    const id = opts.before?.id ?? null;
    const rows = this.c
      .stmt<{ user: number; at: string | null; id: string | null; limit: number }, SummaryRow>(
        `SELECT c.id, c.title, c.created_at, c.updated_at,
                (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages
           FROM conversations c
          WHERE c.user_id = @user
            AND (@at IS NULL OR c.updated_at < @at OR (c.updated_at = @at AND @id IS NOT NULL AND c.id < @id))
          ORDER BY c.updated_at DESC, c.id DESC
          LIMIT @limit`,
      )
      .all({ user: userId, at, id, limit: opts.limit });
    return rows.map((r) => ({ id: r.id, title: r.title, createdAt: r.created_at, updatedAt: r.updated_at, messages: r.messages }));
  }

  async transcript(userId: number, conversationId: string, maxMessages: number): Promise<{ conversation: ConversationHeader; messages: TranscriptMessage[] } | null> {
    return this.c.read(() => {
      const conv = this.c
        .stmt<[string, number], Omit<SummaryRow, 'messages'>>('SELECT id, title, created_at, updated_at FROM conversations WHERE id = ? AND user_id = ?')
        .get(conversationId, userId);
      if (!conv) return null;
      const rows = this.c
        .stmt<[string, number, number], TranscriptRow>(
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
        .all(conversationId, userId, maxMessages);
      return {
        conversation: { id: conv.id, title: conv.title, createdAt: conv.created_at, updatedAt: conv.updated_at },
        messages: rows.map(toTranscriptMessage),
      };
    });
  }

  async history(userId: number, conversationId: string, maxMessages: number): Promise<ConversationHistory | null> {
    return this.c.read(() => {
      const owner = this.c.stmt<[string], number>('SELECT user_id FROM conversations WHERE id = ?').pluck().get(conversationId);
      if (owner !== userId) return null;
      const turnIndex = this.c.stmt<[string], number>("SELECT count(*) FROM messages WHERE conversation_id = ? AND role = 'user'").pluck().get(conversationId) ?? 0;
      const rows = this.c
        .stmt<[string, number], { role: MessageRole; content: string }>('SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?')
        .all(conversationId, maxMessages);
      return { turnIndex, history: rows.reverse() };
    });
  }

  async lastUserMessageAt(userId: number): Promise<string | null> {
    return this.c.stmt<[number], string | null>("SELECT max(created_at) FROM messages WHERE user_id = ? AND role = 'user'").pluck().get(userId) ?? null;
  }
}
