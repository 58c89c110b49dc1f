/**
 * Turns a generated answer into its final text plus a citation list. Pure.
 *
 * Markers: `[n]`, `[1, 2]`, `[1; 2]`, `[1-3]` (also en dash) and runs like `[1][2]`; `[n]` refers to
 * chunks[n-1] (the numbering of formatContext). Markers inside code (``` fences or `inline`) and
 * markdown links (`[1](url)`) are left alone. Numbers pointing at no chunk are removed (a group keeps
 * its valid numbers), with the spacing tidied, and a marker left unfinished at the very end of a
 * truncated answer (`… [2`) is dropped.
 */
import { segmentSentences, tokenizeTerms } from '../core/llm/extractive.ts';
import { CITATION_MARKER, expandMarker } from '../shared/markers.ts';
import type { RetrievedChunk } from './types.ts';

/** Longest snippet, in characters (ellipsis included). */
export const SNIPPET_MAX_CHARS = 240;
export { MAX_RANGE_WIDTH } from '../shared/markers.ts';

/** Trailing path segments a citation shows of a local document's path (the file and its 2 parent folders). */
export const DISPLAY_SOURCE_SEGMENTS = 3;

/**
 * What a client sees as a citation's source: a URL as is; for a file, the last
 * DISPLAY_SOURCE_SEGMENTS segments of its path (`docs/manuals/x3.md`), never the server's absolute
 * path (which stays in the database). No ingest root is recorded per document, so the trailing
 * segments are the stable, config-free choice. Pure.
 */
export function displaySource(source: string, segments = DISPLAY_SOURCE_SEGMENTS): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source) && !/^file:\/\//i.test(source)) return source;
  const parts = source
    .replace(/^file:\/\//i, '')
    .split(/[\\/]+/)
    .filter((p) => p !== '' && p !== '.' && !/^[a-z]:$/i.test(p));
  return parts.slice(-segments).join('/') || source;
}

/** Coarse relevance shown to people instead of a raw score (see relevanceLabel). */
export type Relevance = 'high' | 'medium' | 'low';
/** A citation is 'high' when its score is at least this share of the best retrieved chunk's score. */
export const RELEVANCE_HIGH_RATIO = 0.75;
/** … and 'medium' from this share (below: 'low'). */
export const RELEVANCE_MEDIUM_RATIO = 0.4;

export interface Citation {
  /** Its number in the final answer: 1..k in order of first citation, without gaps. */
  n: number;
  document_id: number;
  /** The first cited chunk of this document section. */
  chunk_id: number;
  /**
   * Every cited chunk merged into this citation (same document and heading path), in citation order.
   * `chunk_ids`, `heading`, `page` and `relevance` are set on every new answer; messages logged
   * before they existed lack them (hence optional).
   */
  chunk_ids?: number[];
  /** See displaySource: a URL, or the document's path shortened to its last segments. */
  source: string;
  title: string;
  /** The chunk's heading path inside the document ("" at the top). */
  heading?: string;
  /** 1-based page of a PDF document, null for other kinds. */
  page?: number | null;
  /**
   * The retrieval score (reciprocal-rank fusion after personalization): only comparable within one
   * answer, kept in the API for compatibility; people see `relevance`.
   */
  score: number;
  /** The score relative to the best retrieved chunk's, as a word (RELEVANCE_*_RATIO). */
  relevance?: Relevance;
  /** The most relevant excerpt of the chunk (≤ SNIPPET_MAX_CHARS characters). */
  snippet: string;
}

/** 'high' / 'medium' / 'low' for `score` relative to `best` (the top retrieved chunk's score). Pure. */
export function relevanceLabel(score: number, best: number): Relevance {
  const ratio = best > 0 && Number.isFinite(score) ? score / best : 0;
  return ratio >= RELEVANCE_HIGH_RATIO ? 'high' : ratio >= RELEVANCE_MEDIUM_RATIO ? 'medium' : 'low';
}

/** The page a PDF chunk's heading path names (`… > page 3`, written by the PDF loader); null otherwise. */
export function pageOf(source: string, headingPath: string): number | null {
  if (!/\.pdf$/i.test(source)) return null;
  const m = /(?:^|\s>\s)page (\d+)$/.exec(headingPath);
  return m ? Number(m[1]) : null;
}

/** [start, end) ranges of fenced code blocks and inline code spans. */
function codeRanges(text: string): [number, number][] {
  const ranges: [number, number][] = [];
  for (const m of text.matchAll(/```[\s\S]*?(?:```|$)|`[^`\n]*`/g)) ranges.push([m.index, m.index + m[0].length]);
  return ranges;
}

/** The answer sentence a marker at `start`..`end` belongs to (the text before it, or after it at a sentence start). */
function citingSentence(answer: string, start: number, end: number): string {
  // Drop the markers and spaces directly before this one ("claim [1][2]" → "claim").
  const left = answer.slice(0, start).replace(/(?:\s*\[[^\]\n]*\])*\s*$/, '');
  let boundary = 0;
  for (const m of left.matchAll(/[.!?]["')\]]*\s+|\n/g)) boundary = m.index + m[0].length;
  const before = left.slice(boundary).trim();
  if (tokenizeTerms(before).length > 0) return before;
  // "[1] The lamp …" style: the claim follows the marker.
  const right = answer.slice(end);
  const stop = right.search(/[.!?](?:\s|$)|\n/);
  return (stop === -1 ? right : right.slice(0, stop + 1)).trim();
}

function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  return `${(space > max / 2 ? cut.slice(0, space) : cut).replace(/[\s,;:]+$/, '')}…`;
}

/**
 * The chunk's excerpt most relevant to the answer sentence(s) citing it: the chunk sentence covering
 * the largest share of a citing sentence's terms (the first citing sentence wins ties), extended by
 * neighbouring sentences that also share terms while it stays within `maxChars` (default
 * SNIPPET_MAX_CHARS); the chunk's start when nothing is shared. Headings are never the snippet.
 */
export function bestSnippet(chunkText: string, citing: string | string[], maxChars = SNIPPET_MAX_CHARS): string {
  const targets = (Array.isArray(citing) ? citing : [citing]).map((c) => new Set(tokenizeTerms(c))).filter((t) => t.size > 0);
  const sentences = segmentSentences(chunkText)
    .filter((s) => s.kind !== 'heading')
    .map((s) => s.text);
  // Coverage of the best-matching citing sentence, minus a tiny per-citing-sentence offset so that
  // the first citation wins a tie.
  const scores = sentences.map((s) => {
    const terms = new Set(tokenizeTerms(s));
    let best = 0;
    targets.forEach((target, j) => {
      let shared = 0;
      for (const t of target) if (terms.has(t)) shared++;
      if (shared > 0) best = Math.max(best, shared / target.size - j * 1e-6);
    });
    return best;
  });
  let best = -1;
  scores.forEach((s, i) => {
    if (s > 0 && (best === -1 || s > (scores[best] ?? 0))) best = i;
  });
  if (best === -1) return truncate(chunkText.replace(/\s+/g, ' ').trim(), maxChars);
  let lo = best;
  let hi = best;
  let text = sentences[best] ?? '';
  // Grow towards whichever neighbour shares more terms, while the excerpt still fits.
  for (;;) {
    const prev = lo > 0 ? (scores[lo - 1] ?? 0) : 0;
    const next = hi < sentences.length - 1 ? (scores[hi + 1] ?? 0) : 0;
    if (prev === 0 && next === 0) break;
    const takeNext = next >= prev;
    const candidate = takeNext ? `${text} ${sentences[hi + 1]}` : `${sentences[lo - 1]} ${text}`;
    if (candidate.length > maxChars) break;
    text = candidate;
    if (takeNext) hi++;
    else lo--;
  }
  return truncate(text, maxChars);
}

/** The key that merges citations: one per document section (document + heading path). */
function sectionKey(c: RetrievedChunk): string {
  return `${c.documentId}\u0000${c.headingPath}`;
}

/**
 * Validates, merges and renumbers the [n] markers of `answer` against `chunks` (n = chunks[n-1]).
 * Cited chunks of one document section (same document and heading path) become one citation;
 * citations are numbered 1..k in order of first citation and every marker is rewritten to the new
 * numbers (a group citing one section twice keeps it once: "[2, 5]" → "[1]").
 * @returns the tidied answer and one Citation per cited section, in order of first citation.
 */
export function finalizeCitations(answer: string, chunks: RetrievedChunk[]): { answer: string; citations: Citation[] } {
  const code = codeRanges(answer);
  const inCode = (i: number): boolean => code.some(([a, b]) => i >= a && i < b);
  let out = '';
  let pos = 0;
  /** Section key → its new number, chunk indexes (1-based k) and citing sentences. */
  const sections = new Map<string, { n: number; ks: number[]; citing: string[] }>();

  for (const m of answer.matchAll(CITATION_MARKER)) {
    const start = m.index;
    const end = start + m[0].length;
    if (inCode(start) || answer[end] === '(') continue;
    const numbers = expandMarker(m[1] ?? '');
    const valid = (numbers ?? []).filter((k) => Number.isInteger(k) && k >= 1 && k <= chunks.length);
    out += answer.slice(pos, start);
    pos = end;
    if (valid.length > 0) {
      const sentence = citingSentence(answer, start, end);
      const renumbered: number[] = [];
      for (const k of valid) {
        const key = sectionKey(chunks[k - 1] as RetrievedChunk);
        let section = sections.get(key);
        if (!section) sections.set(key, (section = { n: sections.size + 1, ks: [], citing: [] }));
        if (!section.ks.includes(k)) section.ks.push(k);
        section.citing.push(sentence);
        if (!renumbered.includes(section.n)) renumbered.push(section.n);
      }
      out += `[${renumbered.join(', ')}]`;
    } else if (/^(?:[.,;:!?)\]\s]|$)/.test(answer.slice(end, end + 1))) {
      // Removing "[9]": "claim [9]." → "claim."; "claim [9] more" → "claim more" (the space after
      // stays); before a word or another marker the space is kept ("claim [9][1]" → "claim [1]").
      out = out.replace(/[ \t]+$/, '');
    }
  }
  out += answer.slice(pos);
  // An unfinished marker at the very end (answer cut by max_tokens): "... [2" or "... [1, ".
  const tail = /\s*\[[\d\s,;\-–]*$/.exec(out);
  if (tail && !codeRanges(out).some(([a, b]) => tail.index >= a && tail.index < b)) out = out.slice(0, tail.index);
  // "[1][1]" after merging two chunks of one section: one marker is enough.
  out = out.replace(/(\[\d+(?:, \d+)*\])(?:\1)+/g, '$1');

  const best = Math.max(0, ...chunks.map((c) => c.score));
  const citations: Citation[] = [...sections.values()].map((s) => {
    const first = chunks[(s.ks[0] as number) - 1] as RetrievedChunk;
    const merged = s.ks.map((k) => chunks[k - 1] as RetrievedChunk);
    const top = Math.max(...merged.map((c) => c.score));
    return {
      n: s.n,
      document_id: first.documentId,
      chunk_id: first.chunkId,
      chunk_ids: merged.map((c) => c.chunkId),
      source: displaySource(first.source),
      title: first.title,
      heading: first.headingPath,
      page: pageOf(first.source, first.headingPath),
      score: top,
      relevance: relevanceLabel(top, best),
      snippet: bestSnippet(first.text, s.citing),
    };
  });
  return { answer: out, citations };
}
