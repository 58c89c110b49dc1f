/**
 * The prediction-log rows the export reads, as both engines select them (same column names, same
 * aliases), and their mapping to {@link LoggedResponse}. Pure: the SQL that produces them stays in
 * each engine's exports.ts.
 */
import type { LoggedResponse } from './exports.ts';

/** The response columns every export row carries (plus feedback and user columns). */
export interface RawRow {
  seq: number;
  id: string;
  user_id: number;
  user_created_at: string;
  conversation_id: string;
  turn_index: number;
  created_at: string;
  status: LoggedResponse['status'];
  collection: string | null;
  prompt_name: string;
  prompt_sha256: string;
  rendered_prompt_json: string | null;
  model_backend: string;
  model_id: string;
  release: string | null;
  query: string | null;
  answer: string | null;
  rating: number | null;
  correction: string | null;
}

/** A preference page row: the rated-down response (plain names) and its partner (`u_` names, null when none). */
export type PairRow = RawRow & { [K in keyof RawRow as `u_${K & string}`]: RawRow[K] | null };

export const COLUMNS = ['seq', 'id', 'user_id', 'conversation_id', 'turn_index', 'created_at', 'status', 'collection', 'prompt_name', 'prompt_sha256', 'rendered_prompt_json', 'model_backend', 'model_id', 'query', 'answer', 'release'];

export function toLogged(raw: RawRow): LoggedResponse {
  return {
    seq: raw.seq,
    id: raw.id,
    userId: raw.user_id,
    userCreatedAt: raw.user_created_at,
    conversationId: raw.conversation_id,
    turnIndex: raw.turn_index,
    createdAt: raw.created_at,
    status: raw.status,
    collection: raw.collection,
    promptName: raw.prompt_name,
    promptSha256: raw.prompt_sha256,
    renderedPromptJson: raw.rendered_prompt_json ?? '',
    modelBackend: raw.model_backend,
    modelId: raw.model_id,
    release: raw.release,
    query: raw.query ?? '',
    answer: raw.answer,
    rating: raw.rating === 1 || raw.rating === -1 ? raw.rating : null,
    correction: raw.correction,
  };
}

/** The partner half of a pair row, or null. */
export function partnerOf(raw: PairRow): LoggedResponse | null {
  if (raw.u_seq === null) return null;
  const u: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (k.startsWith('u_')) u[k.slice(2)] = v;
  return toLogged(u as unknown as RawRow);
}
