/**
 * Markdown → HTML string for answers (marked, GitHub-flavoured, single newlines kept as line breaks).
 * First of two gates (the second is DOMPurify in markdown-dom.ts; neither is trusted alone):
 * - raw HTML in the markdown (block or inline) is escaped: `<script>` shows as text;
 * - a link keeps its href only for http(s) and mailto URLs (parsed with `URL`, as a browser would:
 *   tabs, newlines and entity tricks do not sneak `javascript:` through); otherwise only its text;
 * - images are never rendered: an http(s) image becomes a link to it (labelled with its alt text),
 *   anything else only its alt text (no data: or javascript: source can load or run);
 * - task-list checkboxes become ☐/☑ characters (no form controls).
 * Pure and DOM-free (unit-tested under Node).
 */
import { Marked } from 'marked';
import type { Tokens } from 'marked';

/** URL schemes a link in an answer may use. */
export const SAFE_LINK_PROTOCOLS: ReadonlySet<string> = new Set(['http:', 'https:', 'mailto:']);

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML content and double- or single-quoted attribute values. Pure. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/**
 * The absolute URL `href` denotes when its scheme is http(s) or mailto, else null (relative URLs,
 * javascript:, data:, vbscript:, unparseable). Pure.
 */
export function safeLinkUrl(href: string): string | null {
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  return SAFE_LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
}

function linkHtml(href: string, title: string | null | undefined, inner: string): string {
  const url = safeLinkUrl(href);
  if (url === null) return inner;
  const titleAttr = title ? ` title="${escapeHtml(title)}"` : '';
  return `<a href="${escapeHtml(url)}"${titleAttr}>${inner}</a>`;
}

const answerMarked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    html(token: Tokens.HTML | Tokens.Tag): string {
      const text = escapeHtml(token.text);
      return token.block ? `<p>${text}</p>\n` : text;
    },
    link(token: Tokens.Link): string {
      return linkHtml(token.href, token.title, this.parser.parseInline(token.tokens));
    },
    image(token: Tokens.Image): string {
      const alt = escapeHtml(token.text || 'image');
      const url = safeLinkUrl(token.href);
      return url !== null && /^https?:/.test(url) ? linkHtml(url, token.title, alt) : alt;
    },
    checkbox(token: Tokens.Checkbox): string {
      return token.checked ? '☑ ' : '☐ ';
    },
  },
});

/**
 * Markdown of an answer as an HTML string (headings, lists, tables, code, links) with raw HTML
 * escaped and only safe links. Still pass it through `sanitizeAnswerHtml` before it reaches the DOM.
 * Pure.
 */
export function markdownToHtml(markdown: string): string {
  return answerMarked.parse(markdown, { async: false });
}
