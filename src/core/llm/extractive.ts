/**
 * The "no LLM" chat backend: answers by quoting the best few sentences of the retrieved passages,
 * each followed by its [n] citation. Deterministic, instant, and honest about what it is (the answer
 * starts with a note saying so). Also exports the small text helpers (sentence splitting, term
 * normalisation) that citation snippets reuse.
 */
import { memoText } from '../text-memo.ts';
import { estimateTokens } from '../tokens.ts';
import { CancelledError, ValidationError } from '../errors.ts';
import type { ChatModel, ContextPassage, GenerateRequest, GenerateResult, ModelState } from './types.ts';

/** The extractive answer streams its words in groups of this many between yields to the event loop. */
export const EXTRACTIVE_YIELD_WORDS = 8;
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
/**
 * Weight multiplier of an identifier the question names: a compound (`work_mem`, `pg_hba.conf`,
 * `E-417`). Such a term is what the question is about; "default" and "value" are how it asks.
 */
export const EXTRACTIVE_IDENTIFIER_WEIGHT = 3;
/** Weight multiplier of a word the question writes in capitals (BRIN, TOAST, CTE, VACUUM FULL). */
export const EXTRACTIVE_ACRONYM_WEIGHT = 2;
/**
 * Each passage down the retrieval ranking multiplies its units' scores by this (passage 1: 1,
 * passage 2: 0.85, passage 6: 0.44): retrieval put the page that answers first for 26 of 34
 * questions on the PostgreSQL manual, so a sentence of passage 5 must match clearly better to win.
 */
export const EXTRACTIVE_RANK_DECAY = 0.85;
/**
 * Score multiplier of a unit that has the shape of the answer asked for (see answerCues): a default
 * with its value, a duration for "how long", a number for "how many", a definition of the subject
 * of "what is X".
 */
export const EXTRACTIVE_CUE_BONUS = 1.6;
/**
 * A unit with none of the key terms in its own text is quoted only with an answer cue and when its
 * heading and passage title cover at least this share of the key terms ("let the water run for five
 * full minutes", under "Flushing a new cartridge", for "How long should I flush a new cartridge?").
 */
export const EXTRACTIVE_SUBJECT_ONLY_COVERAGE = 0.5;

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

/**
 * Words of how questions are asked rather than what they are about ("how far", "how many", "what
 * does it mean", "the best way to"): not key terms, since documents answer such questions without
 * using them (full-text search still looks for them). src/chat/evidence.ts re-exports it.
 */
export const QUESTION_WORDS: ReadonlySet<string> = new Set([
  'far', 'long', 'many', 'much', 'often', 'mean', 'means', 'meaning', 'best', 'way', 'ways', 'good', 'better',
  'explain', 'describe', 'show', 'know', 'need', 'want', 'possible', 'work', 'works', 'use', 'using', 'get', 'make',
  'does', 'difference', 'example', 'examples', 'thing', 'things', 'kind', 'type',
]);
const QUESTION_STEMS: ReadonlySet<string> = new Set([...QUESTION_WORDS].map(stem));

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
export const tokenizeTerms: (text: string) => string[] = memoText(tokenizeTermsOnce, { copy: (a) => [...a] });

function tokenizeTermsOnce(text: string): string[] {
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

/** "NAME — what it does" (an em dash between a name in capitals or an identifier and a lower-case description). */
const REFERENCE_ENTRY = /^[\p{Lu}\p{N}_ ]{2,}\s—\s\p{Ll}|^[\w.]+\s—\s\p{Ll}/u;

/**
 * A SQL synopsis line ("ALTER SYSTEM SET p { TO | = } { value | DEFAULT }"): it opens with a
 * statement and its bars are all inside { } or [ ] (alternatives), so it is code, not a table row.
 */
function isSynopsis(line: string): boolean {
  if (!CODE_START.test(line)) return false;
  let outside = line;
  for (let prev = ''; prev !== outside; ) {
    prev = outside;
    outside = outside.replace(/\{[^{}]*\}|\[[^[\]]*\]/g, '');
  }
  return !outside.includes('|');
}

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
      // "ALTER SYSTEM — change a server configuration parameter": a reference page's name line (a
      // heading), or, several in a row, a list of such entries (a table of contents, never quoted).
      const entries = current.every((l) => REFERENCE_ENTRY.test(l));
      const code = !entries && looksLikeCode(raw);
      const kind: SentenceKind = entries ? (current.length === 1 ? 'heading' : 'table') : code ? 'code' : title ? 'heading' : 'prose';
      blocks.push({ lines: code ? raw : current, kind, list: currentIsList });
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
    const special: SentenceKind | null = heading || shouting ? 'heading' : isNavLine(line) ? 'nav' : isTableRow(line) && !isSynopsis(line) ? 'table' : null;
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
export const keyTerms: (text: string) => string[] = memoText(keyTermsOnce, { copy: (a) => [...a] });

function keyTermsOnce(text: string): string[] {
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
  /** The first sentence under its heading (an entry's definition: "Maximum time between automatic WAL checkpoints."). */
  leadsSection: boolean;
}

/** Quotable units of the passages: prose sentences (with the code they introduce) and code blocks. */
function quotableUnits(passages: readonly ContextPassage[]): Unit[] {
  const units: Unit[] = [];
  passages.forEach((p, passageIndex) => {
    let subject = '';
    let sectionStart = true;
    const segs = segments(p.text);
    segs.forEach((seg, order) => {
      if (seg.kind === 'heading') {
        subject = seg.text;
        sectionStart = true;
      }
      if (seg.kind !== 'prose' && seg.kind !== 'code') return;
      // A prose unit is a sentence: enough words, lower-case letters, and an end unless it is a list
      // item (titles and fragments such as "Example 11.8. Setting up a Partial Index" have none).
      if (seg.kind === 'prose' && (seg.text.split(/\s+/).length < EXTRACTIVE_MIN_SENTENCE_WORDS || !/\p{Ll}/u.test(seg.text) || (!seg.list && !SENTENCE_END.test(seg.text)))) return;
      const next = segs[order + 1];
      const code = seg.kind === 'prose' && /:$/.test(seg.text) && next?.kind === 'code' ? next.text : null;
      units.push({ passageIndex, order, n: p.n, kind: seg.kind, text: seg.text, code, subject, title: p.title, leadsSection: sectionStart && subject !== '' && seg.kind === 'prose' });
      sectionStart = false;
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

/** Per-question scoring context: key terms, their weights and the answer cues the question asks for. */
interface QuestionModel {
  terms: string[];
  /** idf over the passages × identifier / acronym multiplier. */
  weight: Map<string, number>;
  cues: AnswerCues;
}

/** The shapes of answer a question asks for (pure reading of the question's wording). */
export interface AnswerCues {
  /** "default value of X": a sentence stating a default with a value. */
  defaultValue: boolean;
  /** "how long", "how often": a duration. */
  duration: boolean;
  /** "how many", "how much": a number. */
  quantity: boolean;
  /** "what is X", "what are X", "what does X do": key terms of X (a definition starts with them). */
  definitionOf: string[] | null;
  /** "how do I …", "how to …": a procedure, so a code block on its own may be the answer. */
  procedure: boolean;
  /** "the difference between X and Y", "X vs Y": key terms of X and Y (an answer names both; contrasting them counts twice). */
  contrastOf: string[] | null;
}

const NUMBER_WORDS = 'one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|sixty|hundred|a few|several';
const DURATION = new RegExp(`\\b(?:\\d+(?:[.,]\\d+)?|${NUMBER_WORDS})\\s+(?:\\p{L}+\\s+)?(?:milliseconds?|seconds?|minutes?|hours?|days?|weeks?|months?|years?|ms|s|min|h)\\b`, 'iu');
const QUANTITY = new RegExp(`\\d|\\b(?:${NUMBER_WORDS})\\b`, 'i');
/** A default stated with its value: "The default is 128MB", "defaults to -1", "default value is four megabytes". */
const DEFAULT_VALUE = /\bdefaults?\b(?:\s+\w+){0,3}\s+(?:is|are|to|of)\b.*(?:\d|\b(?:on|off|true|false|none|empty|zero|one|two|three|four|five|ten)\b|['"‘“])/i;
const DEFINITION_QUESTION = /^\s*(?:what|who)\s+(?:is|are)\s+(?:a|an|the)?\s*(.+?)\s*\??\s*$|^\s*what\s+does\s+(?:a|an|the)?\s*(.+?)\s+(?:do|mean|control)\s*\??\s*$/i;
const CONTRAST_QUESTION = /\bdifferences?\s+between\s+(.+?)\s+and\s+(.+?)\s*\??\s*$|^(?:.*?\b)?(\S+)\s+(?:vs\.?|versus)\s+(\S+)/i;
/** Words that contrast two things ("whereas", "unlike", "while … stores"). */
const CONTRASTS = /\b(?:whereas|unlike|while|difference|differs?|instead|in contrast|on the other hand|rather than)\b/i;
/** A sentence that defines its opening words ("BRIN stands for …", "A partial index is an …"). */
const DEFINES = /^(?:\S+\s+){0,4}?(?:stands for|is an?|is the|are|means|refers to)\b/i;

/** Reads the answer cues of a question (see AnswerCues). Pure. */
export function answerCues(query: string): AnswerCues {
  const q = query.toLowerCase();
  const def = DEFINITION_QUESTION.exec(query);
  const contrast = CONTRAST_QUESTION.exec(query);
  const subject = def ? questionKeyTerms(def[1] ?? def[2] ?? '') : [];
  return {
    defaultValue: /\bdefaults?\b/.test(q),
    duration: /\bhow\s+(?:long|often)\b/.test(q),
    quantity: /\bhow\s+(?:many|much)\b/.test(q),
    definitionOf: subject.length > 0 ? subject : null,
    procedure: /\bhow\s+(?:do|can|should|would)\s+(?:i|we|you|one)\b|\bhow\s+to\b|^\s*(?:create|write|set|configure|enable|make|add|show me)\b/i.test(query),
    contrastOf: contrast ? questionKeyTerms(`${contrast[1] ?? contrast[3] ?? ''} ${contrast[2] ?? contrast[4] ?? ''}`) : null,
  };
}

/** How many of the answer shapes the question asks for the unit has (0: none). */
function cueCount(u: Unit, cues: AnswerCues): number {
  const text = u.text;
  let n = 0;
  if (cues.defaultValue && DEFAULT_VALUE.test(text)) n++;
  if (cues.duration && DURATION.test(text)) n++;
  if (cues.quantity && QUANTITY.test(text)) n++;
  if (cues.contrastOf) {
    const own = termSet(text);
    const named = cues.contrastOf.filter((t) => own.has(t)).length;
    // Naming both is a cue; naming both and contrasting them ("… while jsonb …") counts twice.
    if (named >= 2) n += CONTRASTS.test(text) ? 2 : 1;
  }
  if (cues.definitionOf && u.leadsSection && cues.definitionOf.includes(keyTerms(u.subject)[0] ?? '')) {
    // The first sentence under the entry of what the question asks about ("checkpoint_timeout (integer)").
    n++;
  } else if (cues.definitionOf) {
    const words = tokenizeTerms(text);
    const opening = words.slice(0, cues.definitionOf.length + 2);
    const first = words[0];
    if (cues.definitionOf.every((t) => opening.includes(t)) || (first !== undefined && cues.definitionOf.includes(first) && DEFINES.test(text))) n++;
  }
  return n;
}

/**
 * The question's key terms for quoting: keyTerms minus QUESTION_WORDS ("How long should I flush…"
 * is about flushing, not about "long").
 */
export function questionKeyTerms(query: string): string[] {
  // "What does X control?": the closing verb is how the question asks ("control", "do", "mean").
  const asked = DEFINITION_QUESTION.exec(query);
  const verb = asked?.[2] !== undefined ? stem((/(\p{L}+)\s*\??\s*$/u.exec(query)?.[1] ?? '').toLowerCase()) : '';
  const terms = keyTerms(query).filter((t) => t !== verb || isCompound(t));
  const content = terms.filter((t) => !QUESTION_STEMS.has(t) && !QUESTION_WORDS.has(t));
  return content.length > 0 ? content : terms;
}

/** Key terms the question writes as an acronym or SQL keyword in capitals (BRIN, TOAST, VACUUM). */
function acronyms(query: string): Set<string> {
  return new Set([...query.matchAll(/\b\p{Lu}{2,}\b/gu)].flatMap((m) => keyTerms(m[0])));
}

/** Builds the scoring context: key terms weighted by idf over the passages and by kind. */
function questionModel(query: string, passages: readonly ContextPassage[]): QuestionModel {
  const terms = questionKeyTerms(query);
  const caps = acronyms(query);
  const passageTerms = passages.map((p) => termSet(`${p.title}\n${p.text}`));
  const weight = new Map<string, number>();
  for (const t of terms) {
    const df = passageTerms.filter((s) => s.has(t)).length;
    // BM25-style idf, kept positive so a term present everywhere still counts a little.
    const idf = Math.log(1 + (passages.length - df + 0.5) / (df + 0.5));
    weight.set(t, idf * (isCompound(t) ? EXTRACTIVE_IDENTIFIER_WEIGHT : caps.has(t) ? EXTRACTIVE_ACRONYM_WEIGHT : 1));
  }
  return { terms, weight, cues: answerCues(query) };
}

/**
 * Scores one unit: Σ w(t) over the question's key terms t (w = idf over the passages, ×
 * EXTRACTIVE_IDENTIFIER_WEIGHT for `work_mem`, × EXTRACTIVE_ACRONYM_WEIGHT for BRIN), 1 for a term
 * in the unit itself, EXTRACTIVE_SUBJECT_WEIGHT for one only in its heading or the passage title
 * (the sentence "The default value is four megabytes." is about `work_mem` because it sits under
 * that entry), EXTRACTIVE_PART_WEIGHT for a compound matched only by its parts; times the share of
 * key terms covered, × EXTRACTIVE_CUE_BONUS per answer cue it has, × EXTRACTIVE_RANK_DECAY per passage
 * down the ranking. null when the unit contains no key term itself, unless it has a cue and its
 * heading/title cover EXTRACTIVE_SUBJECT_ONLY_COVERAGE of the terms.
 */
function scoreUnit(u: Unit, m: QuestionModel): number | null {
  // A code block alone answers only a procedure ("How do I …?"); otherwise it is quoted after the
  // sentence that introduces it.
  if (u.kind === 'code' && !m.cues.procedure) return null;
  const c = unitCoverage(u, m.terms);
  const cues = cueCount(u, m.cues);
  if (c.own.size === 0 && !(cues > 0 && c.subject.size >= m.terms.length * EXTRACTIVE_SUBJECT_ONLY_COVERAGE)) return null;
  const w = (t: string) => m.weight.get(t) ?? 0;
  let score = 0;
  for (const t of c.own) score += w(t);
  // An identifier named by the unit's own heading is what the unit is the entry of: full weight.
  const entry = new Set(keyTerms(u.subject).slice(0, 1));
  for (const t of c.subject) score += w(t) * (isCompound(t) && entry.has(t) ? 1 : EXTRACTIVE_SUBJECT_WEIGHT);
  for (const t of c.parts) score += w(t) * EXTRACTIVE_PART_WEIGHT;
  // Covering more of the question counts twice: "The default value is 4MB" (default, value, under
  // work_mem) beats "If this value is specified without units…" (value, under work_mem).
  score = (score * (c.own.size + c.subject.size)) / m.terms.length;
  return score * EXTRACTIVE_CUE_BONUS ** cues * EXTRACTIVE_RANK_DECAY ** u.passageIndex;
}

/** True when the unit's own heading names identifiers (compounds) none of which the question asks about. */
function aboutSomethingElse(u: Unit, terms: readonly string[]): boolean {
  const asked = terms.filter(isCompound);
  const named = keyTerms(u.subject).filter(isCompound);
  return asked.length > 0 && named.length > 0 && !named.some((t) => asked.includes(t));
}

/**
 * Picks what to quote: prose sentences (never headings, table rows or navigation) and code blocks
 * that contain at least one of the question's key terms (or answer it by their shape under a
 * heading that names the question, see scoreUnit), scored by scoreUnit, best first with ties broken
 * by passage rank, at most `maxSentences` and none below EXTRACTIVE_RELATIVE_SCORE of the best,
 * then re-sorted into passage order. Units under another identifier's heading (hash_mem_multiplier's
 * entry when asked about work_mem) are used only when no other unit qualifies. Nothing is picked
 * unless the chosen units together (with their headings) cover at least EXTRACTIVE_MIN_COVERAGE of
 * the key terms: one shared word with an off-topic question is not an answer. Pure and deterministic.
 */
export function selectSentences(query: string, passages: ContextPassage[], maxSentences = EXTRACTIVE_MAX_SENTENCES): SelectedSentence[] {
  if (passages.length === 0) return [];
  const m = questionModel(query, passages);
  const terms = m.terms;
  if (terms.length === 0) return [];
  const scored: Array<Unit & { score: number; key: string; offSubject: boolean; cue: boolean }> = [];
  for (const u of quotableUnits(passages)) {
    const score = scoreUnit(u, m);
    if (score !== null && score > 0) scored.push({ ...u, score, key: tokenizeTerms(u.text).join(' '), offSubject: aboutSomethingElse(u, terms), cue: cueCount(u, m.cues) > 0 });
  }
  const onSubject = scored.filter((u) => !u.offSubject);
  const pool = onSubject.length > 0 ? onSubject : scored;
  // The best unit with the shape of the answer (a definition, a default with its value) leads.
  const lead = pool.filter((u) => u.cue).sort((a, b) => b.score - a.score)[0];
  pool.sort((a, b) => Number(b === lead) - Number(a === lead) || b.score - a.score || a.passageIndex - b.passageIndex || a.order - b.order);
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
  // Passage order (retrieval's), except that the passage of the unit with the shape of the answer
  // comes first; units in text order.
  const first = lead !== undefined && chosen.includes(lead) ? lead.passageIndex : -1;
  chosen.sort((a, b) => Number(b.passageIndex === first) - Number(a.passageIndex === first) || a.passageIndex - b.passageIndex || a.order - b.order);
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
    for (const [i, piece] of pieces.entries()) {
      const cost = estimateTokens(piece);
      if (used + cost > req.sampling.maxTokens) {
        finishReason = 'length';
        break;
      }
      // Yield now and then so that an abort (or a slow client) can interleave with the stream, like
      // a real model. Not after every word: on a busy server each yield waits a whole event-loop turn
      // (20-40 ms while an ingest ran), and a 100-word answer took ~1 s to "generate".
      if (i % EXTRACTIVE_YIELD_WORDS === 0) await yieldToEventLoop();
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
