/**
 * Pure formatting of what goes into the answer prompt: the numbered context passages, the
 * conversation history, and budget fitting when the prompt would overflow the model's context.
 * Passage numbers are 1-based positions in the chunk list, so [n] in an answer means chunks[n-1].
 */
import path from 'node:path';
import type { ChatMessage, ContextPassage } from '../core/llm/types.ts';
import { ValidationError } from '../core/errors.ts';
import type { RetrievedChunk } from './types.ts';

/** Separator between passages in the formatted context. */
export const PASSAGE_SEPARATOR = '\n\n';
/** What the context variable says when retrieval found nothing (so the model says it does not know). */
export const NO_CONTEXT = '(no passages were found for this question)';
/** Each history turn is cut to this many characters (long earlier answers would crowd out the context). */
export const HISTORY_TURN_MAX_CHARS = 1500;

/**
 * A short, stable source label: the file name for paths (the directory layout is noise to a model and
 * need not leave the machine), the URL as is for URLs.
 */
export function sourceLabel(source: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source) && !source.startsWith('file://')) return source;
  return path.basename(source.replace(/^file:\/\//, '')) || source;
}

/** One passage block: "[n] Title › Heading (source: file.md)" then the chunk text. */
export function formatPassage(chunk: RetrievedChunk, n: number): string {
  const label = [chunk.title.trim(), chunk.headingPath.trim()].filter((s) => s !== '').join(' › ');
  const src = sourceLabel(chunk.source);
  const header = `[${n}] ${label || src}${label && src ? ` (source: ${src})` : ''}`;
  return `${header}\n${chunk.text.trim()}`;
}

/** The numbered context block [1]..[n] in chunk order; NO_CONTEXT when there are no chunks. */
export function formatContext(chunks: RetrievedChunk[]): string {
  if (chunks.length === 0) return NO_CONTEXT;
  return chunks.map((c, i) => formatPassage(c, i + 1)).join(PASSAGE_SEPARATOR);
}

/**
 * The conversation so far as "User: …" / "Assistant: …" lines. System turns are skipped; citation
 * markers are removed from earlier answers because their numbers referred to an earlier context and
 * would mislead the model. Each turn is cut to `maxCharsPerTurn` (default HISTORY_TURN_MAX_CHARS).
 * Returns "" for no turns (the template then omits the history block).
 */
export function formatHistory(turns: ChatMessage[], opts: { maxCharsPerTurn?: number } = {}): string {
  const max = opts.maxCharsPerTurn ?? HISTORY_TURN_MAX_CHARS;
  const lines: string[] = [];
  for (const t of turns) {
    if (t.role === 'system') continue;
    let text = t.role === 'assistant' ? stripCitationMarkers(t.content) : t.content;
    text = text.replace(/\s+/g, ' ').trim();
    if (text === '') continue;
    if (text.length > max) {
      const cut = text.slice(0, max);
      const space = cut.lastIndexOf(' ');
      text = `${space > max / 2 ? cut.slice(0, space) : cut}…`;
    }
    lines.push(`${t.role === 'user' ? 'User' : 'Assistant'}: ${text}`);
  }
  return lines.join('\n');
}

function stripCitationMarkers(text: string): string {
  return text.replace(/\s*\[\s*\d+(?:\s*(?:[,;]|[-–])\s*\d+)*\s*\]/g, '');
}

/** The passages handed to the model alongside the prompt (same numbering as formatContext). */
export function toPassages(chunks: RetrievedChunk[]): ContextPassage[] {
  return chunks.map((c, i) => ({ n: i + 1, text: c.text, title: c.title, source: c.source }));
}

/**
 * Keeps the best-ranked chunks whose formatted context fits `budgetTokens`, dropping the
 * lowest-ranked (last) ones first and never cutting a chunk. `kept` is therefore a prefix of `chunks`,
 * so passage numbers do not change. Token cost = each formatted passage plus the separators between
 * them, as counted by `countTokens`.
 * @throws ValidationError for a budget that is not a finite number.
 */
export function fitContext(
  chunks: RetrievedChunk[],
  budgetTokens: number,
  countTokens: (text: string) => number,
): { kept: RetrievedChunk[]; dropped: RetrievedChunk[] } {
  if (!Number.isFinite(budgetTokens)) throw new ValidationError(`context budget must be a finite number of tokens, got ${budgetTokens}`);
  const separatorCost = countTokens(PASSAGE_SEPARATOR);
  let used = 0;
  let keep = 0;
  for (const [i, chunk] of chunks.entries()) {
    const cost = countTokens(formatPassage(chunk, i + 1)) + (i > 0 ? separatorCost : 0);
    if (used + cost > budgetTokens) break;
    used += cost;
    keep = i + 1;
  }
  return { kept: chunks.slice(0, keep), dropped: chunks.slice(keep) };
}
