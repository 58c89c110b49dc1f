/**
 * The prediction log (one row per answer attempt) and feedback on it.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/predictions.ts.
 */
import type { ChatMessage, SamplingParams } from '../llm/types.ts';

/** One retrieved chunk as logged: enough to check the answer against the corpus later. */
export interface LoggedChunk {
  chunk_id: number;
  document_id: number;
  content_sha256: string;
  score: number;
  bm25_rank: number | null;
  dense_rank: number | null;
  /** False when the chunk was retrieved but dropped to fit the model's context budget. */
  in_context: boolean;
}

/** A citation as logged with an answer (the shape of the chat API's citations). */
export interface StoredCitation {
  /** The number as written in the answer. */
  n: number;
  document_id: number;
  chunk_id: number;
  /** Chunks merged into the citation, heading path, PDF page and relevance label (absent in rows logged before them). */
  chunk_ids?: number[];
  heading?: string;
  page?: number | null;
  relevance?: 'high' | 'medium' | 'low';
  source: string;
  title: string;
  score: number;
  snippet: string;
}

export type ResponseStatus = 'ok' | 'error' | 'cancelled';

/** Everything one answer attempt writes. Fields mirror `responses` in 001_core.sql. */
export interface PredictionRecord {
  id: string;
  userId: number;
  /**
   * The user's `createdAt` as authenticated: when set, the row is written only if user `userId` is
   * still that user (an erased user's id can be reused by a later one). Default: any user with the id.
   */
  userCreatedAt?: string | undefined;
  conversationId: string;
  /** True when this request started the conversation (the row is created in the same transaction). */
  newConversation: boolean;
  turnIndex: number;
  /** When the request started (ISO-8601 UTC). */
  createdAt: string;
  endpoint: 'chat' | 'chat.completions';
  /** The validated request, stored as JSON (what cannot be serialized is replaced by a placeholder). */
  request: unknown;
  query: string;
  queryVector: Float32Array | null;
  history: ChatMessage[];
  collection: string | null;
  topK: number;
  retrieved: LoggedChunk[];
  features: { precomputed: Record<string, unknown>; on_demand: Record<string, unknown> };
  promptName: string;
  promptSha256: string;
  renderedPrompt: ChatMessage[];
  modelBackend: string;
  modelId: string;
  sampling: SamplingParams | null;
  answer: string | null;
  citations: StoredCitation[];
  timings: Record<string, number | null>;
  promptTokens: number | null;
  completionTokens: number | null;
  status: ResponseStatus;
  errorCode: string | null;
  errorMessage: string | null;
  /** The release that answered (issue 15); null/absent for rows written without one. */
  release?: string | null | undefined;
  /** The experiment arm that routed the request to it: 'live' or 'candidate'; null/absent without releases. */
  arm?: 'live' | 'candidate' | null | undefined;
  /**
   * How the answer ended (issue 13): 'stop', 'length', or 'no_evidence' when the documents did not
   * cover the question; null/absent for failed attempts.
   */
  finishReason?: 'stop' | 'length' | 'no_evidence' | null | undefined;
  /** Warnings about the answer, e.g. 'uncited' (it cites no passage); absent = none recorded. */
  flags?: string[] | undefined;
  /** The retrieval evidence the abstention decision read (src/chat/evidence.ts); null/absent when not assessed. */
  evidence?: unknown;
}

/**
 * Outcome of a prediction-log write. A row is dropped, on purpose, only when its user was erased
 * while the answer ran (or a new user got the erased one's id since): nothing of an erased user is
 * written back.
 */
export type PredictionWriteOutcome = { written: true } | { written: false; reason: 'user_erased' };

export interface NewFeedback {
  responseId: string;
  userId: number;
  rating: 1 | -1;
  correction: string | null;
  /** ISO-8601 UTC. */
  createdAt: string;
}

export interface FeedbackRecord extends NewFeedback {
  id: number;
}

/** Longest conversation title stored (the first message, truncated), in characters. */
export const CONVERSATION_TITLE_CHARS = 80;

export interface PredictionStore {
  /**
   * Writes the prediction-log row in one transaction with: the conversation when new (titled by the
   * query's first CONVERSATION_TITLE_CHARS characters), for an 'ok' answer the user and assistant
   * messages, and the conversation's `updatedAt`. Failed or cancelled attempts leave the transcript
   * untouched. JSON fields are serialized defensively, so request content never fails the write.
   * Checks inside the transaction that the user still exists (and is the same user, see userCreatedAt);
   * otherwise writes nothing and says so.
   */
  write(r: PredictionRecord): Promise<PredictionWriteOutcome>;
  /** True when response `responseId` exists and belongs to `userId`. */
  isOwnedBy(responseId: string, userId: number): Promise<boolean>;
  /**
   * Appends a feedback row (append-only; the latest per response and user is the current rating),
   * checking ownership in the same transaction.
   * @returns null (nothing written) when the response does not exist or belongs to someone else.
   */
  addFeedback(f: NewFeedback): Promise<FeedbackRecord | null>;
}
