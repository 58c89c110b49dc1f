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
/** Most key terms {@link keyTerms} returns by default. */
export const KEY_TERMS_MAX = 12;
/** Words shorter than this many characters are not key terms (unless they contain a digit: "v2", "9x"). */
export const KEY_TERM_MIN_CHARS = 3;

/**
 * Words that carry no topic: function words, question words and generic request verbs. A key term is
 * what is left; BM25's IDF handles the rest. Shared by correction matching and follow-up detection.
 */
export const NON_TOPIC_WORDS: ReadonlySet<string> = new Set(
  ('a about above after again all also am an and any are as at be because been before being below between both but by can ' +
    'could did do does doing done down during each either else even ever every few for from further get gets getting give go had has have ' +
    'having he her here hers him his how however i if in into is it its itself just know let like me might more most much must my need no ' +
    'nor not now of off on once one ones only or other our ours out over own please same see she should show so some such tell than thank thanks ' +
    'that the their theirs them then there these they thing things this those through to too try under until up use used using very want was ' +
    'way we well were what when where whether which while who whom whose why will with would yes yet you your yours ' +
    "don't doesn't didn't isn't aren't can't won't i'm it's what's how's").split(' '),
);

/**
 * A crude English stem, enough to match "indexes"/"index", "created"/"create", "policies"/"policy":
 * strips one of -ies/-es/-s/-ing/-ed when at least KEY_TERM_MIN_CHARS characters remain. Pure.
 */
export function stemWord(word: string): string {
  const w = word.toLowerCase();
  const strip = (suffix: string, add = ''): string | null =>
    w.endsWith(suffix) && w.length - suffix.length >= KEY_TERM_MIN_CHARS ? w.slice(0, w.length - suffix.length) + add : null;
  return strip('ies', 'y') ?? strip('sses', 'ss') ?? strip('xes', 'x') ?? strip('ches', 'ch') ?? strip('ing') ?? strip('ed') ?? (w.endsWith('ss') ? w : strip('s')) ?? w;
}

/** Lower-cased word tokens of `text` (letters/digits, inner `_` `.` `-` kept: "work_mem", "pg_hba.conf"). */
export function wordsOf(text: string): string[] {
  return text.normalize('NFKC').toLowerCase().match(/[\p{L}\p{N}]+(?:[_.\-'][\p{L}\p{N}]+)*/gu) ?? [];
}

/**
 * The topic words of `text`, stemmed ({@link stemWord}), deduplicated, in order of first appearance:
 * words of NON_TOPIC_WORDS and words shorter than KEY_TERM_MIN_CHARS without a digit are dropped.
 * "How do I create one?" → ["create"]; "What is a BRIN index?" → ["brin", "index"]. Pure.
 * @param max most terms returned (default KEY_TERMS_MAX)
 */
export function keyTerms(text: string, max = KEY_TERMS_MAX): string[] {
  const out: string[] = [];
  for (const w of wordsOf(text)) {
    if (NON_TOPIC_WORDS.has(w) || (w.length < KEY_TERM_MIN_CHARS && !/\d/.test(w))) continue;
    const t = stemWord(w);
    if (!out.includes(t)) out.push(t);
    if (out.length >= max) break;
  }
  return out;
}

const intList = (v: FeatureValue | undefined): number[] =>
  Array.isArray(v) ? (v as unknown[]).filter((x): x is number => typeof x === 'number' && Number.isInteger(x)) : [];
const stringList = (v: FeatureValue | undefined): string[] => (Array.isArray(v) ? (v as unknown[]).filter((x): x is string => typeof x === 'string') : []);

/** Entries of a `timed_map` feature (key → epoch ms) whose key `parseKey` accepts and whose time is finite. */
function timedEntries<K>(v: FeatureValue | undefined, parseKey: (key: string) => K | null): Map<K, number> {
  const out = new Map<K, number>();
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return out;
  for (const [key, at] of Object.entries(v)) {
    const k = parseKey(key);
    if (k !== null && typeof at === 'number' && Number.isFinite(at)) out.set(k, at);
  }
  return out;
}

/**
 * Signals for the retriever's re-rank: engaged documents, disliked chunks and correction terms (with
 * their times), top collections and the interest vector (null when absent or not a list of finite
 * numbers). `disliked_documents` is no longer used for ranking: a thumbs-down demotes the passages
 * the answer cited, never a whole document. Missing or malformed features give empty
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
    dislikedChunks: timedEntries(values.disliked_chunks, (k) => (/^\d+$/.test(k) ? Number(k) : null)),
    corrections: [...timedEntries(values.correction_terms, (k) => (k.trim() === '' ? null : k)).entries()].map(([k, atMs]) => ({ terms: k.split(/\s+/), atMs })),
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
