/**
 * PostgreSQL implementation of {@link PredictionStore} (schema: migrations/postgres/035_users_chat.sql).
 * Same semantics as sqlite/predictions.ts, across replicas:
 * - a log write first takes the response-log lock (`mneme_lock_response_log()`), so `responses.seq`
 *   follows commit order (what the feature materializer and the export page through), then locks
 *   the user's row FOR KEY SHARE and checks the user still exists (and is the same user): an
 *   erasure in flight is waited for and the row dropped on purpose; an erasure starting later
 *   waits for this write and erases its rows too;
 * - feedback likewise takes the feedback-log lock, then checks ownership of the response with its
 *   row locked FOR KEY SHARE, in the same transaction as the insert.
 * JSON fields are serialized exactly as on SQLite (toLoggedJson) and stored verbatim (`json`).
 */
import type { FeedbackRecord, NewFeedback, PredictionRecord, PredictionStore, PredictionWriteOutcome } from '../predictions.ts';
import { CONVERSATION_TITLE_CHARS } from '../predictions.ts';
import { toLoggedJson } from '../sqlite/predictions.ts';
import type { PgTx, PostgresConnection } from './connection.ts';
import { insertConversation, insertMessage, pgText, touchConversation } from './conversations.ts';

const RESPONSE_COLUMNS = [
  'id', 'user_id', 'conversation_id', 'turn_index', 'created_at', 'endpoint', 'request_json', 'query', 'query_vector',
  'history_json', 'collection', 'top_k', 'retrieved_json', 'features_json', 'prompt_name', 'prompt_sha256',
  'rendered_prompt_json', 'model_backend', 'model_id', 'sampling_json', 'answer', 'citations_json', 'timings_json',
  'prompt_tokens', 'completion_tokens', 'status', 'error_code', 'error_message', 'release', 'arm',
  'finish_reason', 'flags_json', 'evidence_json',
] as const;
const SQL_INSERT_RESPONSE = `INSERT INTO responses (${RESPONSE_COLUMNS.join(', ')}) VALUES (${RESPONSE_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`;

type ResponseParams = Record<(typeof RESPONSE_COLUMNS)[number], string | number | Buffer | null>;

/** Float32Array → bytea bytes, float32 little-endian (the SQLite engine's BLOB; a copy-free view). */
function vectorBytes(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function responseParams(r: PredictionRecord): ResponseParams {
  return {
    id: pgText(r.id),
    user_id: r.userId,
    conversation_id: pgText(r.conversationId),
    turn_index: r.turnIndex,
    created_at: r.createdAt,
    endpoint: r.endpoint,
    request_json: toLoggedJson(r.request),
    query: pgText(r.query),
    query_vector: r.queryVector ? vectorBytes(r.queryVector) : null,
    history_json: toLoggedJson(r.history),
    collection: pgText(r.collection),
    top_k: r.topK,
    retrieved_json: toLoggedJson(r.retrieved),
    features_json: toLoggedJson(r.features),
    prompt_name: pgText(r.promptName),
    prompt_sha256: r.promptSha256,
    rendered_prompt_json: toLoggedJson(r.renderedPrompt),
    model_backend: pgText(r.modelBackend),
    model_id: pgText(r.modelId),
    sampling_json: toLoggedJson(r.sampling ?? {}),
    answer: pgText(r.answer),
    citations_json: toLoggedJson(r.citations),
    timings_json: toLoggedJson(r.timings),
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    status: r.status,
    error_code: pgText(r.errorCode),
    error_message: pgText(r.errorMessage),
    release: pgText(r.release ?? null),
    arm: r.arm ?? null,
    finish_reason: r.finishReason ?? null,
    flags_json: r.flags === undefined ? null : toLoggedJson(r.flags),
    evidence_json: r.evidence === undefined || r.evidence === null ? null : toLoggedJson(r.evidence),
  };
}

/** Same instant (ISO strings as stored, or as given by a caller); false for anything unparseable. */
function sameInstant(stored: string, given: string): boolean {
  if (stored === given) return true;
  const a = Date.parse(stored);
  return !Number.isNaN(a) && a === Date.parse(given);
}

export class PostgresPredictionStore implements PredictionStore {
  constructor(protected readonly c: PostgresConnection) {}

  async write(r: PredictionRecord): Promise<PredictionWriteOutcome> {
    // Serialize before the transaction: the log lock is held only for the inserts.
    const params = responseParams(r);
    const values = RESPONSE_COLUMNS.map((col) => params[col]);
    return this.c.tx(async (q): Promise<PredictionWriteOutcome> => {
      await q.one('SELECT mneme_lock_response_log()');
      if (!(await this.userExists(q, r.userId, r.userCreatedAt))) return { written: false, reason: 'user_erased' };
      if (r.newConversation) {
        await insertConversation(q, { id: r.conversationId, userId: r.userId, title: r.query.slice(0, CONVERSATION_TITLE_CHARS), createdAt: r.createdAt });
      }
      await q.run(SQL_INSERT_RESPONSE, values);
      const finishedAt = new Date().toISOString();
      if (r.status === 'ok') {
        const base = { conversationId: r.conversationId, userId: r.userId, responseId: r.id };
        await insertMessage(q, { ...base, role: 'user', content: r.query, createdAt: r.createdAt });
        await insertMessage(q, { ...base, role: 'assistant', content: r.answer ?? '', createdAt: finishedAt });
      }
      await touchConversation(q, r.conversationId, finishedAt);
      return { written: true };
    });
  }

  async isOwnedBy(responseId: string, userId: number): Promise<boolean> {
    return (await this.c.one('SELECT 1 FROM responses WHERE id = $1 AND user_id = $2', [pgText(responseId), userId])) !== undefined;
  }

  async addFeedback(f: NewFeedback): Promise<FeedbackRecord | null> {
    return this.c.tx(async (q) => {
      await q.one('SELECT mneme_lock_feedback_log()');
      const owned = await q.one('SELECT 1 FROM responses WHERE id = $1 AND user_id = $2 FOR KEY SHARE', [pgText(f.responseId), f.userId]);
      if (owned === undefined) return null;
      const row = await q.one<{ id: number }>(
        'INSERT INTO feedback (response_id, user_id, rating, correction, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id',
        [pgText(f.responseId), f.userId, f.rating, pgText(f.correction), f.createdAt],
      );
      return { id: row!.id, ...f, correction: pgText(f.correction) };
    });
  }

  /**
   * True when the user exists (and, given `createdAt`, is the user created then: an id could be
   * given to a later user), with the row locked FOR KEY SHARE until commit (an erasure waits).
   */
  private async userExists(q: PgTx, userId: number, createdAt: string | undefined): Promise<boolean> {
    const row = await q.one<{ created_at: string }>('SELECT created_at FROM users WHERE id = $1 FOR KEY SHARE', [userId]);
    return row !== undefined && (createdAt === undefined || sameInstant(row.created_at, createdAt));
  }
}
