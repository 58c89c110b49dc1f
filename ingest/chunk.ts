/**
 * Chunker: LoadedDocument → ChunkDraft[]. Pure and deterministic (same input → identical output).
 *
 * Consecutive small sections are first packed together while they fit one chunk (their own headings
 * kept as lines in the text, the chunk's heading path being the deepest path they share), so a
 * document of many short sections does not turn into many tiny chunks: fewer, fuller chunks embed
 * faster and carry more context. Each packed or large section is then split on its own with
 * LangChain's RecursiveCharacterTextSplitter (markdown-aware separators for markdown), so a chunk
 * never spans two unrelated large sections.
 * Sizes are measured in UTF-16 code units ("chars", JavaScript's `string.length`).
 */
import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';
import { ValidationError } from '../src/core/errors.ts';
import type { ChunkDraft, LoadedDocument, Section, TokenCounter } from './types.ts';

/** Default maximum chunk length, in chars. Around 200–250 BERT tokens of English: fits a 512-token embedder. */
export const CHUNK_SIZE_CHARS = 1000;
/** Default overlap between consecutive chunks of one section, in chars (whole splits, so often less). */
export const CHUNK_OVERLAP_CHARS = 150;
/** Pieces shorter than this (chars, after trimming) are merged into a neighbour of the same section when the result still fits. */
export const MIN_CHUNK_CHARS = 20;
/** Separator between heading path elements in ChunkDraft.headingPath. */
export const HEADING_PATH_SEPARATOR = ' > ';
/** Longest stretch of splitting between two yields to the event loop, in ms. */
export const CHUNK_SLICE_MS = 20;

/** Options for {@link chunkDocument}. */
export interface ChunkOptions {
  /** Maximum chunk length in chars (integer ≥ 1). Default {@link CHUNK_SIZE_CHARS}. */
  chunkSizeChars?: number;
  /**
   * Overlap in chars (integer, 0 ≤ overlap < chunkSizeChars). Default {@link CHUNK_OVERLAP_CHARS},
   * lowered to 15% of chunkSizeChars when a smaller chunk size is given without an overlap.
   */
  chunkOverlapChars?: number;
}

interface Span {
  start: number;
  end: number;
}

/**
 * Splits a document into chunks: ord is 0..n-1 over the whole document, text is trimmed and never
 * whitespace-only, headingPath is the section's path joined with " > ", tokenCount = countTokens(text).
 *
 * @throws ValidationError when chunkSizeChars / chunkOverlapChars are not valid integers as documented.
 */
export async function chunkDocument(doc: LoadedDocument, countTokens: TokenCounter, opts: ChunkOptions = {}): Promise<ChunkDraft[]> {
  const { sizeChars, overlapChars } = resolveSizes(opts);
  const splitter =
    doc.kind === 'text/markdown'
      ? RecursiveCharacterTextSplitter.fromLanguage('markdown', { chunkSize: sizeChars, chunkOverlap: overlapChars })
      : new RecursiveCharacterTextSplitter({ chunkSize: sizeChars, chunkOverlap: overlapChars });

  const chunks: ChunkDraft[] = [];
  let sliceStart = performance.now();
  // JSON records are units of their own (an FAQ entry, a ticket) and PDF sections are pages (their
  // number is what a citation shows): never packed together.
  const sections = doc.kind === 'application/json' || doc.kind === 'application/pdf' ? doc.sections : packSections(doc.sections, sizeChars);
  for (const section of sections) {
    const headingPath = section.headingPath.join(HEADING_PATH_SEPARATOR);
    for (const text of await splitSection(splitter, section.text, sizeChars, overlapChars)) {
      chunks.push({ ord: chunks.length, text, headingPath, tokenCount: countTokens(text) });
    }
    // A 30 MB upload is seconds of splitting: a server (which runs uploads' ingests) keeps answering.
    if (performance.now() - sliceStart >= CHUNK_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  return chunks;
}

/** A heading written into packed text as a line of its own (markdown style, so it reads as one). */
function headingLine(path: readonly string[], depth: number): string {
  return `${'#'.repeat(Math.min(depth + 1, 6))} ${path.slice(depth).join(HEADING_PATH_SEPARATOR)}`;
}

function commonPrefix(a: readonly string[], b: readonly string[]): string[] {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/**
 * Packs runs of consecutive sections whose combined text (with their headings as lines) fits
 * `sizeChars` into one section under their shared heading path. Sections that do not fit stay alone.
 * Pure and order-preserving.
 */
export function packSections(sections: readonly Section[], sizeChars: number): Section[] {
  const out: Section[] = [];
  let run: Section[] = [];
  const render = (members: Section[]): Section => {
    if (members.length === 1) return members[0]!;
    const shared = members.map((m) => m.headingPath).reduce((a, b) => commonPrefix(a, b));
    const text = members
      .map((m) => (m.headingPath.length > shared.length ? `${headingLine(m.headingPath, shared.length)}\n\n${m.text}` : m.text))
      .join('\n\n');
    return { headingPath: shared, text };
  };
  for (const section of sections) {
    // Nothing to index, and it must not leave a bare heading line behind.
    if (section.text.trim() === '') continue;
    const candidate = [...run, section];
    if (run.length > 0 && render(candidate).text.length > sizeChars) {
      out.push(render(run));
      run = [section];
    } else {
      run = candidate;
    }
  }
  if (run.length > 0) out.push(render(run));
  return out;
}

function resolveSizes(opts: ChunkOptions): { sizeChars: number; overlapChars: number } {
  const sizeChars = opts.chunkSizeChars ?? CHUNK_SIZE_CHARS;
  if (!Number.isInteger(sizeChars) || sizeChars < 1) throw new ValidationError(`chunkSizeChars must be an integer >= 1, got ${sizeChars}`);
  const overlapChars = opts.chunkOverlapChars ?? Math.min(CHUNK_OVERLAP_CHARS, Math.floor(sizeChars * 0.15));
  if (!Number.isInteger(overlapChars) || overlapChars < 0 || overlapChars >= sizeChars) {
    throw new ValidationError(`chunkOverlapChars must be an integer >= 0 and < chunkSizeChars (${sizeChars}), got ${overlapChars}`);
  }
  return { sizeChars, overlapChars };
}

/** One section's text → trimmed, non-empty chunk texts of at most `sizeChars` chars. */
async function splitSection(splitter: RecursiveCharacterTextSplitter, text: string, sizeChars: number, overlapChars: number): Promise<string[]> {
  const pieces = (await splitter.splitText(text)).map((p) => p.trim()).filter((p) => p !== '');
  const spans = locatePieces(text, pieces, overlapChars);
  // Locating only fails if the splitter ever rewrote text; then keep its pieces as they are.
  if (spans === null) return pieces;
  return mergeTinySpans(spans, sizeChars).map((s) => text.slice(s.start, s.end).trim());
}

/**
 * Finds each piece in the source text. The splitter only cuts (never rewrites), so every piece is a
 * substring; the next one starts after the previous start and at most `overlapChars` before its end,
 * which keeps repeated phrases from matching an earlier occurrence.
 */
function locatePieces(text: string, pieces: readonly string[], overlapChars: number): Span[] | null {
  const spans: Span[] = [];
  for (const piece of pieces) {
    const prev = spans.at(-1);
    const from = prev ? Math.max(prev.start + 1, prev.end - overlapChars) : 0;
    let start = text.indexOf(piece, from);
    if (start === -1 && prev) start = text.indexOf(piece, prev.start + 1);
    if (start === -1) return null;
    spans.push({ start, end: start + piece.length });
  }
  return spans;
}

/**
 * Merges pieces shorter than {@link MIN_CHUNK_CHARS} into the previous piece (or lets a tiny piece
 * absorb the next one) when the merged span still fits `sizeChars`; drops a piece wholly inside its
 * predecessor (pure overlap). Works on spans of one section only, so merges never cross sections.
 */
function mergeTinySpans(spans: readonly Span[], sizeChars: number): Span[] {
  const merged: Span[] = [];
  for (const span of spans) {
    const prev = merged.at(-1);
    if (prev) {
      if (span.end <= prev.end) continue;
      const tiny = span.end - span.start < MIN_CHUNK_CHARS || prev.end - prev.start < MIN_CHUNK_CHARS;
      if (tiny && span.end - prev.start <= sizeChars) {
        prev.end = span.end;
        continue;
      }
    }
    merged.push({ ...span });
  }
  return merged;
}
