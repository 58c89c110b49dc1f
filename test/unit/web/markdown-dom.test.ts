/**
 * markdown-dom.ts in a real browser (Debian's chromium via playwright-core): the module bundled with
 * esbuild and loaded into a blank page WITHOUT a Content-Security-Policy, so anything the sanitizer
 * let through would really run (and set window.__pwned). Checks the DOM it builds against the
 * allow-list, the citation linking, code blocks and tables, over a list of known XSS payloads.
 *
 * Needs chromium: MNEME_CHROMIUM_PATH (default /usr/bin/chromium).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/core/config.ts';

const CHROMIUM_PATH = loadConfig({ MNEME_CHROMIUM_PATH: process.env.MNEME_CHROMIUM_PATH }).chromiumPath;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** Time given to anything injected (an onerror, a timer) to run before checking it did not, in ms. */
const SETTLE_MS = 300;

/** Tags and attributes the rendered answer may contain (markdown-dom.ts allow-list + its own decorations). */
const ALLOWED_TAGS = new Set(['P', 'BR', 'HR', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'UL', 'OL', 'LI', 'BLOCKQUOTE', 'PRE', 'CODE', 'EM', 'STRONG', 'DEL', 'A', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'DIV', 'SPAN', 'BUTTON']);
const ALLOWED_ATTRS = new Set(['href', 'title', 'class', 'align', 'start', 'target', 'rel', 'type', 'aria-label', 'role', 'data-n']);

/** Known payloads: markdown tricks and raw HTML (which must be escaped, then sanitized anyway). */
const PAYLOADS = [
  '<script>window.__pwned = "script"</script>',
  '<img src=x onerror="window.__pwned = \'img\'">',
  '<svg onload="window.__pwned = \'svg\'"><circle r=1></circle></svg>',
  '<iframe src="javascript:window.parent.__pwned=\'iframe\'"></iframe>',
  '<form action="javascript:window.__pwned=\'form\'"><button>go</button></form>',
  '<a href="javascript:window.__pwned=\'a\'">raw link</a>',
  '<div style="background:url(javascript:alert(1))" onclick="window.__pwned=\'div\'">styled</div>',
  '<details open ontoggle="window.__pwned=\'details\'">x</details>',
  '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned=\'mxss\'">',
  '[md link](javascript:window.__pwned=\'md\')',
  '[md link](JAVASCRIPT:window.__pwned=\'md2\')',
  '[md link](java\tscript:window.__pwned=\'md3\')',
  '[md link](jav&#x61;script:window.__pwned=\'md4\')',
  '[ref link][r]\n\n[r]: javascript:window.__pwned=\'ref\'',
  '<javascript:window.__pwned=\'autolink\'>',
  '![img](x" onerror="window.__pwned=\'alt\')',
  '![img](javascript:window.__pwned=\'imgjs\')',
  '![img](data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIG9ubG9hZD0id2luZG93Ll9fcHduZWQ9MSIvPg==)',
  '![x"><img src=x onerror="window.__pwned=\'altimg\'">](y)',
  '`<img src=x onerror="window.__pwned=\'code\'">`',
  '```html\n<img src=x onerror="window.__pwned=\'fence\'">\n```',
  '| a | b |\n|---|---|\n| <img src=x onerror="window.__pwned=\'cell\'"> | [x](javascript:window.__pwned=\'cell2\') |',
  '<a href="data:text/html,<script>alert(1)</script>">data</a>',
];

describe('answer markdown in chromium (markdown-dom.ts)', () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM_PATH)) throw new Error(`chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set MNEME_CHROMIUM_PATH`);
    const bundle = await build({
      stdin: {
        contents: "import { renderMarkdown } from './src/web/markdown-dom.ts'; (window as unknown as { __md: unknown }).__md = { renderMarkdown };",
        resolveDir: REPO,
        loader: 'ts',
      },
      bundle: true,
      format: 'iife',
      platform: 'browser',
      write: false,
      logLevel: 'silent',
    });
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
    page = await browser.newPage();
    await page.setContent('<!doctype html><html><head><meta charset="utf-8"></head><body><div id="out"></div></body></html>');
    await page.addScriptTag({ content: bundle.outputFiles[0]?.text ?? '' });
  });

  afterAll(async () => {
    await browser?.close();
  });

  /** Renders `md` into #out (known citations 1 and 2) and returns a description of the result. */
  async function render(md: string): Promise<{ html: string; text: string; tags: string[]; attrs: string[]; hrefs: string[]; cites: number[] }> {
    return page.evaluate((markdown) => {
      type Md = { renderMarkdown: (m: string, o: { known: Set<number>; cite: (n: number) => Node }) => DocumentFragment };
      const { renderMarkdown } = (window as unknown as { __md: Md }).__md;
      const out = document.getElementById('out') as HTMLElement;
      out.replaceChildren(
        renderMarkdown(markdown, {
          known: new Set([1, 2]),
          cite: (n) => {
            const b = document.createElement('button');
            b.type = 'button';
            b.className = 'cite';
            b.dataset.n = String(n);
            b.textContent = String(n);
            return b;
          },
        }),
      );
      const all = Array.from(out.querySelectorAll('*'));
      return {
        html: out.innerHTML,
        text: out.textContent ?? '',
        tags: [...new Set(all.map((e) => e.tagName))],
        attrs: [...new Set(all.flatMap((e) => Array.from(e.attributes).map((a) => a.name)))],
        hrefs: Array.from(out.querySelectorAll('a')).map((a) => a.getAttribute('href') ?? '(none)'),
        cites: Array.from(out.querySelectorAll('button.cite')).map((b) => Number((b as HTMLElement).dataset.n)),
      };
    }, md);
  }

  it('lets no payload run or load: only allowed tags and attributes, only http(s)/mailto links, no images', async () => {
    for (const md of PAYLOADS) {
      const r = await render(md);
      for (const t of r.tags) expect(ALLOWED_TAGS.has(t), `${md} → <${t}> in ${r.html}`).toBe(true);
      for (const a of r.attrs) expect(ALLOWED_ATTRS.has(a), `${md} → ${a}= in ${r.html}`).toBe(true);
      for (const href of r.hrefs) expect(href, `${md} → ${r.html}`).toMatch(/^(https?|mailto):/);
    }
    await page.waitForTimeout(SETTLE_MS);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
  });

  it('shows raw HTML as text', async () => {
    const r = await render('Before <script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned = 2"> after.');
    expect(r.text).toBe('Before <script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned = 2"> after.');
    expect(r.tags).toEqual(['P']);
  });

  it('makes a javascript: markdown link plain text and a https one a new-tab link without opener', async () => {
    const r = await render('[bad](javascript:alert(1)) and [good](https://example.org/docs)');
    expect(r.text).toBe('bad and good');
    expect(r.hrefs).toEqual(['https://example.org/docs']);
    const rel = await page.evaluate(() => {
      const a = document.querySelector('#out a') as HTMLAnchorElement;
      return [a.target, a.rel, a.textContent];
    });
    expect(rel).toEqual(['_blank', 'noopener noreferrer', 'good']);
  });

  it('links known [n] markers outside code and links only', async () => {
    const r = await render('Flush it [1]. Not in `code [1]`, not in [1](https://example.org), not unknown [7].\n\n- listed [2]\n\n| col |\n|---|\n| cell [1, 2] |\n\n```\narray[1]\n```');
    expect(r.cites).toEqual([1, 2, 1, 2]);
    expect(r.text).toContain('code [1]');
    expect(r.text).toContain('unknown [7]');
    expect(r.text).toContain('array[1]');
  });

  it('renders a table in a scroll box and a fenced sql block under a header with a Copy button', async () => {
    const sql = "SELECT part\nFROM cartridges\nWHERE model = 'X3';";
    await render(`| Step | Minutes |\n|------|--------:|\n| Flush | 5 |\n\n\`\`\`sql\n${sql}\n\`\`\``);
    const shape = await page.evaluate(() => ({
      table: document.querySelector('#out .table-wrap > table') !== null,
      headers: Array.from(document.querySelectorAll('#out th')).map((t) => t.textContent),
      right: document.querySelector('#out td:last-child')?.getAttribute('align'),
      lang: document.querySelector('#out .code-block .code-head .code-lang')?.textContent,
      button: document.querySelector('#out .code-block .code-head button.copy-btn')?.getAttribute('aria-label'),
      code: document.querySelector('#out .code-block > pre > code.language-sql')?.textContent,
    }));
    expect(shape).toEqual({ table: true, headers: ['Step', 'Minutes'], right: 'right', lang: 'sql', button: 'Copy sql code', code: `${sql}\n` });
  });

  it("keeps an extractive answer's line breaks: its code block and its single newlines", async () => {
    const answer =
      'Extractive answer (no language model is configured): the passages below are quoted from your documents.\n\n' +
      'Create the index with [1]:\n\n```\nCREATE INDEX brin_idx\n    ON measurements\n    USING brin (ts);\n```\nThe first line\nand the second [2].';
    await render(answer);
    const got = await page.evaluate(() => ({
      code: document.querySelector('#out pre code')?.textContent,
      brs: document.querySelectorAll('#out p br').length,
      paragraphs: Array.from(document.querySelectorAll('#out p')).map((p) => p.textContent),
    }));
    expect(got.code).toBe('CREATE INDEX brin_idx\n    ON measurements\n    USING brin (ts);\n');
    expect(got.brs).toBe(1);
    expect(got.paragraphs[0]).toMatch(/^Extractive answer/);
  });
});
