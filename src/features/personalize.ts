/**
 * From feature values to personalization: re-rank signals for the retriever (applied by
 * `personalizeScores` in src/chat/retrieve.ts) and the short personalization block of the prompt
 * template (prompts/answer.md, variable `personalization`). Both are built ONLY from feature values,
 * never from free text a user wrote, so nothing a user types can reach the system prompt this way.
 * Pure.
 */
import { ValidationError } from '../core/errors.ts';
import type { FeatureValue, PersonalizationSignals } from './types.ts';

/** Answers up to this many words are "short". */
export const SHORT_ANSWER_MAX_WORDS = 100;
/** Answers up to this many words (above SHORT_ANSWER_MAX_WORDS) are "medium"; longer ones "long". */
export const MEDIUM_ANSWER_MAX_WORDS = 250;
/** "about N words" is rounded to this many words. */
export const ANSWER_WORDS_ROUNDING = 10;
/** Longest collection name shown in the block, in characters. */
export const BLOCK_COLLECTION_MAX_CHARS = 64;

const intList = (v: FeatureValue | undefined): number[] =>
  Array.isArray(v) ? (v as unknown[]).filter((x): x is number => typeof x === 'number' && Number.isInteger(x)) : [];
const stringList = (v: FeatureValue | undefined): string[] => (Array.isArray(v) ? (v as unknown[]).filter((x): x is string => typeof x === 'string') : []);

/**
 * Signals for the retriever's re-rank: engaged/disliked documents, top collections and the interest
 * vector (null when absent or not a list of finite numbers). Missing or malformed features give empty
 * signals, never an error: personalization must not break chat.
 * @param weight ≥ 0; 0 turns personalization off.
 * @throws ValidationError when weight is negative or not finite.
 */
export function toPersonalizationSignals(values: Record<string, FeatureValue>, weight: number): PersonalizationSignals {
  if (!Number.isFinite(weight) || weight < 0) throw new ValidationError(`personalization weight must be a finite number >= 0, got ${String(weight)}`);
  const iv = values.interest_vector;
  const interestOk = Array.isArray(iv) && iv.length > 0 && (iv as unknown[]).every((x) => typeof x === 'number' && Number.isFinite(x));
  return {
    weight,
    engagedDocuments: intList(values.engaged_documents),
    dislikedDocuments: intList(values.disliked_documents),
    topCollections: stringList(values.top_collections),
    interestVector: interestOk ? Float32Array.from(iv as number[]) : null,
  };
}

/** "short" | "medium" | "long" for a length in words. */
export function answerLengthLabel(words: number): 'short' | 'medium' | 'long' {
  return words <= SHORT_ANSWER_MAX_WORDS ? 'short' : words <= MEDIUM_ANSWER_MAX_WORDS ? 'medium' : 'long';
}

/** Collection names are set by whoever ingests: keep them to one short printable line. */
function safeName(name: string): string {
  const cleaned = name.replace(/[\p{C}\s]+/gu, ' ').trim();
  return cleaned.length > BLOCK_COLLECTION_MAX_CHARS ? `${cleaned.slice(0, BLOCK_COLLECTION_MAX_CHARS - 1)}…` : cleaned;
}

/**
 * The prompt's personalization block: one factual sentence per known feature, e.g.
 * "Preferred answer length: short (about 80 words).\nFrequently asked about collections: docs, faq."
 * Uses preferred_answer_length, top_collections and messages_total; "" when none is known.
 */
export function formatPersonalizationBlock(values: Record<string, FeatureValue>): string {
  const lines: string[] = [];
  const words = values.preferred_answer_length;
  if (typeof words === 'number' && Number.isFinite(words) && words > 0) {
    const about = Math.max(ANSWER_WORDS_ROUNDING, Math.round(words / ANSWER_WORDS_ROUNDING) * ANSWER_WORDS_ROUNDING);
    lines.push(`Preferred answer length: ${answerLengthLabel(words)} (about ${about} words).`);
  }
  const collections = stringList(values.top_collections).map(safeName).filter((c) => c !== '');
  if (collections.length > 0) lines.push(`Frequently asked about collections: ${collections.join(', ')}.`);
  const total = values.messages_total;
  if (typeof total === 'number' && Number.isInteger(total) && total > 0) lines.push(`Questions asked so far: ${total}.`);
  return lines.join('\n');
}
