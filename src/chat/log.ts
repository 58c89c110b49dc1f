/**
 * Two logs live here:
 * - the PREDICTION LOG: one `responses` row per answer attempt (ok, error or cancelled), written with
 *   the conversation and its `messages` rows in one transaction (`writePredictionLog`);
 * - the server's operational log lines (`Logger`, JSON lines on stderr), for things a user of the
 *   HTTP API must not see (stack traces, dropped context chunks).
 */
import type { Writable } from 'node:stream';
import type { Db } from '../core/db.ts';
import { vectorToBlob } from '../core/db.ts';
import type { ChatMessage, SamplingParams } from '../core/llm/types.ts';
import type { Citation } from './citations.ts';

/** Operational log; every method takes a message and optional structured fields. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Logger writing one JSON object per line to `out` (stderr in `mneme serve`). */
export function jsonLineLogger(out: Writable): Logger {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) => {
    out.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** Logger that drops everything (tests, embedding). */
export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };

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

export type ResponseStatus = 'ok' | 'error' | 'cancelled';

/** Everything one answer attempt writes. Fields mirror `responses` in 001_core.sql. */
export interface PredictionRecord {
  id: string;
  userId: number;
  conversationId: string;
  /** True when this request started the conversation (the row is created in the same transaction). */
  newConversation: boolean;
  turnIndex: number;
  createdAt: string;
  endpoint: 'chat' | 'chat.completions';
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
  citations: Citation[];
  timings: Record<string, number | null>;
  promptTokens: number | null;
  completionTokens: number | null;
  status: ResponseStatus;
  errorCode: string | null;
  errorMessage: string | null;
}

/** Longest conversation title stored (first message, truncated), in characters. */
export const CONVERSATION_TITLE_CHARS = 80;

/**
 * Writes the prediction-log row, creates the conversation when new and, for a successful answer,
 * appends the user and assistant `messages` (failed or cancelled attempts leave the transcript
 * untouched: they are in `responses` only, so they never become history for the next turn).
 * One transaction: either all of it is stored or none.
 */
export function writePredictionLog(db: Db, r: PredictionRecord): void {
  const tx = db.transaction(() => {
    if (r.newConversation) {
      db.prepare('INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)').run(
        r.conversationId,
        r.userId,
        r.query.slice(0, CONVERSATION_TITLE_CHARS),
        r.createdAt,
        r.createdAt,
      );
    }
    db.prepare(
      `INSERT INTO responses (id, user_id, conversation_id, turn_index, created_at, endpoint, request_json, query, query_vector,
         history_json, collection, top_k, retrieved_json, features_json, prompt_name, prompt_sha256, rendered_prompt_json,
         model_backend, model_id, sampling_json, answer, citations_json, timings_json, prompt_tokens, completion_tokens,
         status, error_code, error_message)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      r.id,
      r.userId,
      r.conversationId,
      r.turnIndex,
      r.createdAt,
      r.endpoint,
      JSON.stringify(r.request),
      r.query,
      r.queryVector ? vectorToBlob(r.queryVector) : null,
      JSON.stringify(r.history),
      r.collection,
      r.topK,
      JSON.stringify(r.retrieved),
      JSON.stringify(r.features),
      r.promptName,
      r.promptSha256,
      JSON.stringify(r.renderedPrompt),
      r.modelBackend,
      r.modelId,
      JSON.stringify(r.sampling ?? {}),
      r.answer,
      JSON.stringify(r.citations),
      JSON.stringify(r.timings),
      r.promptTokens,
      r.completionTokens,
      r.status,
      r.errorCode,
      r.errorMessage,
    );
    const finishedAt = new Date().toISOString();
    if (r.status === 'ok') {
      const msg = db.prepare('INSERT INTO messages (conversation_id, user_id, role, content, response_id, created_at) VALUES (?, ?, ?, ?, ?, ?)');
      msg.run(r.conversationId, r.userId, 'user', r.query, r.id, r.createdAt);
      msg.run(r.conversationId, r.userId, 'assistant', r.answer ?? '', r.id, finishedAt);
    }
    db.prepare('UPDATE conversations SET updated_at = ? WHERE id = ?').run(finishedAt, r.conversationId);
  });
  tx.immediate();
}
