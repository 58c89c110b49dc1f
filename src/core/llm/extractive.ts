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
/** Fewest sentences quoted (when any qualifies): the relative-score cut applies after these. */
export const EXTRACTIVE_MIN_SENTENCES = 1;
/** A sentence beyond the minimum is quoted only if it scores at least this fraction of the best one. */
export const EXTRACTIVE_RELATIVE_SCORE = 0.6;
/** Sentences with fewer words are headings or fragments, not answers. */
export const EXTRACTIVE_MIN_SENTENCE_WORDS = 4;
/** A quoted sentence longer than this is cut at a word boundary (characters). */
export const EXTRACTIVE_MAX_SENTENCE_CHARS = 400;
/**
 * Share of the question's distinct key terms the quoted units must cover together, counting terms
 * in their text and their heading/passage title (0.6: both of two, two of three, three of four or
 * five). A sentence that shares one word with an off-topic question ("capital" in the manual's
 * example about a `capitals` table, asked for the capital of France) is not an answer. Measured on
 * the fixture corpus and the manual excerpts (test/unit/core/extractive.test.ts); idf-weighting the
 * share was tried and rejected: a paraphrased common word ("leave" for "depart") absent from every
 * passage then outweighs the names the question shares with them.
 */
export const EXTRACTIVE_MIN_COVERAGE = 0.6;
/** Weight of a key term found only in the unit's heading or passage title (1 = in the sentence). */
export const EXTRACTIVE_SUBJECT_WEIGHT = 0.75;
/** Weight of a compound key term ("work_mem") matched only by its parts ("work", "mem"). */
export const EXTRACTIVE_PART_WEIGHT = 0.25;

export const EXTRACTIVE_NOTE = 'Extractive answer (no language model is configured): the passages below are quoted from your documents.';
export const EXTRACTIVE_NOTHING_FOUND =
  'Extractive answer (no language model is configured): the documents do not cover this question.';

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

export type SentenceKind = 'prose' | 'heading' | 'code' | 'table' | 'nav';

/** Most words in a lone, unterminated line for it to count as a title rather than prose. */
const TITLE_MAX_WORDS = 10;
const LIST_MARKER = /^(?:[-*+•]\s+|\d{1,3}[.)]\s+|>\s?)/;
/** A table row as loaders write it (`a | b | c`) or as markdown has it (`| a | b |`, `|---|`). */
const TABLE_ROW = /^\|.*\|$|^[^|]+(?:\s\|\s[^|]*){1,}$|^\|?\s*:?-{3,}/;
/** Words of page chrome: a short line made only of these is navigation, never an answer. */
const NAV_WORDS = new Set(['prev', 'previous', 'next', 'up', 'home', 'top', 'back', 'contents', 'index', 'search', 'menu', 'skip', 'to', 'main', 'content', 'toc', 'go']);
/** Most words a navigation line has. */
const NAV_MAX_WORDS = 6;
/** Statements that open a line of SQL (or a psql/shell session) in manuals. */
const CODE_START = /^(?:(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH|GRANT|REVOKE|BEGIN|COMMIT|ROLLBACK|EXPLAIN|VACUUM|ANALYZE|SET|SHOW|COPY|TRUNCATE|CALL|PREPARE|EXECUTE|LISTEN|NOTIFY|REINDEX|CLUSTER)\b|\$ |=>|=#|postgres=)/;

function isTableRow(line: string): boolean {
  return TABLE_ROW.test(line);
}

function isNavLine(line: string): boolean {
  const words = line.toLowerCase().split(/[\s|»«›‹/·•–-]+/).filter((w) => w !== '');
  return words.length > 0 && words.length <= NAV_MAX_WORDS && words.every((w) => NAV_WORDS.has(w));
}

/**
 * True for a paragraph (raw lines, indentation kept) that is code although no ``` fence marks it:
 * HTML loaders keep `<pre>` text verbatim but unfenced. Code = it opens with a statement keyword
 * (upper case, as manuals write SQL) and does not read as a sentence, or ends a line with `;`, or
 * most of its continuation lines are indented.
 */
function looksLikeCode(lines: readonly string[]): boolean {
  const first = lines[0]?.trim() ?? '';
  if (CODE_START.test(first) && !/[.!?]$/.test(first) && !/^[A-Z]+ [a-z]+ [a-z]+ [a-z]+/.test(first)) return true;
  if (lines.some((l) => /;\s*$/.test(l) && !/[.!?]\s/.test(l))) return CODE_START.test(first) || lines.length > 1;
  const rest = lines.slice(1);
  return rest.length > 0 && rest.filter((l) => /^(?:\s{2,}|\t)/.test(l)).length * 2 >= rest.length;
}

interface Block {
  lines: string[];
  kind: SentenceKind;
  /** A list item (its text may be a fragment without a full stop and still be data). */
  list?: boolean;
}

/** Splits text into blocks: blank lines, list items, headings, fences, table rows and nav lines separate them. */
function toBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  let current: string[] = [];
  let raw: string[] = [];
  let currentIsList = false;
  const flush = (): void => {
    if (current.length) {
      const only = current[0] ?? '';
      const title = current.length === 1 && !currentIsList && !/[.!?:;,]$/.test(only) && only.split(/\s+/).length <= TITLE_MAX_WORDS;
      const code = looksLikeCode(raw);
      blocks.push({ lines: code ? raw : current, kind: code ? 'code' : title ? 'heading' : 'prose', list: currentIsList });
    }
    current = [];
    raw = [];
    currentIsList = false;
  };
  let fence: string[] | null = null;
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (/^(?:```|~~~)/.test(line)) {
      flush();
      if (fence) {
        if (fence.length) blocks.push({ lines: fence, kind: 'code' });
        fence = null;
      } else {
        fence = [];
      }
      continue;
    }
    if (fence) {
      fence.push(rawLine.replace(/\s+$/, ''));
      continue;
    }
    if (line === '') {
      flush();
      continue;
    }
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    const shouting = /\p{Lu}.*\p{Lu}/u.test(line) && !/\p{Ll}/u.test(line) && line.split(/\s+/).length <= TITLE_MAX_WORDS * 2 && !CODE_START.test(line);
    const special: SentenceKind | null = heading || shouting ? 'heading' : isNavLine(line) ? 'nav' : isTableRow(line) ? 'table' : null;
    if (special) {
      flush();
      blocks.push({ lines: [heading ? (heading[1] ?? '') : line], kind: special });
      continue;
    }
    if (/^(?:=+|-{2,})$/.test(line) && current.length === 1) {
      // Setext heading underline: the line above was a heading.
      blocks.push({ lines: current, kind: 'heading' });
      current = [];
      raw = [];
      continue;
    }
    if (LIST_MARKER.test(line)) {
      flush();
      currentIsList = true;
    }
    current.push(line.replace(LIST_MARKER, ''));
    raw.push(rawLine.replace(/\s+$/, ''));
  }
  if (fence?.length) blocks.push({ lines: fence, kind: 'code' });
  flush();
  return blocks;
}

/** Splits one prose block into sentences (abbreviations and initials do not end one). */
function proseSentences(joined: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (const m of joined.matchAll(/[.!?]+["')\]]*(\s+)(?=["'(\[]?[\p{Lu}\p{N}])/gu)) {
    const endPunct = m.index + m[0].length - (m[1]?.length ?? 0);
    const before = joined.slice(start, m.index);
    const lastWord = (/([\p{L}.]+)$/u.exec(before)?.[1] ?? '').toLowerCase();
    // "e.g. Foo", "Dr. Smith", initials ("J. Doe"): not a sentence end.
    if (ABBREVIATIONS.has(lastWord.replace(/\.$/, '')) || /^\p{L}$/u.test(lastWord)) continue;
    const sentence = joined.slice(start, endPunct).trim();
    if (sentence) out.push(sentence);
    start = m.index + m[0].length;
  }
  const rest = joined.slice(start).trim();
  if (rest) out.push(rest);
  return out;
}

/**
 * Splits text into segments tagged prose (one sentence each), heading, code (a whole block, lines
 * and indentation kept: ``` fenced, or unfenced code as HTML loaders keep `<pre>`), table (one row)
 * or nav (page chrome such as "Prev Up Next"). Hard-wrapped prose lines are joined; blank lines and
 * list items start a new sentence; markdown headings, ALL-CAPS lines and lone unterminated short
 * lines (`work_mem (integer)`) are headings. Markdown markers (#, -, *, 1., >) are stripped.
 */
export function segmentSentences(text: string): { text: string; kind: SentenceKind }[] {
  return segments(text).map(({ text: t, kind }) => ({ text: t, kind }));
}

/** segmentSentences with a `list` flag on sentences of list items. */
function segments(text: string): { text: string; kind: SentenceKind; list: boolean }[] {
  const out: { text: string; kind: SentenceKind; list: boolean }[] = [];
  for (const block of toBlocks(text)) {
    if (block.kind === 'code') {
      const code = block.lines.join('\n').replace(/^\n+|\s+$/g, '');
      if (code.trim() !== '') out.push({ text: code, kind: 'code', list: false });
      continue;
    }
    const joined = block.lines.join(' ').replace(/\s+/g, ' ').trim();
    if (joined === '') continue;
    if (block.kind !== 'prose') out.push({ text: joined, kind: block.kind, list: false });
    else for (const s of proseSentences(joined)) out.push({ text: s, kind: 'prose', list: block.list === true });
  }
  return out;
}

/** The prose sentences of `text` (headings, code, table rows and navigation left out); see segmentSentences. */
export function splitSentences(text: string): string[] {
  return segmentSentences(text)
    .filter((s) => s.kind === 'prose')
    .map((s) => s.text);
}

/**
 * The question's key terms: content words, normalised like tokenizeTerms, a compound ("work_mem",
 * "E-417") kept whole and not split into its parts. Distinct, in order.
 */
export function keyTerms(text: string): string[] {
  const out = new Set<string>();
  const norm = text.normalize('NFKD').replace(/\p{M}+/gu, '').toLowerCase();
  for (const m of norm.matchAll(/[\p{L}\p{N}]+(?:['’][\p{L}]+)?(?:[-_.][\p{L}\p{N}]+)*/gu)) {
    const word = m[0].replace(/['’]s$/, '').replace(/['’]/g, '');
    if (/[-_.]/.test(word)) out.add(word);
    else if (word !== '' && !STOPWORDS.has(word) && (word.length > 1 || /\d/.test(word))) out.add(stem(word));
  }
  return [...out];
}

/** Key terms plus the parts of compounds (what a text offers to match a question's key terms). */
function termSet(text: string): Set<string> {
  return new Set([...tokenizeTerms(text), ...keyTerms(text)]);
}

const isCompound = (t: string): boolean => /[-_.]/.test(t);

/** How a quotable sentence ends (terminal punctuation, possibly inside quotes or brackets). */
const SENTENCE_END = /[.!?:;]["'”’)\]]*$|\)$/;

interface Unit {
  passageIndex: number;
  order: number;
  n: number;
  kind: 'prose' | 'code';
  text: string;
  /** The code block right after this sentence, when the sentence introduces it ("…as follows:"). */
  code: string | null;
  /** Nearest heading above the unit inside the passage ('' when none). */
  subject: string;
  title: string;
}

/** Quotable units of the passages: prose sentences (with the code they introduce) and code blocks. */
function quotableUnits(passages: readonly ContextPassage[]): Unit[] {
  const units: Unit[] = [];
  passages.forEach((p, passageIndex) => {
    let subject = '';
    const segs = segments(p.text);
    segs.forEach((seg, order) => {
      if (seg.kind === 'heading') subject = seg.text;
      if (seg.kind !== 'prose' && seg.kind !== 'code') return;
      // A prose unit is a sentence: enough words, lower-case letters, and an end unless it is a list
      // item (titles and fragments such as "Example 11.8. Setting up a Partial Index" have none).
      if (seg.kind === 'prose' && (seg.text.split(/\s+/).length < EXTRACTIVE_MIN_SENTENCE_WORDS || !/\p{Ll}/u.test(seg.text) || (!seg.list && !SENTENCE_END.test(seg.text)))) return;
      const next = segs[order + 1];
      const code = seg.kind === 'prose' && /:$/.test(seg.text) && next?.kind === 'code' ? next.text : null;
      units.push({ passageIndex, order, n: p.n, kind: seg.kind, text: seg.text, code, subject, title: p.title });
    });
  });
  return units;
}

export interface SelectedSentence {
  n: number;
  text: string;
  score: number;
  /** 'code': `text` is a code block, quoted fenced. */
  kind?: 'prose' | 'code';
  /** Code the sentence introduces, quoted fenced after it. */
  code?: string | null;
}

/** Which key terms a unit covers: in its own text, or only through its heading / passage title. */
function unitCoverage(u: Unit, terms: readonly string[]): { own: Set<string>; subject: Set<string>; parts: Set<string> } {
  const own = termSet(u.text);
  const around = new Set([...termSet(u.subject), ...termSet(u.title)]);
  const out = { own: new Set<string>(), subject: new Set<string>(), parts: new Set<string>() };
  for (const t of terms) {
    if (own.has(t)) out.own.add(t);
    else if (around.has(t)) out.subject.add(t);
    else if (isCompound(t) && t.split(/[-_.]/).every((part) => part.length < 2 || own.has(stem(part)))) out.parts.add(t);
  }
  return out;
}

/**
 * Scores one unit: Σ idf(t) over the question's key terms t, 1 for a term in the unit itself,
 * EXTRACTIVE_SUBJECT_WEIGHT for one only in its heading or the passage title (the sentence
 * "The default value is four megabytes." is about `work_mem` because it sits under that entry),
 * EXTRACTIVE_PART_WEIGHT for a compound matched only by its parts; times the share of key terms
 * covered. null when the unit contains no key term itself.
 */
function scoreUnit(u: Unit, terms: readonly string[], idf: ReadonlyMap<string, number>): number | null {
  const c = unitCoverage(u, terms);
  if (c.own.size === 0) return null;
  let score = 0;
  for (const t of c.own) score += idf.get(t) ?? 0;
  for (const t of c.subject) score += (idf.get(t) ?? 0) * EXTRACTIVE_SUBJECT_WEIGHT;
  for (const t of c.parts) score += (idf.get(t) ?? 0) * EXTRACTIVE_PART_WEIGHT;
  // Covering more of the question counts twice: "The default value is 4MB" (default, value, under
  // work_mem) beats "If this value is specified without units…" (value, under work_mem).
  return (score * (c.own.size + c.subject.size)) / terms.length;
}

/** True when the unit's own heading names identifiers (compounds) none of which the question asks about. */
function aboutSomethingElse(u: Unit, terms: readonly string[]): boolean {
  const asked = terms.filter(isCompound);
  const named = keyTerms(u.subject).filter(isCompound);
  return asked.length > 0 && named.length > 0 && !named.some((t) => asked.includes(t));
}

/**
 * Picks what to quote: prose sentences (never headings, table rows or navigation) and code blocks
 * that contain at least one of the question's key terms, scored by scoreUnit (idf over the
 * passages), best first with ties broken by passage rank, at most `maxSentences`, then re-sorted
 * into passage order. Units under another identifier's heading (hash_mem_multiplier's entry when
 * asked about work_mem) are used only when no other unit qualifies. Nothing is picked unless the
 * chosen units together (with their headings) cover at least EXTRACTIVE_MIN_COVERAGE of the key
 * terms: one shared word with an off-topic question is not an answer. Pure and deterministic.
 */
export function selectSentences(query: string, passages: ContextPassage[], maxSentences = EXTRACTIVE_MAX_SENTENCES): SelectedSentence[] {
  const terms = keyTerms(query);
  if (terms.length === 0 || passages.length === 0) return [];
  const passageTerms = passages.map((p) => termSet(`${p.title}\n${p.text}`));
  const idf = new Map<string, number>();
  for (const t of terms) {
    const df = passageTerms.filter((s) => s.has(t)).length;
    // BM25-style idf, kept positive so a term present everywhere still counts a little.
    idf.set(t, Math.log(1 + (passages.length - df + 0.5) / (df + 0.5)));
  }
  const scored: Array<Unit & { score: number; key: string; offSubject: boolean }> = [];
  for (const u of quotableUnits(passages)) {
    const score = scoreUnit(u, terms, idf);
    if (score !== null && score > 0) scored.push({ ...u, score, key: tokenizeTerms(u.text).join(' '), offSubject: aboutSomethingElse(u, terms) });
  }
  const onSubject = scored.filter((u) => !u.offSubject);
  const pool = onSubject.length > 0 ? onSubject : scored;
  pool.sort((a, b) => b.score - a.score || a.passageIndex - b.passageIndex || a.order - b.order);
  const chosen: typeof pool = [];
  const seen = new Set<string>();
  const best = pool[0]?.score ?? 0;
  for (const c of pool) {
    if (chosen.length >= maxSentences) break;
    // Overlapping chunks repeat sentences: quote each once (the better-ranked passage wins).
    if (seen.has(c.key)) continue;
    if (chosen.length >= EXTRACTIVE_MIN_SENTENCES && c.score < best * EXTRACTIVE_RELATIVE_SCORE) break;
    seen.add(c.key);
    if (c.code !== null) seen.add(tokenizeTerms(c.code).join(' '));
    chosen.push(c);
  }
  const covered = new Set<string>();
  for (const c of chosen) {
    const cov = unitCoverage(c, terms);
    for (const t of [...cov.own, ...cov.subject]) covered.add(t);
  }
  if (covered.size / terms.length < EXTRACTIVE_MIN_COVERAGE) return [];
  chosen.sort((a, b) => a.passageIndex - b.passageIndex || a.order - b.order);
  return chosen.map((c) => ({ n: c.n, text: c.text, score: c.score, kind: c.kind, code: c.code }));
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

/** A code block as a markdown fence (longer than any backtick run inside it). */
export function fenced(code: string): string {
  const longest = Math.max(2, ...[...code.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}\n${code}\n${fence}`;
}

/**
 * The complete extractive answer text for a question (before streaming, stop strings and limits):
 * the note, then the chosen sentences with their [n] (consecutive prose joined into a paragraph),
 * code kept as fenced blocks on their own lines. EXTRACTIVE_NOTHING_FOUND when nothing qualifies.
 */
export function composeExtractiveAnswer(query: string, passages: ContextPassage[]): string {
  const picked = selectSentences(query, passages);
  if (picked.length === 0) return EXTRACTIVE_NOTHING_FOUND;
  const paragraphs: string[] = [];
  let prose: string[] = [];
  const endProse = (): void => {
    if (prose.length) paragraphs.push(prose.join(' '));
    prose = [];
  };
  for (const p of picked) {
    if (p.kind === 'code') {
      endProse();
      paragraphs.push(`Source [${p.n}]:\n${fenced(p.text)}`);
      continue;
    }
    prose.push(withCitation(p.text, p.n));
    if (p.code) {
      endProse();
      paragraphs.push(fenced(p.code));
    }
  }
  endProse();
  return `${EXTRACTIVE_NOTE}\n\n${paragraphs.join('\n\n')}`;
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
