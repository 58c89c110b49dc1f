/**
 * Loaders: bytes of one file → LoadedDocument (title + sections of readable text).
 *
 * Pure: no filesystem, network or clock access; each loader gets the file's bytes and its name
 * (used only for the extension and as a fallback title). Every per-file failure is thrown as a
 * LoaderError whose `reason` is a stable LoadFailureCode:
 *
 * - `unsupported`  unknown extension (see {@link detectKind})
 * - `empty`        0 bytes, whitespace only, or no readable text once markup is removed
 * - `binary`       a NUL byte in the first 8 KiB of a text kind (.md, .txt, .html, .json …)
 * - `undecodable`  not valid UTF-8 (including UTF-16 files, which are reported as such)
 * - `parse_error`  invalid JSON / no JSON line parses, or a PDF that pdf.js cannot open — including
 *                  a ".pdf" that lacks the `%PDF-` header: the file does not parse as what its name
 *                  claims, which is a parse error rather than "binary content in a text file".
 */
import { Parser } from 'htmlparser2';
import { LoaderError } from '../src/core/errors.ts';
import type { DocumentKind, LoadedDocument, PageKind, Section } from './types.ts';

/** How many leading bytes are scanned for a NUL byte (8 KiB), like git's binary heuristic. */
export const BINARY_SNIFF_BYTES = 8192;
/** How far into a .pdf the `%PDF-` marker may start (1 KiB); the PDF spec tolerates leading junk. */
export const PDF_HEADER_SEARCH_BYTES = 1024;
/** A plain-text file's first line becomes its title only if it is at most this many characters. */
export const MAX_TITLE_LINE_CHARS = 120;
/** JSON fields tried, in order, for a record's text when no `jsonTextFields` option is given. */
export const DEFAULT_JSON_TEXT_FIELDS: readonly string[] = ['text', 'content', 'body', 'page_content'];

/** Options for {@link loadDocument}. */
export interface LoadOptions {
  /** JSON/JSONL: fields tried in order for a record's text. Default {@link DEFAULT_JSON_TEXT_FIELDS}. */
  jsonTextFields?: readonly string[];
}

const KIND_BY_EXTENSION: Readonly<Record<string, DocumentKind>> = {
  md: 'text/markdown',
  markdown: 'text/markdown',
  mdx: 'text/markdown',
  txt: 'text/plain',
  text: 'text/plain',
  rst: 'text/plain',
  log: 'text/plain',
  html: 'text/html',
  htm: 'text/html',
  xhtml: 'text/html',
  pdf: 'application/pdf',
  json: 'application/json',
  jsonl: 'application/json',
  ndjson: 'application/json',
};

/**
 * Kind of a file from its extension (case-insensitive); `null` when unsupported.
 * Accepts a bare name or a path with `/` or `\` separators.
 */
export function detectKind(fileName: string): DocumentKind | null {
  return KIND_BY_EXTENSION[extensionOf(fileName)] ?? null;
}

/**
 * Extracts the readable text of one file.
 *
 * @param bytes    the whole file; never mutated (a PDF is copied before pdf.js sees it)
 * @param fileName name or path, for the extension and the fallback title
 * @throws LoaderError with reason `unsupported`, `empty`, `binary`, `undecodable` or `parse_error`
 *         (see the module comment); any other error is a bug.
 */
export async function loadDocument(bytes: Uint8Array, fileName: string, opts: LoadOptions = {}): Promise<LoadedDocument> {
  const kind = detectKind(fileName);
  if (kind === null) {
    const ext = extensionOf(fileName);
    throw new LoaderError('unsupported', ext === '' ? 'unsupported file type (no extension)' : `unsupported file type ".${ext}"`);
  }
  if (bytes.length === 0) throw new LoaderError('empty', 'empty file (0 bytes)');
  const fallbackTitle = stemOf(fileName);
  if (kind === 'application/pdf') return loadPdf(bytes, fallbackTitle);

  const text = decodeText(bytes);
  if (text.trim() === '') throw new LoaderError('empty', 'file contains only whitespace');
  switch (kind) {
    case 'text/markdown':
      return parseMarkdown(text, fallbackTitle);
    case 'text/plain':
      return parsePlain(text, fallbackTitle);
    case 'text/html':
      return parseHtml(text, fallbackTitle, extensionOf(fileName) === 'xhtml');
    case 'application/json': {
      const fields = opts.jsonTextFields ?? DEFAULT_JSON_TEXT_FIELDS;
      return extensionOf(fileName) === 'json' ? parseJson(text, fallbackTitle, fields) : parseJsonLines(text, fallbackTitle, fields);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

function baseNameOf(fileName: string): string {
  return fileName.split(/[\\/]/).pop() ?? fileName;
}

/** Lower-cased extension without the dot; '' when there is none (".bashrc" has none either). */
function extensionOf(fileName: string): string {
  const base = baseNameOf(fileName);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

/** File name without directories and without its last extension: the fallback title. */
function stemOf(fileName: string): string {
  const base = baseNameOf(fileName);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
}

/**
 * UTF-8 bytes → string with `\n` line ends and no BOM.
 * @throws LoaderError `binary` on a NUL byte in the first {@link BINARY_SNIFF_BYTES}; `undecodable`
 *         on invalid UTF-8 or a UTF-16 byte-order mark.
 */
function decodeText(bytes: Uint8Array): string {
  const nul = bytes.subarray(0, BINARY_SNIFF_BYTES).indexOf(0);
  if (nul !== -1) {
    // UTF-16 text is full of NULs too; tell the user the actual problem (encoding, not binary).
    if (hasUtf16Bom(bytes)) throw new LoaderError('undecodable', 'text is UTF-16 encoded (byte order mark found); only UTF-8 is supported');
    throw new LoaderError('binary', `binary content (NUL byte at offset ${nul})`);
  }
  let text: string;
  try {
    // fatal: reject invalid sequences instead of silently inserting U+FFFD; the BOM is stripped by default.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    const at = firstInvalidUtf8Offset(bytes);
    throw new LoaderError('undecodable', `not valid UTF-8 text${at === -1 ? '' : ` (invalid byte sequence at offset ${at})`}`, { cause });
  }
  return text.replace(/\r\n?/g, '\n');
}

function hasUtf16Bom(bytes: Uint8Array): boolean {
  return (bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff);
}

/** Offset of the first byte that starts an invalid UTF-8 sequence, or -1. Only used for messages. */
function firstInvalidUtf8Offset(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    // Lead byte → sequence length and the allowed range of the 2nd byte (excludes overlongs and surrogates).
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b < 0x80) len = 1;
    else if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      const min = k === 1 ? lo : 0x80;
      const max = k === 1 ? hi : 0xbf;
      if (c === undefined || c < min || c > max) return i;
    }
    i += len;
  }
  return -1;
}

/** Drops leading/trailing blank lines and trailing whitespace but keeps the first line's indentation. */
function trimBlankLines(text: string): string {
  return text.replace(/^(?:[ \t]*\n)+/, '').trimEnd();
}

// ---------------------------------------------------------------------------------------------
// Plain text

function parsePlain(text: string, fallbackTitle: string): LoadedDocument {
  const body = trimBlankLines(text);
  const firstLine = body.split('\n', 1)[0]?.trim() ?? '';
  const title = firstLine !== '' && firstLine.length <= MAX_TITLE_LINE_CHARS ? firstLine : fallbackTitle;
  return { title, kind: 'text/plain', sections: [{ headingPath: [], text: body }] };
}

// ---------------------------------------------------------------------------------------------
// Markdown

interface OpenHeading {
  level: number;
  text: string;
}

interface Fence {
  char: string;
  length: number;
}

/** Splits off a leading `---` YAML front matter block; returns its `title:` and the remaining body. */
function splitFrontMatter(text: string): { title: string | null; body: string } {
  const match = /^---[ \t]*\n(?:([\s\S]*?)\n)?(?:---|\.\.\.)[ \t]*(?:\n|$)/.exec(text);
  if (!match) return { title: null, body: text };
  const yaml = match[1] ?? '';
  // Only a top-level scalar `title:`; a full YAML parser is not worth a dependency for one field.
  const titleLine = /^title:[ \t]*(.*)$/m.exec(yaml)?.[1]?.trim() ?? '';
  const quoted = /^(["'])(.*)\1$/.exec(titleLine);
  const title = quoted ? (quoted[2] ?? '') : titleLine.replace(/\s+#.*$/, '');
  return { title: title.trim() === '' ? null : title.trim(), body: text.slice(match[0].length) };
}

/** Opening code fence (``` or ~~~, 3+); any indentation so fences nested in list items count too. */
function matchFenceOpen(line: string): Fence | null {
  const m = /^\s*(`{3,}|~{3,})(.*)$/.exec(line);
  if (!m || m[1] === undefined) return null;
  // CommonMark: a backtick fence's info string may not contain backticks (that is inline code).
  if (m[1].startsWith('`') && (m[2] ?? '').includes('`')) return null;
  return { char: m[1][0]!, length: m[1].length };
}

function isFenceClose(line: string, fence: Fence): boolean {
  const m = /^\s*(`{3,}|~{3,})[ \t]*$/.exec(line);
  return m?.[1] !== undefined && m[1][0] === fence.char && m[1].length >= fence.length;
}

/** `## Heading ##` → level and text; null when the line is not an ATX heading. */
function matchAtxHeading(line: string): OpenHeading | null {
  const m = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$/.exec(line);
  if (!m || m[1] === undefined) return null;
  // A closing run of #s ("## Install ##") is decoration; "# #" is an empty heading.
  const raw = (m[2] ?? '').replace(/(?:^|[ \t]+)#+$/, '');
  return { level: m[1].length, text: plainInline(raw) };
}

/** Setext underline level: `===` → 1, `---` → 2 (2+ dashes: a lone `-` is an empty list item). */
function matchSetextUnderline(line: string): number | null {
  if (/^ {0,3}=+[ \t]*$/.test(line)) return 1;
  if (/^ {0,3}-{2,}[ \t]*$/.test(line)) return 2;
  return null;
}

/**
 * Whether the buffered lines end in a one-line paragraph that a setext underline can turn into a
 * heading. Multi-line setext headings are rare, so only a single line after a blank (or at the
 * start of the section) qualifies; list items, quotes, tables and indented code never do.
 */
function endsWithSetextCandidate(lines: readonly string[]): boolean {
  const last = lines.at(-1);
  if (last === undefined || last.trim() === '') return false;
  const before = lines.at(-2);
  if (before !== undefined && before.trim() !== '') return false;
  return !/^(?: {4}|\t|\s*(?:[-*+>|]|\d+[.)])(?:\s|$))/.test(last);
}

/** Heading text for a path: drop inline markup (`code`, **bold**, [link](url), images). */
function plainInline(text: string): string {
  return text
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`+([^`]*)`+/g, '$1')
    .replace(/(\*\*|__)(.+?)\1/g, '$2')
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * Markdown → sections split at ATX and setext headings (not inside fenced code). Section text is
 * the markdown between headings, code blocks included; the heading line itself is carried by
 * `headingPath`, not repeated in `text`. Heading-only sections are dropped.
 */
function parseMarkdown(text: string, fallbackTitle: string): LoadedDocument {
  const { title: frontTitle, body } = splitFrontMatter(text);
  const sections: Section[] = [];
  const stack: OpenHeading[] = [];
  let lines: string[] = [];
  let fence: Fence | null = null;
  let firstH1: string | null = null;

  const flush = (): void => {
    const sectionText = trimBlankLines(lines.join('\n'));
    if (sectionText !== '') sections.push({ headingPath: stack.map((h) => h.text), text: sectionText });
    lines = [];
  };
  const openHeading = (heading: OpenHeading): void => {
    flush();
    if (heading.text === '') return; // "#" alone: an empty heading names nothing; keep the current path.
    // Pop siblings and deeper levels so an h2 after an h3 replaces both.
    while ((stack.at(-1)?.level ?? 0) >= heading.level) stack.pop();
    stack.push(heading);
    if (heading.level === 1 && firstH1 === null) firstH1 = heading.text;
  };

  for (const line of body.split('\n')) {
    if (fence) {
      lines.push(line);
      if (isFenceClose(line, fence)) fence = null;
      continue;
    }
    const opened = matchFenceOpen(line);
    if (opened) {
      fence = opened;
      lines.push(line);
      continue;
    }
    const atx = matchAtxHeading(line);
    if (atx) {
      openHeading(atx);
      continue;
    }
    const setextLevel = matchSetextUnderline(line);
    if (setextLevel !== null && endsWithSetextCandidate(lines)) {
      const headingLine = lines.pop() ?? '';
      openHeading({ level: setextLevel, text: plainInline(headingLine) });
      continue;
    }
    lines.push(line);
  }
  flush();

  if (sections.length === 0) throw new LoaderError('empty', 'no text in markdown besides headings and front matter');
  return { title: frontTitle ?? firstH1 ?? fallbackTitle, kind: 'text/markdown', sections };
}

// ---------------------------------------------------------------------------------------------
// HTML

/** Elements whose whole subtree is not readable content. */
const SKIPPED_ELEMENTS = new Set(['script', 'style', 'noscript', 'template', 'svg', 'head', 'nav', 'footer', 'iframe', 'object', 'canvas']);
/** Block elements: 2 = paragraph break (blank line), 1 = line break. Others are inline. */
const BLOCK_BREAKS: ReadonlyMap<string, 1 | 2> = new Map<string, 1 | 2>([
  ...(['p', 'div', 'section', 'article', 'main', 'header', 'aside', 'blockquote', 'pre', 'table', 'ul', 'ol', 'dl', 'figure', 'form', 'fieldset', 'details', 'hr', 'address', 'hgroup', 'center'] as const).map((t) => [t, 2] as [string, 2]),
  ...(['br', 'li', 'tr', 'dt', 'dd', 'caption', 'figcaption', 'summary', 'legend', 'option'] as const).map((t) => [t, 1] as [string, 1]),
]);
const HEADING_LEVELS: ReadonlyMap<string, number> = new Map([1, 2, 3, 4, 5, 6].map((n) => [`h${n}`, n]));

/** ARIA roles of page chrome, skipped like <nav> and <footer>. */
const SKIPPED_ROLES = new Set(['navigation', 'contentinfo', 'search']);
/**
 * Class names of navigation chrome in generated documentation (DocBook's `navheader`/`navfooter`
 * prev/up/next tables on every page, breadcrumb trails), skipped like <nav>. Whole class tokens only.
 */
const SKIPPED_CLASSES = new Set(['navheader', 'navfooter', 'navbar', 'breadcrumb', 'breadcrumbs']);
/**
 * Containers whose headings are local to them: an admonition's "Note" or "Warning" title must not
 * become the heading of everything after the box. Matched on <aside> and on whole class tokens.
 */
const LOCAL_HEADING_CLASSES = new Set(['note', 'tip', 'warning', 'caution', 'important', 'admonition', 'callout', 'sidebar']);

function classTokens(attribs: Readonly<Record<string, string>>): string[] {
  const c = attribs['class'];
  return c ? c.toLowerCase().split(/\s+/) : [];
}

function isLocalHeadingContainer(name: string, attribs: Readonly<Record<string, string>>): boolean {
  return name === 'aside' || classTokens(attribs).some((t) => LOCAL_HEADING_CLASSES.has(t));
}

function isHiddenElement(name: string, attribs: Readonly<Record<string, string>>): boolean {
  if (SKIPPED_ELEMENTS.has(name)) return true;
  if (SKIPPED_ROLES.has(attribs['role']?.trim().toLowerCase() ?? '')) return true;
  if (classTokens(attribs).some((t) => SKIPPED_CLASSES.has(t))) return true;
  if ('hidden' in attribs) return true;
  if (attribs['aria-hidden']?.trim().toLowerCase() === 'true') return true;
  return /(?:^|;)\s*display\s*:\s*none\b/i.test(attribs['style'] ?? '');
}

function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/**
 * An HTML page whose visible text is at least this share link text (by characters) is a table of
 * contents (a chapter landing page, a site map): measured on the PostgreSQL 15 manual, the
 * back-of-book index and chapter contents pages sit at 0.6–0.9, content pages below 0.3.
 */
export const TOC_LINK_DENSITY = 0.6;
/** Pages with less visible text than this (characters) are never judged by link density alone. */
export const LINK_DENSITY_MIN_CHARS = 200;
/** Titles of back-of-book indexes: "Index", "General Index", "Appendix I. Index", "Index of functions". */
const INDEX_TITLE = /^(?:(?:appendix\s+)?(?:[a-z]|\d+)(?:\.\d+)*\.\s+)?(?:general\s+|alphabetical\s+|subject\s+)?index(?:\s+of\s+.+)?$/i;
/** Titles of tables of contents: "Table of Contents", "Contents". */
const TOC_TITLE = /^(?:table\s+of\s+)?contents$/i;
/** Titles of release notes: "Release 15.2", "E.14. Release 15.2", "Appendix E. Release Notes", "Prior Releases", "Changelog". */
const RELEASE_TITLE = /(?:^|\s)(?:release\s+\d+(?:\.\d+)*|release\s+notes|prior\s+releases|change\s?log|what's\s+new\s+in\s+.+)$/i;

/**
 * The ranking verdict of a page from its title (and, for HTML, its link density): 'index' (a
 * back-of-book index), 'release_notes', 'toc' (a "Table of Contents" title, or an HTML page whose
 * visible text is mostly links), else 'content'. Pure.
 * @param linkDensity share of visible characters inside links (0..1); undefined for non-HTML
 * @param textChars visible characters of the page (link density is ignored below LINK_DENSITY_MIN_CHARS)
 */
export function classifyPage(title: string, linkDensity?: number, textChars = Infinity): PageKind {
  const t = title.trim().replace(/\s+/g, ' ');
  if (INDEX_TITLE.test(t)) return 'index';
  if (RELEASE_TITLE.test(t)) return 'release_notes';
  if (TOC_TITLE.test(t)) return 'toc';
  if (linkDensity !== undefined && textChars >= LINK_DENSITY_MIN_CHARS && linkDensity >= TOC_LINK_DENSITY) return 'toc';
  return 'content';
}

/**
 * HTML → readable text, one section per h1–h6 (heading text goes to `headingPath`, not `text`).
 * Uses htmlparser2's streaming callbacks: one pass, no DOM. Entities are decoded by the parser, so
 * `&lt;script&gt;` in a paragraph is the text "<script>" while a real <script> element is dropped.
 */
function parseHtml(html: string, fallbackTitle: string, xhtml: boolean): LoadedDocument {
  const sections: Section[] = [];
  let headingStack: OpenHeading[] = [];
  /** Per open element: did it start a skipped subtree? htmlparser2 balances open/close events. */
  const openElements: boolean[] = [];
  /** Open local-heading containers (see LOCAL_HEADING_CLASSES): their depth and the headings outside them. */
  const localContainers: Array<{ depth: number; outside: OpenHeading[] }> = [];
  let skipDepth = 0;
  let svgDepth = 0;
  let preDepth = 0;
  let preStart = false;
  let out = '';
  let pendingBreak: 0 | 1 | 2 = 0;
  let cellsInRow = 0;
  let heading: OpenHeading | null = null;
  let titleBuffer: string | null = null;
  let title: string | null = null;
  let firstH1: string | null = null;
  /** Open <a href> elements, and visible characters (whitespace runs count 1) in total and inside links. */
  let linkDepth = 0;
  let textChars = 0;
  let linkChars = 0;
  const countText = (data: string): void => {
    const n = data.replace(/\s+/g, ' ').trim().length;
    textChars += n;
    if (linkDepth > 0) linkChars += n;
  };

  const flushSection = (): void => {
    const text = out.trim();
    if (text !== '') sections.push({ headingPath: headingStack.map((h) => h.text), text });
    out = '';
    pendingBreak = 0;
  };
  const requestBreak = (level: 1 | 2): void => {
    if (level > pendingBreak) pendingBreak = level;
  };
  const append = (chunk: string): void => {
    // Strip trailing whitespace first (incl. a <pre>'s final newline) so breaks never stack up.
    if (pendingBreak > 0 && out !== '') out = out.replace(/\s+$/, '') + (pendingBreak === 2 ? '\n\n' : '\n');
    pendingBreak = 0;
    out += chunk;
  };
  const atLineStart = (): boolean => out === '' || pendingBreak > 0 || /[ \n]$/.test(out);
  const appendText = (data: string): void => {
    if (preDepth > 0) {
      // Browsers drop one newline right after <pre>.
      const raw = preStart ? data.replace(/^\n/, '') : data;
      preStart = false;
      if (raw !== '') append(raw);
      return;
    }
    let text = data.replace(/\s+/g, ' ');
    if (text.startsWith(' ') && atLineStart()) text = text.slice(1);
    if (text !== '') append(text);
  };
  const endHeading = (): void => {
    if (!heading) return;
    const text = collapseWhitespace(heading.text);
    const level = heading.level;
    heading = null;
    if (text === '') return;
    while ((headingStack.at(-1)?.level ?? 0) >= level) headingStack.pop();
    headingStack.push({ level, text });
    if (level === 1 && firstH1 === null) firstH1 = text;
  };

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const startsSkip = skipDepth === 0 && isHiddenElement(name, attribs);
        openElements.push(startsSkip);
        // <title> lives in the skipped <head>; an <svg><title> is a tooltip, not the page title.
        if (name === 'title' && svgDepth === 0 && title === null) titleBuffer = '';
        if (name === 'svg') svgDepth++;
        if (startsSkip) skipDepth++;
        if (skipDepth > 0) return;
        if (name === 'a' && attribs.href !== undefined) linkDepth++;
        if (isLocalHeadingContainer(name, attribs)) localContainers.push({ depth: openElements.length - 1, outside: [...headingStack] });

        const level = HEADING_LEVELS.get(name);
        if (level !== undefined) {
          endHeading(); // a heading opened inside another (malformed) ends the first
          flushSection();
          heading = { level, text: '' };
          return;
        }
        if (heading) {
          if (name === 'br') heading.text += ' ';
          return;
        }
        if (name === 'br' && preDepth > 0) {
          append('\n');
          return;
        }
        const brk = BLOCK_BREAKS.get(name);
        if (brk !== undefined) requestBreak(brk);
        if (name === 'pre') {
          preDepth++;
          preStart = true;
        } else if (name === 'tr') cellsInRow = 0;
        else if (name === 'td' || name === 'th') {
          if (cellsInRow++ > 0 && pendingBreak === 0 && out !== '') append(' | ');
        }
      },
      ontext(data) {
        if (titleBuffer !== null) {
          titleBuffer += data;
          return;
        }
        if (skipDepth > 0) return;
        countText(data);
        if (heading) heading.text += data;
        else appendText(data);
      },
      onclosetag(name) {
        const depth = openElements.length - 1;
        const startedSkip = openElements.pop() ?? false;
        if (name === 'svg') svgDepth = Math.max(0, svgDepth - 1);
        if (name === 'title' && titleBuffer !== null) {
          const text = collapseWhitespace(titleBuffer);
          titleBuffer = null;
          if (text !== '') title = text;
        }
        if (startedSkip) {
          skipDepth--;
          return;
        }
        if (skipDepth > 0) return;
        if (name === 'a' && linkDepth > 0) linkDepth--;
        if (HEADING_LEVELS.has(name)) {
          endHeading();
          return;
        }
        if (heading) return;
        if (name === 'pre') preDepth = Math.max(0, preDepth - 1);
        const brk = BLOCK_BREAKS.get(name);
        if (brk !== undefined && name !== 'br') requestBreak(brk);
        if (localContainers.at(-1)?.depth === depth) {
          // What follows the box is back under the headings that were open before it.
          const { outside } = localContainers.pop()!;
          if (outside.length !== headingStack.length || outside.some((h, i) => h !== headingStack[i])) {
            flushSection();
            headingStack = outside;
          }
        }
      },
    },
    // xhtml: honour <div/> self-closing syntax; plain HTML ignores it as browsers do.
    { decodeEntities: true, recognizeSelfClosing: xhtml },
  );
  parser.write(html);
  parser.end();
  endHeading();
  flushSection();

  if (sections.length === 0) throw new LoaderError('empty', 'no readable text in HTML (only markup, scripts, navigation or hidden content)');
  const pageTitle = title ?? firstH1 ?? fallbackTitle;
  const linkDensity = textChars === 0 ? 0 : linkChars / textChars;
  return { title: pageTitle, kind: 'text/html', sections, linkDensity, pageKind: classifyPage(pageTitle, linkDensity, textChars) };
}

// ---------------------------------------------------------------------------------------------
// PDF

/** A line at least this many times the document's body text size is a heading (PDF has no heading markup). */
export const PDF_HEADING_SIZE_RATIO = 1.2;
/** Longest heading line, in characters: longer large text is a display paragraph, not a heading. */
export const PDF_HEADING_MAX_CHARS = 120;

/** One text line of a PDF page and its largest glyph size (PDF user-space units). */
export interface PdfLine {
  text: string;
  size: number;
}

/** The subset of pdf.js' text items read here (TextMarkedContent items have no `str`). */
interface PdfTextItem {
  str?: string;
  transform?: number[];
  height?: number;
  hasEOL?: boolean;
}

/** A page's text as lines: a line ends at an end-of-line item or where the baseline moves. */
function pdfLines(items: readonly PdfTextItem[]): PdfLine[] {
  const lines: PdfLine[] = [];
  let text = '';
  let size = 0;
  let lastY: number | null = null;
  const push = (): void => {
    if (text.trim() !== '') lines.push({ text: text.replace(/\s+/g, ' ').trim(), size });
    text = '';
    size = 0;
  };
  for (const item of items) {
    if (typeof item.str !== 'string') continue;
    const t = item.transform ?? [];
    const y = t[5] ?? 0;
    if (lastY !== null && Math.abs(y - lastY) > 1 && text.trim() !== '') push();
    text += item.str;
    // The glyph height: the transform's vertical scale (the font size for unrotated text).
    size = Math.max(size, Math.hypot(t[2] ?? 0, t[3] ?? 0) || item.height || 0);
    lastY = y;
    if (item.hasEOL) push();
  }
  push();
  return lines;
}

/** The character-weighted median line size: the body text size of the document. */
function bodySize(pages: readonly PdfLine[][]): number {
  const sized = pages.flat().sort((x, y) => x.size - y.size);
  const total = sized.reduce((n, l) => n + l.text.length, 0);
  let seen = 0;
  for (const l of sized) {
    seen += l.text.length;
    if (seen * 2 >= total) return l.size;
  }
  return 0;
}

/**
 * Lines of every page → sections: a heading (a short line in a font PDF_HEADING_SIZE_RATIO times the
 * body size) starts a new section and stays the heading of the text after it, across pages, until
 * the next one; every section is within one page, its heading path `[heading, "page N"]` (or
 * `["page N"]` before any heading), N 1-based, so citations can name the page.
 */
export function pdfSections(pages: readonly PdfLine[][]): Section[] {
  const body = bodySize(pages);
  const isHeading = (l: PdfLine): boolean => body > 0 && l.size >= body * PDF_HEADING_SIZE_RATIO && l.text.length <= PDF_HEADING_MAX_CHARS && !/[.,;]$/.test(l.text);
  const sections: Section[] = [];
  let heading: string | null = null;
  pages.forEach((lines, i) => {
    let buf: string[] = [];
    const flush = (): void => {
      const text = buf.join('\n').trim();
      if (text !== '') sections.push({ headingPath: heading === null ? [`page ${i + 1}`] : [heading, `page ${i + 1}`], text });
      buf = [];
    };
    for (const line of lines) {
      if (isHeading(line)) {
        flush();
        heading = line.text;
      } else {
        buf.push(line.text);
      }
    }
    flush();
  });
  return sections;
}

/**
 * PDF → sections per page (see pdfSections): text per page, headings recognized by font size, the
 * page number the last element of every heading path.
 * @throws LoaderError `parse_error` when the `%PDF-` header is missing or pdf.js cannot open the
 *         file (corrupt, encrypted); `empty` when no page has extractable text (e.g. scanned images).
 */
async function loadPdf(bytes: Uint8Array, fallbackTitle: string): Promise<LoadedDocument> {
  if (!hasPdfHeader(bytes)) throw new LoaderError('parse_error', `not a PDF file (no %PDF- header in the first ${PDF_HEADER_SEARCH_BYTES} bytes)`);
  // Loaded lazily: pdf.js is large and most runs ingest no PDF.
  const { getDocumentProxy } = await import('unpdf');
  const pages: PdfLine[][] = [];
  let metaTitle = '';
  try {
    // pdf.js wants a plain Uint8Array (it refuses a Buffer, which is what files are read as) and may
    // transfer (detach) the buffer it is given: a copy fixes both, and the caller's bytes survive.
    const pdf = await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0 });
    try {
      const info = (await pdf.getMetadata()).info as Record<string, unknown> | undefined;
      metaTitle = typeof info?.['Title'] === 'string' ? info['Title'].trim() : '';
      for (let n = 1; n <= pdf.numPages; n++) {
        const page = await pdf.getPage(n);
        pages.push(pdfLines((await page.getTextContent()).items as PdfTextItem[]));
      }
    } finally {
      await pdf.destroy();
    }
  } catch (cause) {
    const name = cause instanceof Error ? cause.name : '';
    const detail = name === 'PasswordException' ? 'encrypted PDF (password required)' : `corrupt or unreadable PDF: ${cause instanceof Error ? cause.message : String(cause)}`;
    throw new LoaderError('parse_error', detail, { cause });
  }
  const sections = pdfSections(pages);
  if (sections.length === 0) throw new LoaderError('empty', `no extractable text in ${pages.length} PDF page(s) (scanned images?)`);
  return { title: metaTitle !== '' ? metaTitle : fallbackTitle, kind: 'application/pdf', sections };
}

function hasPdfHeader(bytes: Uint8Array): boolean {
  const head = new TextDecoder('latin1').decode(bytes.subarray(0, PDF_HEADER_SEARCH_BYTES));
  return head.includes('%PDF-');
}

// ---------------------------------------------------------------------------------------------
// JSON / JSON Lines

type JsonRecord = Record<string, unknown>;

function isRecord(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** First field in `fields` holding a non-blank string. */
function recordText(record: JsonRecord, fields: readonly string[]): string | null {
  for (const field of fields) {
    const value = record[field];
    if (typeof value === 'string' && value.trim() !== '') return value.replace(/\r\n?/g, '\n').trim();
  }
  return null;
}

/** A record's label: its title, else its id, else `record N`; non-strings are stringified. */
function recordLabel(record: JsonRecord, n: number): string {
  for (const key of ['title', 'id']) {
    const value = record[key];
    if (value === undefined || value === null) continue;
    const label = typeof value === 'string' ? value.trim() : typeof value === 'object' ? JSON.stringify(value) : String(value);
    if (label !== '') return label;
  }
  return `record ${n}`;
}

/** Records → sections; `numbers[i]` is record i's 1-based number for "record N" labels. */
function recordsToSections(records: readonly JsonRecord[], numbers: readonly number[], fields: readonly string[]): Section[] {
  const sections: Section[] = [];
  records.forEach((record, i) => {
    const text = recordText(record, fields);
    if (text !== null) sections.push({ headingPath: [recordLabel(record, numbers[i] ?? i + 1)], text });
  });
  if (sections.length === 0) throw new LoaderError('empty', `no record has a non-empty text field (looked for: ${fields.join(', ')})`);
  return sections;
}

/** `.json`: one object (one record) or an array of objects (non-objects are skipped). */
function parseJson(text: string, fallbackTitle: string, fields: readonly string[]): LoadedDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new LoaderError('parse_error', `invalid JSON: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  let records: JsonRecord[];
  let title = fallbackTitle;
  if (Array.isArray(value)) {
    records = value.filter(isRecord);
  } else if (isRecord(value)) {
    records = [value];
    const t = value['title'];
    if (typeof t === 'string' && t.trim() !== '') title = t.trim();
  } else {
    throw new LoaderError('parse_error', `expected a JSON object or an array of objects, got ${value === null ? 'null' : typeof value}`);
  }
  const numbers = records.map((_, i) => i + 1);
  return { title, kind: 'application/json', sections: recordsToSections(records, numbers, fields) };
}

/**
 * `.jsonl` / `.ndjson`: one object per line. Blank lines are skipped; malformed (or non-object)
 * lines are skipped too, unless no line parses at all (→ `parse_error`). "record N" uses the line number.
 */
function parseJsonLines(text: string, fallbackTitle: string, fields: readonly string[]): LoadedDocument {
  const records: JsonRecord[] = [];
  const lineNumbers: number[] = [];
  let firstBad: { line: number; why: string } | null = null;
  let badCount = 0;
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue;
    let why: string;
    try {
      const value: unknown = JSON.parse(line);
      if (isRecord(value)) {
        records.push(value);
        lineNumbers.push(i + 1);
        continue;
      }
      why = 'not a JSON object';
    } catch (cause) {
      why = cause instanceof Error ? cause.message : String(cause);
    }
    badCount++;
    firstBad ??= { line: i + 1, why };
  }
  if (records.length === 0) {
    const where = firstBad ? `; first at line ${firstBad.line}: ${firstBad.why}` : '';
    throw new LoaderError('parse_error', `no line is a valid JSON object (${badCount} malformed line(s)${where})`);
  }
  return { title: fallbackTitle, kind: 'application/json', sections: recordsToSections(records, lineNumbers, fields) };
}
