/**
 * Answer markdown into the page: markdownToHtml (markdown.ts, first gate) → DOMPurify with a strict
 * allow-list (second gate) → a DocumentFragment that is then only changed through DOM calls:
 * - citation markers [n] in its text nodes (not inside code, pre or links) become the page's
 *   citation buttons (`cite(n)`), exactly as `splitCitations` reads them;
 * - each code block gets a header with its language and a Copy button (navigator.clipboard, with a
 *   selection + execCommand fallback where the page is not a secure context) showing "Copied";
 * - tables are wrapped in a horizontally scrolling box (narrow screens);
 * - links open in a new tab with rel="noopener noreferrer"; a link left without href is unwrapped.
 * No HTML string is ever built from answer text here; nothing is an inline handler (the CSP has no
 * 'unsafe-inline').
 */
import DOMPurify from 'dompurify';
import { append, h, splitCitations } from './dom.ts';
import { markdownToHtml } from './markdown.ts';

/** How long a Copy button says "Copied" (or "Copy failed"), in ms. */
export const COPY_FEEDBACK_MS = 2000;

/** Elements an answer may contain after sanitizing (no img, iframe, form, input, style, svg…). */
const ALLOWED_TAGS = ['p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li', 'blockquote', 'pre', 'code', 'em', 'strong', 'del', 'a', 'table', 'thead', 'tbody', 'tr', 'th', 'td'];
/** Attributes it may keep (values further checked in the hook below). No style, no on*, no data-*. */
const ALLOWED_ATTR = ['href', 'title', 'class', 'align', 'start'];
/** Schemes a sanitized href may use. */
const SAFE_URI = /^(?:https?|mailto):/i;
/** Attribute values allowed beyond the tag/attribute lists. */
const VALID_VALUE: Record<string, RegExp> = {
  class: /^language-[\w#+.-]{1,40}$/,
  align: /^(?:left|center|right)$/,
  start: /^\d{1,6}$/,
};

let hooksInstalled = false;
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  DOMPurify.addHook('uponSanitizeAttribute', (_node, data) => {
    const rule = VALID_VALUE[data.attrName];
    if (rule && !rule.test(data.attrValue)) data.keepAttr = false;
  });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.nodeName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
}

/**
 * Sanitizes answer HTML into a fragment of this document (strict allow-list, http(s)/mailto links
 * only). Links without a usable href are replaced by their content.
 * @throws Error when DOMPurify cannot run (no DOM).
 */
export function sanitizeAnswerHtml(html: string): DocumentFragment {
  if (!DOMPurify.isSupported) throw new Error('DOMPurify needs a DOM');
  installHooks();
  const fragment = DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: SAFE_URI,
    // Not URLs (their values are checked by the hook): exempt from the URI scheme test.
    ADD_URI_SAFE_ATTR: ['align', 'start'],
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
  for (const a of Array.from(fragment.querySelectorAll('a:not([href])'))) a.replaceWith(...Array.from(a.childNodes));
  return fragment;
}

/**
 * Replaces citation markers in the text nodes under `root` (outside code, pre and links) with the
 * nodes `cite(n)` makes, for markers whose numbers are all in `known`.
 */
export function linkCitations(root: ParentNode & Node, known: ReadonlySet<number>, cite: (n: number) => Node): void {
  if (known.size === 0) return;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const texts: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement?.closest('code, pre, a')) texts.push(n as Text);
  }
  for (const node of texts) {
    const segments = splitCitations(node.data, known);
    if (!segments.some((s) => s.kind === 'cite')) continue;
    node.replaceWith(...segments.map((s) => (s.kind === 'text' ? document.createTextNode(s.text) : cite(s.n))));
  }
}

async function copyText(text: string, code: HTMLElement): Promise<boolean> {
  if (window.isSecureContext && navigator.clipboard) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission refused: fall back to a selection.
    }
  }
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection?.removeAllRanges();
  selection?.addRange(range);
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

/** A code block's header: its language (from class language-x) and a Copy button. */
function codeHeader(code: HTMLElement): HTMLElement {
  const lang = /(?:^|\s)language-([\w#+.-]+)/.exec(code.className)?.[1] ?? '';
  const status = h('span', { class: 'visually-hidden', role: 'status' });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const button = h('button', { type: 'button', class: 'copy-btn', 'aria-label': lang ? `Copy ${lang} code` : 'Copy code' }, 'Copy');
  button.addEventListener('click', () => {
    void copyText(code.textContent ?? '', code).then((ok) => {
      button.textContent = ok ? 'Copied' : 'Copy failed';
      button.dataset.state = ok ? 'copied' : 'failed';
      status.textContent = ok ? 'Code copied to the clipboard.' : 'Could not copy; the code is selected, press Ctrl+C.';
      clearTimeout(timer);
      timer = setTimeout(() => {
        button.textContent = 'Copy';
        delete button.dataset.state;
        status.textContent = '';
      }, COPY_FEEDBACK_MS);
    });
  });
  return h('div', { class: 'code-head' }, h('span', { class: 'code-lang' }, lang || 'code'), button, status);
}

/** Wraps code blocks (header + Copy) and tables (scroll box) in `root`. */
function decorateBlocks(root: ParentNode): void {
  for (const pre of Array.from(root.querySelectorAll('pre'))) {
    const code = pre.querySelector('code') ?? pre;
    const box = h('div', { class: 'code-block' });
    pre.replaceWith(box);
    append(box, codeHeader(code), pre);
  }
  for (const table of Array.from(root.querySelectorAll('table'))) {
    const box = h('div', { class: 'table-wrap' });
    table.replaceWith(box);
    box.append(table);
  }
}

export interface RenderMarkdownOptions {
  /** Citation numbers that exist; markers with other numbers stay text. Default none. */
  known?: ReadonlySet<number>;
  /** Makes the element for citation n (called once per marker occurrence). */
  cite?: (n: number) => Node;
}

/**
 * An answer's markdown as sanitized, decorated DOM (see the module comment). Call again on the
 * whole text to re-render a growing answer.
 * @throws Error when DOMPurify cannot run (no DOM).
 */
export function renderMarkdown(markdown: string, opts: RenderMarkdownOptions = {}): DocumentFragment {
  const fragment = sanitizeAnswerHtml(markdownToHtml(markdown));
  // The newlines marked writes between blocks: not content.
  for (const n of Array.from(fragment.childNodes)) if (n.nodeType === Node.TEXT_NODE && !n.textContent?.trim()) n.remove();
  if (opts.cite && opts.known) linkCitations(fragment, opts.known, opts.cite);
  decorateBlocks(fragment);
  return fragment;
}
