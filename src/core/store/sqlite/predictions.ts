/** SQLite implementation of {@link PredictionStore} (every statement of this aggregate lives here). */
import type { FeedbackRecord, NewFeedback, PredictionRecord, PredictionStore, PredictionWriteOutcome } from '../predictions.ts';
import { CONVERSATION_TITLE_CHARS } from '../predictions.ts';
import type { SqliteConnection } from './connection.ts';
import { insertConversation, insertMessage, touchConversation } from './conversations.ts';

/** Deepest nesting of a logged JSON value; deeper values are replaced by DEPTH_PLACEHOLDER. */
export const MAX_LOGGED_JSON_DEPTH = 64;
export const DEPTH_PLACEHOLDER = '[too deeply nested]';
export const CIRCULAR_PLACEHOLDER = '[circular]';
export const UNSERIALIZABLE_PLACEHOLDER = '[unserializable]';

/**
 * A JSON-safe copy of `value`: nesting cut at `maxDepth` (placeholder), cycles replaced, BigInt as
 * a decimal string, `toJSON` honoured, getters that throw replaced. Never throws. Pure.
 */
function prune(value: unknown, depth: number, maxDepth: number, seen: Set<object>): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (depth >= maxDepth) return DEPTH_PLACEHOLDER;
  if (seen.has(value)) return CIRCULAR_PLACEHOLDER;
  try {
    const withToJson = value as { toJSON?: unknown };
    if (typeof withToJson.toJSON === 'function') return prune((withToJson.toJSON as () => unknown)(), depth, maxDepth, seen);
    seen.add(value);
    try {
      if (Array.isArray(value)) return value.map((v) => prune(v, depth + 1, maxDepth, seen));
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) out[key] = prune((value as Record<string, unknown>)[key], depth + 1, maxDepth, seen);
      return out;
    } finally {
      seen.delete(value);
    }
  } catch {
    return UNSERIALIZABLE_PLACEHOLDER;
  }
}

/**
 * JSON text of `value` for a log column that never fails on content: depth-limited (see prune),
 * with `fallback` (default `"[unserializable]"` as JSON) when even that cannot be serialized.
 */
export function toLoggedJson(value: unknown, maxDepth = MAX_LOGGED_JSON_DEPTH, fallback = JSON.stringify(UNSERIALIZABLE_PLACEHOLDER)): string {
  try {
    return JSON.stringify(prune(value, 0, maxDepth, new Set())) ?? 'null';
  } catch {
    return fallback;
  }
}

/** Float32Array → BLOB bytes (a view of the same memory). */
function vectorBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

type ResponseParams = Record<(typeof RESPONSE_COLUMNS)[number], string | number | Buffer | null>;

function responseParams(r: PredictionRecord): ResponseParams {
  return {
    id: r.id,
    user_id: r.userId,
    conversation_id: r.conversationId,
    turn_index: r.turnIndex,
    created_at: r.createdAt,
    endpoint: r.endpoint,
    request_json: toLoggedJson(r.request),
    query: r.query,
    query_vector: r.queryVector ? vectorBlob(r.queryVector) : null,
    history_json: toLoggedJson(r.history),
    collection: r.collection,
    top_k: r.topK,
    retrieved_json: toLoggedJson(r.retrieved),
    features_json: toLoggedJson(r.features),
    prompt_name: r.promptName,
    prompt_sha256: r.promptSha256,
    rendered_prompt_json: toLoggedJson(r.renderedPrompt),
    model_backend: r.modelBackend,
    model_id: r.modelId,
    sampling_json: toLoggedJson(r.sampling ?? {}),
    answer: r.answer,
    citations_json: toLoggedJson(r.citations),
    timings_json: toLoggedJson(r.timings),
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    status: r.status,
    error_code: r.errorCode,
    error_message: r.errorMessage,
    release: r.release ?? null,
    arm: r.arm ?? null,
    finish_reason: r.finishReason ?? null,
    flags_json: r.flags === undefined ? null : toLoggedJson(r.flags),
    evidence_json: r.evidence === undefined || r.evidence === null ? null : toLoggedJson(r.evidence),
  };
}

const RESPONSE_COLUMNS = [
  'id', 'user_id', 'conversation_id', 'turn_index', 'created_at', 'endpoint', 'request_json', 'query', 'query_vector',
  'history_json', 'collection', 'top_k', 'retrieved_json', 'features_json', 'prompt_name', 'prompt_sha256',
  'rendered_prompt_json', 'model_backend', 'model_id', 'sampling_json', 'answer', 'citations_json', 'timings_json',
  'prompt_tokens', 'completion_tokens', 'status', 'error_code', 'error_message', 'release', 'arm',
  'finish_reason', 'flags_json', 'evidence_json',
] as const;
const INSERT_RESPONSE_SQL = `INSERT INTO responses (${RESPONSE_COLUMNS.join(', ')}) VALUES (${RESPONSE_COLUMNS.map((c) => `@${c}`).join(', ')})`;

export class SqlitePredictionStore implements PredictionStore {
  constructor(protected readonly c: SqliteConnection) {}

  async write(r: PredictionRecord): Promise<PredictionWriteOutcome> {
    // Serialize before the transaction: the write lock is held only for the inserts.
    const params = responseParams(r);
    return this.c.write((): PredictionWriteOutcome => {
      if (!this.userExists(r.userId, r.userCreatedAt)) return { written: false, reason: 'user_erased' };
      if (r.newConversation) {
        insertConversation(this.c, { id: r.conversationId, userId: r.userId, title: r.query.slice(0, CONVERSATION_TITLE_CHARS), createdAt: r.createdAt });
      }
      this.c.stmt<ResponseParams>(INSERT_RESPONSE_SQL).run(params);
      const finishedAt = new Date().toISOString();
      if (r.status === 'ok') {
        const base = { conversationId: r.conversationId, userId: r.userId, responseId: r.id };
        insertMessage(this.c, { ...base, role: 'user', content: r.query, createdAt: r.createdAt });
        insertMessage(this.c, { ...base, role: 'assistant', content: r.answer ?? '', createdAt: finishedAt });
      }
      touchConversation(this.c, r.conversationId, finishedAt);
      return { written: true };
    });
  }

  async isOwnedBy(responseId: string, userId: number): Promise<boolean> {
    return this.owned(responseId, userId);
  }

  async addFeedback(f: NewFeedback): Promise<FeedbackRecord | null> {
    return this.c.write(() => {
      if (!this.owned(f.responseId, f.userId)) return null;
      const r = this.c
        .stmt<[string, number, number, string | null, string]>('INSERT INTO feedback (response_id, user_id, rating, correction, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(f.responseId, f.userId, f.rating, f.correction, f.createdAt);
      return { id: Number(r.lastInsertRowid), ...f };
    });
  }

  private owned(responseId: string, userId: number): boolean {
    return this.c.stmt<[string, number], number>('SELECT 1 FROM responses WHERE id = ? AND user_id = ?').pluck().get(responseId, userId) !== undefined;
  }

  /**
   * True when the user exists (and, given `createdAt`, is the user created then: the id of an erased
   * user can be given to a later one).
   */
  private userExists(userId: number, createdAt: string | undefined): boolean {
    const row = this.c.stmt<[number], string>('SELECT created_at FROM users WHERE id = ?').pluck().get(userId);
    return row !== undefined && (createdAt === undefined || row === createdAt);
  }
}
