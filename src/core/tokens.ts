/**
 * Token-count estimate used wherever no tokenizer is loaded: the chunker's default counter (ingest)
 * and the chat models' fallback when their own tokenizer is not loaded yet (src/core/llm). Pure
 * (memoized per text: the same chunks are counted by every question that retrieves them).
 */
import { memoText } from './text-memo.ts';

/** Scripts whose characters BERT's basic tokenizer (or its vocab, in practice) treats one by one. */
const CJK_CHAR = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
/** Pre-tokens: one CJK char | a run of letters/digits | one punctuation or symbol char. */
const PRE_TOKEN = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]|(?:(?![\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}])[\p{L}\p{M}\p{N}])+|[^\s\p{L}\p{M}\p{N}]/gu;

/**
 * Fast token-count estimate for when no tokenizer is loaded; aims at BERT WordPiece (uncased) counts
 * on English, without [CLS]/[SEP].
 *
 * Method, mirroring BERT's pre-tokenizer then guessing WordPiece splits:
 * - every punctuation/symbol char is one token (BERT splits each off), every CJK char is one token;
 * - a letters-only word of up to 8 chars is one token (common words are whole vocab entries), and
 *   each further 8 chars (or part) adds one wordpiece;
 * - a digits-only run costs one token per 3 digits (BERT keeps short numbers, splits long ones);
 * - a mixed letters+digits word (ids like "hx3", "e417") costs one token per 2 chars.
 * Typical English prose comes out near 1.3 tokens per word, about BERT's rate. Rare names and
 * identifiers are undercounted; treat it as an estimate (±25% on prose), never a hard limit.
 */
export const estimateTokens: (text: string) => number = memoText(countPreTokens);

function countPreTokens(text: string): number {
  let tokens = 0;
  for (const match of text.matchAll(PRE_TOKEN)) {
    tokens += preTokenCost(match[0]);
  }
  return tokens;
}

function preTokenCost(word: string): number {
  const length = [...word].length;
  if (length === 1 || CJK_CHAR.test(word)) return 1;
  if (/^\p{N}+$/u.test(word)) return Math.ceil(length / 3);
  if (/^[\p{L}\p{M}]+$/u.test(word)) return Math.ceil(length / 8);
  if (/[\p{L}\p{M}\p{N}]/u.test(word)) return Math.ceil(length / 2);
  return 1;
}
