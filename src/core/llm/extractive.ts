/**
 * The "no LLM" chat backend: answers by quoting the best few sentences of the retrieved passages,
 * each followed by its [n] citation. Deterministic, instant, and honest about what it is (the answer
 * starts with a note saying so). Also exports the small text helpers (sentence splitting, term
 * normalisation) that citation snippets reuse.
 */
import { estimateTokens } from '../tokens.ts';
import { CancelledError, ValidationError } from '../errors.ts';
import type { ChatModel, ContextPassage, GenerateRequest, GenerateResult, ModelState } from './types.ts';

/** Most sentences quoted in one answer. */
export const EXTRACTIVE_MAX_SENTENCES = 4;
/** Fewest sentences quoted when at least that many overlap the question. */
export const EXTRACTIVE_MIN_SENTENCES = 2;
/** A sentence beyond the minimum is quoted only if it scores at least this fraction of the best one. */
export const EXTRACTIVE_RELATIVE_SCORE = 0.35;
/** Sentences with fewer words are headings or fragments, not answers. */
export const EXTRACTIVE_MIN_SENTENCE_WORDS = 4;
/** A quoted sentence longer than this is cut at a word boundary (characters). */
export const EXTRACTIVE_MAX_SENTENCE_CHARS = 400;

export const EXTRACTIVE_NOTE = 'Extractive answer (no language model is configured): the passages below are quoted from your documents.';
export const EXTRACTIVE_NOTHING_FOUND =
  'Extractive answer (no language model is configured): I found nothing relevant to your question in the documents.';

const STOPWORDS = new Set(
  (
    'a an and are as at be been but by can could did do does for from had has have how i if in into is it its ' +
    'me my no not of on or our so than that the their them then there these they this to too was we were what ' +
    'when where which who whom why will with would you your about after all also any before both each few more ' +
    'most other over own same should some such only up down out off again once here very just now am he she him ' +
    'her his hers us do done doing should shall may might must tell please'
  ).split(' '),
);

/** Abbreviations whose trailing period does not end a sentence. */
const ABBREVIATIONS = new Set(['e.g', 'i.e', 'etc', 'vs', 'mr', 'mrs', 'ms', 'dr', 'st', 'no', 'fig', 'approx', 'cf', 'p', 'pp', 'vol', 'min', 'max']);

/**
 * Light stemming: enough to match "filters"/"filter", "installing"/"install", "replaced"/"replace"
 * without a dictionary. Deliberately conservative: short words and words with digits stay as they are.
 */
export function stem(word: string): string {
  if (word.length <= 3 || /\d/.test(word)) return word;
  if (word.endsWith("'s")) word = word.slice(0, -2);
  if (word.endsWith('ies') && word.length > 4) return `${word.slice(0, -3)}y`;
  if (/(?:ss|sh|ch|x|z)es$/.test(word)) return word.slice(0, -2);
  if (word.endsWith('s') && !/(?:ss|us|is)$/.test(word)) word = word.slice(0, -1);
  if (word.endsWith('ing') && word.length > 5) return undouble(word.slice(0, -3));
  if (word.endsWith('ed') && word.length > 4) return undouble(word.slice(0, -2));
  if (word.endsWith('e') && word.length > 4) return word.slice(0, -1);
  return word;
}

function undouble(w: string): string {
  // "stopped" -> "stopp" -> "stop"; "installed" keeps "install" (ll is a real double).
  return /([^aeiouls])\1$/.test(w) ? w.slice(0, -1) : w;
}

/**
 * Content terms of `text`, normalised (lower case, no diacritics, light stemming), stopwords removed,
 * in order and with repeats. Compounds such as "E-417" or "BW-TS-30" yield the compound and its parts.
 */
export function tokenizeTerms(text: string): string[] {
  const out: string[] = [];
  const norm = text.normalize('NFKD').replace(/\p{M}+/gu, '').toLowerCase();
  for (const m of norm.matchAll(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?(?:[-_.][\p{L}\p{N}]+)*/gu)) {
    const word = m[0].replace(/['’]s$/, '').replace(/['’]/g, '');
    const parts = word.split(/[-_.]/).filter((p) => p !== '');
    if (parts.length > 1) {
      out.push(word);
      for (const p of parts) if (p.length > 1 && !STOPWORDS.has(p)) out.push(stem(p));
    } else if (word.length > 0 && !STOPWORDS.has(word) && (word.length > 1 || /\d/.test(word))) {
      out.push(stem(word));
    }
  }
  return out;
}

export type SentenceKind = 'prose' | 'heading' | 'code';

/** Most words in a lone, unpunctuated line for it to count as a title rather than prose. */
const TITLE_MAX_WORDS = 10;
const LIST_MARKER = /^(?:[-*+•]\s+|\d{1,3}[.)]\s+|>\s?)/;

/**
 * Splits text into sentences, each tagged prose, heading or code. Hard-wrapped lines are joined;
 * blank lines and list items start a new sentence; markdown headings, ALL-CAPS lines and lone
 * unpunctuated short lines are headings; lines inside ``` fences are code, one per line. Markdown
 * markers (#, -, *, 1., >) are stripped and whitespace is collapsed.
 */
export function segmentSentences(text: string): { text: string; kind: SentenceKind }[] {
  const blocks: { lines: string[]; kind: SentenceKind; list: boolean }[] = [];
  let current: string[] = [];
  let currentIsList = false;
  const flush = (): void => {
    if (current.length) {
      const only = current[0] ?? '';
      const title = current.length === 1 && !currentIsList && !/[.!?:;,)]$/.test(only) && only.split(/\s+/).length <= TITLE_MAX_WORDS;
      blocks.push({ lines: current, kind: title ? 'heading' : 'prose', list: currentIsList });
    }
    current = [];
    currentIsList = false;
  };
  let inFence = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (/^(?:```|~~~)/.test(line)) {
      flush();
      inFence = !inFence;
      continue;
    }
    if (inFence) {
      if (line !== '') blocks.push({ lines: [line], kind: 'code', list: false });
      continue;
    }
    if (line === '') {
      flush();
      continue;
    }
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    const shouting = /\p{Lu}.*\p{Lu}/u.test(line) && !/\p{Ll}/u.test(line) && line.split(/\s+/).length <= TITLE_MAX_WORDS * 2;
    if (heading || shouting) {
      flush();
      blocks.push({ lines: [heading ? (heading[1] ?? '') : line], kind: 'heading', list: false });
      continue;
    }
    if (/^(?:=+|-{2,})$/.test(line) && current.length === 1) {
      // Setext heading underline: the line above was a heading.
      blocks.push({ lines: current, kind: 'heading', list: false });
      current = [];
      continue;
    }
    if (LIST_MARKER.test(line) || line.startsWith('|')) {
      flush();
      currentIsList = true;
    }
    current.push(line.replace(LIST_MARKER, ''));
  }
  flush();
  const out: { text: string; kind: SentenceKind }[] = [];
  for (const block of blocks) {
    const joined = block.lines.join(' ').replace(/\s+/g, ' ').trim();
    if (joined === '') continue;
    if (block.kind !== 'prose') {
      out.push({ text: joined, kind: block.kind });
      continue;
    }
    let start = 0;
    for (const m of joined.matchAll(/[.!?]+["')\]]*(\s+)(?=["'(\[]?[\p{Lu}\p{N}])/gu)) {
      const endPunct = m.index + m[0].length - (m[1]?.length ?? 0);
      const before = joined.slice(start, m.index);
      const lastWord = (/([\p{L}.]+)$/u.exec(before)?.[1] ?? '').toLowerCase();
      // "e.g. Foo", "Dr. Smith", initials ("J. Doe"): not a sentence end.
      if (ABBREVIATIONS.has(lastWord.replace(/\.$/, '')) || /^\p{L}$/u.test(lastWord)) continue;
      const sentence = joined.slice(start, endPunct).trim();
      if (sentence) out.push({ text: sentence, kind: 'prose' });
      start = m.index + m[0].length;
    }
    const rest = joined.slice(start).trim();
    if (rest) out.push({ text: rest, kind: 'prose' });
  }
  return out;
}

/** The prose sentences of `text` (headings and code lines left out); see segmentSentences. */
export function splitSentences(text: string): string[] {
  return segmentSentences(text)
    .filter((s) => s.kind === 'prose')
    .map((s) => s.text);
}

interface Candidate {
  passageIndex: number;
  sentenceIndex: number;
  n: number;
  text: string;
  score: number;
  key: string;
}

/**
 * Picks the sentences to quote: scored by the idf-weighted distinct question terms they contain
 * (idf over the passages), best first with ties broken by passage rank, then re-sorted into passage
 * order. Pure and deterministic.
 */
export function selectSentences(query: string, passages: ContextPassage[], maxSentences = EXTRACTIVE_MAX_SENTENCES): { n: number; text: string; score: number }[] {
  const queryTerms = new Set(tokenizeTerms(query));
  if (queryTerms.size === 0 || passages.length === 0) return [];
  const passageTerms = passages.map((p) => new Set(tokenizeTerms(`${p.title}\n${p.text}`)));
  const idf = new Map<string, number>();
  const N = passages.length;
  for (const t of queryTerms) {
    const df = passageTerms.filter((s) => s.has(t)).length;
    // BM25-style idf, kept positive so a term present everywhere still counts a little.
    idf.set(t, Math.log(1 + (N - df + 0.5) / (df + 0.5)));
  }
  const candidates: Candidate[] = [];
  passages.forEach((p, passageIndex) => {
    splitSentences(p.text).forEach((text, sentenceIndex) => {
      const words = text.split(/\s+/).length;
      if (words < EXTRACTIVE_MIN_SENTENCE_WORDS) return;
      const terms = tokenizeTerms(text);
      const distinct = new Set(terms);
      let score = 0;
      for (const t of distinct) score += idf.get(t) ?? 0;
      if (score <= 0) return;
      candidates.push({ passageIndex, sentenceIndex, n: p.n, text, score, key: terms.join(' ') });
    });
  });
  candidates.sort((a, b) => b.score - a.score || a.passageIndex - b.passageIndex || a.sentenceIndex - b.sentenceIndex);
  const chosen: Candidate[] = [];
  const seen = new Set<string>();
  const best = candidates[0]?.score ?? 0;
  for (const c of candidates) {
    if (chosen.length >= maxSentences) break;
    // Overlapping chunks repeat sentences: quote each once (the better-ranked passage wins).
    if (seen.has(c.key)) continue;
    if (chosen.length >= EXTRACTIVE_MIN_SENTENCES && c.score < best * EXTRACTIVE_RELATIVE_SCORE) break;
    seen.add(c.key);
    chosen.push(c);
  }
  chosen.sort((a, b) => a.passageIndex - b.passageIndex || a.sentenceIndex - b.sentenceIndex);
  return chosen.map((c) => ({ n: c.n, text: c.text, score: c.score }));
}

/** "Sentence text." + n → "Sentence text [n]." (the marker goes before the final punctuation). */
function withCitation(sentence: string, n: number): string {
  let s = sentence;
  if (s.length > EXTRACTIVE_MAX_SENTENCE_CHARS) {
    const cut = s.slice(0, EXTRACTIVE_MAX_SENTENCE_CHARS);
    s = `${cut.slice(0, Math.max(cut.lastIndexOf(' '), 1)).replace(/[\s,;:]+$/, '')}…`;
  }
  const m = /^(.*?)([.!?:;]+["')\]]*)$/s.exec(s);
  return m ? `${m[1]} [${n}]${m[2]}` : `${s} [${n}]`;
}

/** The complete extractive answer text for a question (before streaming, stop strings and limits). */
export function composeExtractiveAnswer(query: string, passages: ContextPassage[]): string {
  const picked = selectSentences(query, passages);
  if (picked.length === 0) return EXTRACTIVE_NOTHING_FOUND;
  return `${EXTRACTIVE_NOTE}\n\n${picked.map((p) => withCitation(p.text, p.n)).join(' ')}`;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** ChatModel backend "extractive" (modelId "extractive-v1"). Always ready; nothing to load. */
export class ExtractiveChatModel implements ChatModel {
  readonly backend = 'extractive';
  readonly modelId = 'extractive-v1';

  status(): ModelState {
    return { state: 'ready' };
  }

  countTokens(text: string): number {
    return estimateTokens(text);
  }

  /**
   * Streams the extractive answer word by word through `onToken`.
   * @throws CancelledError when `signal` aborts (checked between words); ValidationError for
   * maxTokens < 1.
   */
  async generate(req: GenerateRequest): Promise<GenerateResult> {
    if (!Number.isInteger(req.sampling.maxTokens) || req.sampling.maxTokens < 1) {
      throw new ValidationError(`sampling.maxTokens must be a positive integer, got ${req.sampling.maxTokens}`);
    }
    if (req.signal.aborted) throw new CancelledError('generation cancelled before it started');
    let full = composeExtractiveAnswer(req.context.query, req.context.passages);
    // Honour stop strings like a real model would: the text ends before the first one.
    let cut = full.length;
    for (const s of req.sampling.stop) {
      const i = s === '' ? -1 : full.indexOf(s);
      if (i !== -1 && i < cut) cut = i;
    }
    full = full.slice(0, cut);

    const pieces = full.match(/\s*\S+/g) ?? [];
    let text = '';
    let used = 0;
    let finishReason: GenerateResult['finishReason'] = 'stop';
    for (const piece of pieces) {
      const cost = estimateTokens(piece);
      if (used + cost > req.sampling.maxTokens) {
        finishReason = 'length';
        break;
      }
      // Yield so that an abort (or a slow client) can interleave with the stream, like a real model.
      await yieldToEventLoop();
      if (req.signal.aborted) throw new CancelledError('generation cancelled');
      used += cost;
      text += piece;
      req.onToken?.(piece);
    }
    const promptTokens = req.messages.reduce((sum, m) => sum + estimateTokens(m.content), 0);
    return { text, promptTokens, completionTokens: used, finishReason };
  }

  async close(): Promise<void> {
    // Nothing to release.
  }
}
