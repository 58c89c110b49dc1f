/**
 * On-demand features: computed at request time from the request itself (nothing is read from the
 * store), and logged in `responses.features_json` beside the precomputed values they were used with.
 * Pure. Definitions (names, types, descriptions) are in definitions.ts (ON_DEMAND_FEATURES).
 */
import { z } from 'zod';
import { ValidationError } from '../core/errors.ts';
import type { FeatureValue } from './types.ts';

/**
 * A question counts as a follow-up when it is not the first of its conversation and the user's
 * previous message is at most this many seconds old (30 minutes): past that, people start over.
 */
export const FOLLOW_UP_WINDOW_SECONDS = 1800;

export interface OnDemandInput {
  message: string;
  /** 0 for the first question of a conversation. */
  turnIndex: number;
  /** created_at of the user's previous message (ISO), or null when there is none. */
  previousMessageAt: string | null;
  now: Date;
  /** The serving tokenizer (the chat model's), so the value matches what the model sees. */
  countTokens: (t: string) => number;
}

const inputSchema = z.object({
  message: z.string(),
  turnIndex: z.number().int().min(0),
  previousMessageAt: z.string().nullable(),
  now: z.date(),
});

/**
 * Returns `turn_index`, `seconds_since_previous_message` (null without a previous message; a clock
 * that went backwards gives 0, never a negative age), `question_tokens` and `is_follow_up` (1 or 0).
 * @throws ValidationError for a negative/non-integer turn index, an invalid date or a bad token count.
 */
export function computeOnDemandFeatures(input: OnDemandInput): Record<string, FeatureValue> {
  const res = inputSchema.safeParse(input);
  if (!res.success || Number.isNaN(input.now.getTime())) {
    throw new ValidationError(`on-demand features: ${res.success ? 'now is an invalid date' : (res.error.issues[0]?.message ?? 'invalid input')}`, {
      cause: res.success ? undefined : res.error,
    });
  }
  let seconds: number | null = null;
  if (input.previousMessageAt !== null) {
    const previous = Date.parse(input.previousMessageAt);
    if (Number.isNaN(previous)) throw new ValidationError(`on-demand features: previousMessageAt is not a time (${JSON.stringify(input.previousMessageAt)})`);
    seconds = Math.max(0, input.now.getTime() - previous) / 1000;
  }
  const tokens = input.countTokens(input.message);
  if (!Number.isInteger(tokens) || tokens < 0) throw new ValidationError(`on-demand features: countTokens returned ${String(tokens)}`);
  return {
    turn_index: input.turnIndex,
    seconds_since_previous_message: seconds,
    question_tokens: tokens,
    is_follow_up: input.turnIndex > 0 && seconds !== null && seconds <= FOLLOW_UP_WINDOW_SECONDS ? 1 : 0,
  };
}
