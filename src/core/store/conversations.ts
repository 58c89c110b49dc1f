/**
 * Conversations and their messages (the transcripts users see).
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/conversations.ts.
 */
import type { StoredCitation } from './predictions.ts';

export type MessageRole = 'user' | 'assistant';

/** One conversation in a user's list. Times are ISO-8601 UTC. */
export interface ConversationSummary {
  id: string;
  title: string | null;
  createdAt: string;
  updatedAt: string;
  /** Messages in the transcript (user + assistant). */
  messages: number;
}

export type ConversationHeader = Omit<ConversationSummary, 'messages'>;

/** A page cursor: the last row's `updatedAt` and, to break ties, its id (null: time only). */
export interface ConversationCursor {
  updatedAt: string;
  id: string | null;
}

/** One transcript message, with what the page shows next to an assistant turn. */
export interface TranscriptMessage {
  id: number;
  role: MessageRole;
  content: string;
  createdAt: string;
  responseId: string | null;
  /** Assistant turns: the answer's citations from the prediction log; [] for user turns. */
  citations: StoredCitation[];
  /** Assistant turns: the model that answered; null for user turns. */
  model: { backend: string; id: string } | null;
  /** Assistant turns: the user's current rating (latest feedback row); null when unrated. */
  rating: 1 | -1 | null;
  /** The correction attached to that latest rating. */
  correction: string | null;
}

/** What the answer pipeline needs of an existing conversation. */
export interface ConversationHistory {
  /** Completed turns so far (user messages). */
  turnIndex: number;
  /** The newest `maxMessages` messages, oldest first. */
  history: Array<{ role: MessageRole; content: string }>;
}

export interface NewConversation {
  id: string;
  userId: number;
  title: string | null;
  /** ISO-8601 UTC; also the first `updatedAt`. */
  createdAt: string;
}

export interface NewMessage {
  conversationId: string;
  userId: number;
  role: MessageRole;
  content: string;
  responseId: string | null;
  createdAt: string;
}

export interface ConversationStore {
  /** Creates the conversation unless it exists (then nothing changes). */
  create(c: NewConversation): Promise<void>;
  /** Sets `updatedAt` of the conversation (ISO-8601 UTC). */
  touch(conversationId: string, updatedAt: string): Promise<void>;
  /** Appends one message and touches its conversation; returns the message id. */
  appendMessage(m: NewMessage): Promise<number>;
  /** Conversations of `userId`, newest activity first (ties: id descending), strictly after `before`. */
  listPage(userId: number, opts: { limit: number; before?: ConversationCursor | undefined }): Promise<ConversationSummary[]>;
  /**
   * The transcript of a conversation of `userId`, oldest first, at most `maxMessages` (the newest).
   * @returns null for an unknown id or another user's conversation (callers answer both alike).
   */
  transcript(userId: number, conversationId: string, maxMessages: number): Promise<{ conversation: ConversationHeader; messages: TranscriptMessage[] } | null>;
  /**
   * Turn count and recent messages of a conversation of `userId`.
   * @returns null for an unknown id or another user's conversation.
   */
  history(userId: number, conversationId: string, maxMessages: number): Promise<ConversationHistory | null>;
  /** When `userId` last asked something (their latest user message), or null. */
  lastUserMessageAt(userId: number): Promise<string | null>;
}
