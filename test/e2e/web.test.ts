/**
 * The web pages in a real browser (Debian's chromium driven by playwright-core) against a real
 * server: the fixture corpus (+ a document containing a <script> tag) ingested with the real
 * pipeline and tiny BERT, the extractive answerer, the pages built with esbuild into a temp dir.
 *
 * Walks the scenario: a wrong key, sign in, ask, see streamed text and a citation, open it,
 * rate the answer with a correction, see it on /admin; HTML in answers/questions/documents shown as
 * text; a revoked key returns to sign-in; the features panel; erase my data; keyboard use; text
 * contrast; a phone-sized window; an LLM answer in markdown (table, sql block with a working Copy
 * button, throttled re-rendering while it streams) and hostile markdown (javascript:/data: links,
 * images, raw HTML) that stays inert. Takes screenshots of both pages (see SCREENSHOTS).
 *
 * Needs chromium: MNEME_CHROMIUM_PATH (default /usr/bin/chromium; `.ci/run` installs Debian's).
 */
import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import express from 'express';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/chat/http/app.ts';
import { CONTENT_SECURITY_POLICY, webRouter } from '../../src/chat/http/routes/web.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import type { ServerDeps } from '../../src/chat/http/wiring.ts';
import { createUser } from '../../src/chat/users.ts';
import { ingestCommand } from '../../src/commands/ingest.ts';
import { loadConfig } from '../../src/core/config.ts';
import { materializeFeatures } from '../../src/features/materialize.ts';
import { buildWeb } from '../../src/web/build.ts';
import type { FakeLlm, FakeLlmBehaviour } from '../integration/http-helpers.ts';
import { FIXTURE_DOCS, REPO, bufferIo, startFakeLlm, tempDir, testEnv } from '../integration/http-helpers.ts';

const CHROMIUM_PATH = loadConfig({ MNEME_CHROMIUM_PATH: process.env.MNEME_CHROMIUM_PATH }).chromiumPath;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/**
 * Screenshots go to the README's docs/screenshots only when asked (`MNEME_UPDATE_SCREENSHOTS=1 npx
 * vitest run test/e2e`), so a test run never modifies tracked files; otherwise to a temp dir.
 */
const SCREENSHOTS = process.env.MNEME_UPDATE_SCREENSHOTS === '1' ? path.join(REPO, 'docs/screenshots') : tempDir();
const DESKTOP = { width: 1280, height: 820 };
const PHONE = { width: 390, height: 844 };
/** Longest wait for one UI step, in ms (the extractive answer takes well under a second). */
const STEP_MS = 15_000;

const SCRIPT_DOC = `Zephyrine valve maintenance notes

The Zephyrine valve must be flushed every 90 days with warm water. Someone once pasted <script>window.__pwned = 1</script> into these notes.

A Zephyrine valve that hisses needs a new <b>gasket</b> <img src=x onerror="window.__pwned = 2">, part ZV-9.
`;

/** The app exactly as `mneme serve` builds it, serving the pages built into `assetsDir`. */
function composeApp(deps: ServerDeps, assetsDir: string): express.Express {
  return createApp({ ...deps, webAssetsDir: assetsDir });
}

// --- WCAG contrast, computed from the page's real colors -------------------------------------

/** Runs in the page: [selector, text color, effective background] for each visible match. */
function colorsIn(page: Page, selectors: string[]): Promise<Array<{ selector: string; text: string; fg: string; bg: string }>> {
  return page.evaluate((sels) => {
    const out: Array<{ selector: string; text: string; fg: string; bg: string }> = [];
    const bgOf = (el: Element | null): string => {
      for (let e = el; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        if (c && c !== 'transparent' && !/rgba\(.*,\s*0\)$/.test(c)) return c;
      }
      return 'rgb(255, 255, 255)';
    };
    for (const s of sels) {
      for (const el of Array.from(document.querySelectorAll(s))) {
        const r = (el as HTMLElement).getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || !(el.textContent ?? '').trim()) continue;
        out.push({ selector: s, text: (el.textContent ?? '').trim().slice(0, 30), fg: getComputedStyle(el).color, bg: bgOf(el) });
      }
    }
    return out;
  }, selectors);
}

function luminance(rgb: string): number {
  const [r, g, b] = (rgb.match(/[\d.]+/g) ?? []).slice(0, 3).map((v) => {
    const c = Number(v) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  }) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function contrast(fg: string, bg: string): number {
  const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x) as [number, number];
  return (a + 0.05) / (b + 0.05);
}

async function expectContrast(page: Page, selectors: string[]): Promise<void> {
  const found = await colorsIn(page, selectors);
  expect(found.length).toBeGreaterThan(0);
  for (const c of found) {
    expect(contrast(c.fg, c.bg), `${c.selector} "${c.text}" ${c.fg} on ${c.bg}`).toBeGreaterThanOrEqual(4.5);
  }
}

describe('web pages in chromium', () => {
  let deps: ServerDeps;
  /** A separate handle on the server's database file, for probes only. */
  let probe: Database.Database;
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let webDir: string;
  const keys = { alice: '', root: '', carol: '', dave: '' };
  const question = 'How long should I flush a new Halcyon X3 cartridge?';
  const htmlQuestion = 'Zephyrine valve <img src=x onerror="window.__pwned = 3"> flush interval?';
  const correction = 'Five full minutes, about 9 litres, before drinking.';

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM_PATH)) {
      throw new Error(`chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set MNEME_CHROMIUM_PATH`);
    }
    const root = tempDir('mneme-web-');
    const extra = path.join(root, 'extra-docs');
    fs.mkdirSync(extra);
    fs.writeFileSync(path.join(extra, 'zephyrine-notes.txt'), SCRIPT_DOC);
    const env = testEnv(path.join(root, 'data'));
    const io = bufferIo(env);
    expect(await ingestCommand.run([FIXTURE_DOCS, extra, '--json'], io), io.err()).toBe(0);
    webDir = (await buildWeb({ outDir: path.join(root, 'web') })).outDir;

    const config = loadConfig(env, { host: '127.0.0.1', port: 0 });
    deps = await buildServerDeps(config);
    probe = new Database(config.dbFile);
    for (const name of ['alice', 'carol', 'dave'] as const) keys[name] = (await createUser(deps.store, { name })).apiKey;
    keys.root = (await createUser(deps.store, { name: 'root', admin: true })).apiKey;
    const app = composeApp(deps, webDir);
    server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await deps?.queue.close({ cancelInFlight: true });
    await deps?.close();
    probe?.close();
  });

  /** A fresh browser context (its own sessionStorage) with page errors collected. */
  async function newPage(viewport = DESKTOP): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
    const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[134]/.test(m.text())) errors.push(m.text());
    });
    return { context, page, errors };
  }

  async function signIn(page: Page, key: string): Promise<void> {
    await page.goto(url);
    await page.getByLabel('API key').fill(key);
    await page.getByLabel('API key').press('Enter');
    await page.locator('#chat-view').waitFor({ state: 'visible' });
  }

  async function ask(page: Page, text: string): Promise<void> {
    await page.getByLabel('Your question').fill(text);
    await page.getByLabel('Your question').press('Enter');
    await page.locator('.msg-assistant .msg-body[aria-busy="false"]').last().waitFor();
  }

  it('serves the pages with a strict CSP and caching headers, and a 503 page when not built', async () => {
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    expect(page.headers.get('content-security-policy')).not.toContain('unsafe-inline');
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    expect(html).not.toMatch(/<script>(?!<)/); // no inline script
    const asset = /src="(\/assets\/chat-[\w-]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${url}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${url}/admin`)).status).toBe(200);
    const missing = await fetch(`${url}/assets/chat-OLDHASH.js`);
    expect(missing.status).toBe(404);
    // The API still answers 401 without a key, the pages did not open it up.
    expect((await fetch(`${url}/v1/admin/overview`)).status).toBe(401);
    expect((await fetch(`${url}/v1/conversations`)).status).toBe(401);

    const bare = express().use(webRouter({ assetsDir: path.join(webDir, 'does-not-exist') }));
    const s = await new Promise<http.Server>((resolve) => {
      const x = bare.listen(0, '127.0.0.1', () => resolve(x));
    });
    try {
      const r = await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/`);
      expect(r.status).toBe(503);
      expect(await r.text()).toContain('npm run build');
    } finally {
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });

  it('shows a clear message for a wrong key', async () => {
    const { context, page, errors } = await newPage();
    await page.goto(url);
    await page.getByLabel('API key').fill('mn_this-key-does-not-exist');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.locator('#signin-error').textContent()).toContain('not accepted');
    expect(await page.locator('#chat-view').isHidden()).toBe(true);
    expect(await page.getByLabel('API key').getAttribute('aria-invalid')).toBe('true');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('signs in with the keyboard, streams an answer, opens a citation and rates it', async () => {
    const { context, page, errors } = await newPage();
    await page.goto(url);
    // Keyboard only: the key field has focus, Tab reaches the button, Enter presses it.
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('key-input');
    await page.keyboard.type(keys.alice);
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('btn-signin');
    await page.keyboard.press('Enter');
    await page.locator('#chat-view').waitFor({ state: 'visible' });
    expect(await page.locator('#user-name').textContent()).toBe('alice');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('composer-input');

    // Count text updates that happen while the answer is still streaming (aria-busy=true).
    await page.evaluate(() => {
      const w = window as unknown as { __streamUpdates: number };
      w.__streamUpdates = 0;
      new MutationObserver((muts) => {
        for (const m of muts) {
          const node = m.target.nodeType === Node.TEXT_NODE ? m.target.parentElement : (m.target as Element);
          if (node?.closest('[aria-busy="true"][aria-live="polite"]')) w.__streamUpdates++;
        }
      }).observe(document.getElementById('messages') as HTMLElement, { subtree: true, characterData: true, childList: true });
    });
    await page.keyboard.type(question);
    await page.keyboard.press('Enter');
    await page.locator('.msg-assistant .msg-body[aria-busy="false"]').waitFor();
    expect(await page.evaluate(() => (window as unknown as { __streamUpdates: number }).__streamUpdates)).toBeGreaterThan(1);
    const answer = (await page.locator('.msg-assistant .msg-body').textContent()) ?? '';
    expect(answer).toContain('BW-TS-30');
    expect(answer).toContain('five full minutes'); // the README's example answer (issue 13)

    // Citation: [n] in the text opens title, source path and snippet.
    const cite = page.locator('.msg-assistant .msg-body .cite').first();
    await cite.waitFor();
    expect(await cite.getAttribute('aria-expanded')).toBe('false');
    await cite.click();
    expect(await cite.getAttribute('aria-expanded')).toBe('true');
    const detail = page.locator('.cite-detail');
    await detail.waitFor({ state: 'visible' });
    expect(await detail.locator('.cite-title').textContent()).toContain('Halcyon X3');
    expect(await detail.locator('.cite-source code').textContent()).toBe('fixtures/docs/halcyon-x3-manual.md');
    expect(((await detail.locator('.cite-snippet').textContent()) ?? '').length).toBeGreaterThan(20);
    // A coarse relevance label, never the raw fusion score.
    expect(await detail.locator('.cite-score').textContent()).toMatch(/^Source \[1\] · (high|medium|low) relevance$/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'chat.png') });

    // Rate down, then add a correction.
    await page.getByRole('button', { name: 'Bad answer' }).click();
    await expect.poll(() => page.locator('.fb-status').textContent()).toContain('Thanks');
    expect(await page.getByRole('button', { name: 'Bad answer' }).getAttribute('aria-pressed')).toBe('true');
    await page.getByLabel('What should the answer have said? (optional)').fill(correction);
    await page.getByRole('button', { name: 'Send correction' }).click();
    await expect.poll(() => page.locator('.fb-status').textContent()).toContain('correction was saved');
    const rows = probe
      .prepare("SELECT f.rating, f.correction FROM feedback f JOIN users u ON u.id = f.user_id WHERE u.name = 'alice' ORDER BY f.id")
      .all() as Array<{ rating: number; correction: string | null }>;
    expect(rows).toEqual([
      { rating: -1, correction: null },
      { rating: -1, correction },
    ]);

    await expectContrast(page, ['.brand', '.user-chip', '.chat-title', '.msg-body', '.cite', '.chip-title', '.cite-title', '.cite-source', '.cite-snippet', '.cite-score', '.msg-meta', '.fb-label', '.fb-status', '.correction label', '.status-line', '.btn-primary', '.btn-ghost', '.conv-title', '.conv-time', '.sidebar-title']);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('shows HTML in questions, answers and document text as text, never running it', async () => {
    const { context, page, errors } = await newPage();
    await signIn(page, keys.alice);
    await page.getByRole('button', { name: 'New conversation' }).click();
    await ask(page, htmlQuestion);
    expect(await page.locator('.msg-user .msg-body').last().textContent()).toBe(htmlQuestion);

    // Open every citation; the document's <script> text must appear literally in a snippet.
    const cites = page.locator('.msg-assistant').last().locator('.source-chip');
    const n = await cites.count();
    expect(n).toBeGreaterThan(0);
    const snippets: string[] = [];
    for (let i = 0; i < n; i++) {
      await cites.nth(i).click();
      snippets.push((await page.locator('.msg-assistant').last().locator('.cite-snippet').textContent()) ?? '');
    }
    const shown = `${snippets.join('\n')}\n${await page.locator('.msg-assistant').last().locator('.msg-body').textContent()}`;
    expect(shown).toMatch(/<script>window\.__pwned = 1<\/script>|<img src=x onerror="window\.__pwned = 2">/);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('#messages script, #messages img, #messages b').count()).toBe(0);

    await page.getByRole('button', { name: 'Bad answer' }).last().click();
    await expect.poll(() => page.locator('.fb-status').last().textContent()).toContain('Thanks');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('keeps the session on reload and reopens a conversation with its citations and rating', async () => {
    const { context, page, errors } = await newPage();
    await signIn(page, keys.alice);
    await page.reload();
    await page.locator('#chat-view').waitFor({ state: 'visible' });
    const items = page.locator('.conv-item');
    await expect.poll(() => items.count()).toBe(2);
    // Newest first: the HTML question, then the Halcyon one. Titles are text too.
    expect(await items.nth(0).locator('.conv-title').textContent()).toBe(htmlQuestion);
    await items.nth(1).click();
    await expect.poll(() => page.locator('.msg').count()).toBe(2);
    expect(await items.nth(1).getAttribute('aria-current')).toBe('true');
    expect(await page.locator('.msg-user .msg-body').textContent()).toBe(question);
    expect(await page.locator('.msg-assistant .cite').count()).toBeGreaterThan(0);
    expect(await page.getByRole('button', { name: 'Bad answer' }).getAttribute('aria-pressed')).toBe('true');
    expect(await page.getByLabel('What should the answer have said? (optional)').inputValue()).toBe(correction);

    // Another user's conversation id is a 404, like an unknown one.
    const convId = probe.prepare("SELECT c.id FROM conversations c JOIN users u ON u.id = c.user_id WHERE u.name = 'alice' LIMIT 1").pluck().get() as string;
    const other = await fetch(`${url}/v1/conversations/${convId}/messages`, { headers: { authorization: `Bearer ${keys.carol}` } });
    expect(other.status).toBe(404);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('shows what mneme knows about the user', async () => {
    await materializeFeatures(deps.store);
    const { context, page, errors } = await newPage();
    await signIn(page, keys.alice);
    await page.getByRole('button', { name: 'What mneme knows about me' }).click();
    const dialog = page.getByRole('dialog', { name: 'What mneme knows about you' });
    await dialog.waitFor();
    await dialog.locator('dl.features').waitFor();
    const total = dialog.locator('dt:has(code:text-is("messages_total")) + dd .feature-value');
    expect(await total.textContent()).toBe('2');
    expect(await dialog.locator('dt:has(code:text-is("ratings_total")) + dd .feature-value').textContent()).toBe('2');
    expect(await dialog.locator('dt:has(code:text-is("helpful_rate")) + dd .feature-value').textContent()).toBe('0%');
    await expectContrast(page, ['.features dt', '.feature-value', '.feature-desc', '.danger-zone h3', '.danger-zone p']);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('btn-features');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('shows the feedback on /admin, and refuses a non-admin key', async () => {
    // A little more real traffic through the API: three answers rated up.
    for (const message of ['Which part number is the Halcyon X3 filter cartridge?', 'What does kestrelctl replay do?', 'When does the first Tidewater ferry leave?']) {
      const headers = { authorization: `Bearer ${keys.alice}`, 'content-type': 'application/json' };
      const r = await fetch(`${url}/v1/chat`, { method: 'POST', headers, body: JSON.stringify({ message }) });
      expect(r.status).toBe(200);
      const { id } = (await r.json()) as { id: string };
      expect((await fetch(`${url}/v1/feedback`, { method: 'POST', headers, body: JSON.stringify({ response_id: id, rating: 1 }) })).status).toBe(201);
    }
    const { context, page, errors } = await newPage({ width: DESKTOP.width, height: 1200 });
    await page.goto(`${url}/admin`);
    await page.getByLabel('Admin API key').fill(keys.alice);
    await page.getByLabel('Admin API key').press('Enter');
    await expect.poll(() => page.locator('#signin-error').textContent()).toContain('does not belong to an admin');

    await page.getByLabel('Admin API key').fill(keys.root);
    await page.getByLabel('Admin API key').press('Enter');
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    await page.locator('.thumbs-item').first().waitFor();
    const items = page.locator('.thumbs-item');
    expect(await items.count()).toBe(2);
    // Newest rating first: the HTML question (as text), then the Halcyon one with its correction.
    expect(await items.nth(0).locator('.thumbs-question').textContent()).toBe(htmlQuestion);
    expect(await items.nth(1).locator('.thumbs-question').textContent()).toBe(question);
    expect(await items.nth(1).locator('.thumbs-correction p').textContent()).toBe(correction);
    await items.nth(1).locator('summary', { hasText: 'citation' }).click();
    await items.nth(1).locator('.thumbs-citations').waitFor({ state: 'visible' });
    expect(await items.nth(1).locator('.thumbs-citations li').count()).toBeGreaterThan(0);
    expect(await items.nth(1).locator('.thumbs-citations').textContent()).toContain('halcyon-x3-manual.md');
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('#dashboard img, #dashboard script').count()).toBe(0);

    // Tiles, charts and corpus from the admin endpoints.
    const tile = (label: string) => page.locator('.tile', { has: page.locator('.tile-label', { hasText: label }) }).locator('.tile-value');
    expect(await tile('Thumbs-down share').textContent()).toBe('50%');
    expect(await tile('Error rate').textContent()).toBe('0%');
    expect(await page.locator('figure.chart').count()).toBeGreaterThanOrEqual(7);
    expect(await page.locator('figure.chart svg rect').count()).toBeGreaterThan(0);
    expect(await page.locator('.corpus').textContent()).toContain('Documents6');
    expect(await page.locator('.corpus').textContent()).toContain(TINY_MODEL_NAME);
    await expectContrast(page, ['.tile-label', '.tile-value', '.tile-note', '.chart figcaption', '.legend li', '.thumbs-meta', '.thumbs-question', '.thumbs-correction p', '.thumbs-label', '.kv dt', '.kv dd', '.inline-field']);
    // A shorter window redraws every chart from its own timeseries call.
    const redrawn = page.waitForResponse((r) => r.url().includes('/v1/admin/timeseries?minutes=15') && r.status() === 200);
    await page.locator('#window-select').selectOption('15');
    await redrawn;
    await expect.poll(() => page.locator('.chart-grid text', { hasText: /^\d\d:\d\d$/ }).count()).toBeGreaterThan(0);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin.png'), fullPage: true });
    expect(errors).toEqual([]);
    await context.close();
  });

  it('returns to sign-in when the key is revoked mid-session', async () => {
    const { context, page, errors } = await newPage();
    await signIn(page, keys.carol);
    const carol = await deps.store.users.findByName('carol');
    expect(await deps.store.users.revoke(carol!.id, new Date().toISOString())).toBe(true);
    await page.getByLabel('Your question').fill('What is kestrelctl?');
    await page.getByLabel('Your question').press('Enter');
    await page.locator('#signin-view').waitFor({ state: 'visible' });
    expect(await page.locator('#signin-error').textContent()).toContain('no longer valid');
    expect(await page.locator('#chat-view').isHidden()).toBe(true);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('erases the user data and signs out', async () => {
    const { context, page, errors } = await newPage();
    await signIn(page, keys.dave);
    await ask(page, 'What does OrbiSync do?');
    await page.getByRole('button', { name: 'What mneme knows about me' }).click();
    await page.getByRole('button', { name: 'Erase my data…' }).click();
    await page.getByRole('button', { name: 'Yes, erase everything' }).click();
    await page.locator('#signin-view').waitFor({ state: 'visible' });
    expect(await page.locator('#signin-error').textContent()).toContain('erased');
    expect(await deps.store.users.findByName('dave')).toBeNull();
    const r = await fetch(`${url}/v1/me/features`, { headers: { authorization: `Bearer ${keys.dave}` } });
    expect(r.status).toBe(401);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('works the same with an OpenAI-compatible LLM backend, and shows a stream that breaks off', async () => {
    const llmAnswer = 'Flush the new cartridge for `five minutes` [1]. Never run <script>window.__pwned = 9</script> there [2].';
    const llm: FakeLlm = await startFakeLlm({ kind: 'answer', text: llmAnswer, tokenDelayMs: 20 });
    const llmDeps = await buildServerDeps(loadConfig(testEnv(deps.config.dataDir, { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake-llm' }), { host: '127.0.0.1', port: 0 }));
    const llmServer = await new Promise<http.Server>((resolve) => {
      const s = composeApp(llmDeps, webDir).listen(0, '127.0.0.1', () => resolve(s));
    });
    const { context, page, errors } = await newPage();
    try {
      await page.goto(`http://127.0.0.1:${(llmServer.address() as AddressInfo).port}/`);
      await page.getByLabel('API key').fill(keys.alice);
      await page.getByLabel('API key').press('Enter');
      await page.locator('#chat-view').waitFor({ state: 'visible' });
      // While streaming, the raw text (with its literal markers) grows in the live region.
      await page.getByLabel('Your question').fill(question);
      await page.getByLabel('Your question').press('Enter');
      await expect.poll(() => page.locator('.msg-body[aria-busy="true"]').textContent()).toContain('Flush the new');
      expect(await page.getByRole('button', { name: 'Stop' }).isVisible()).toBe(true);
      const body = page.locator('.msg-assistant .msg-body[aria-busy="false"]');
      await body.waitFor();
      // Markers become numbered buttons, backticks become <code>; the <script> text stays text.
      expect(await body.textContent()).toBe(llmAnswer.replace(/`/g, '').replace(/\[(\d)\]/g, '$1'));
      expect(await body.locator('code').textContent()).toBe('five minutes');
      expect(await body.locator('.cite').count()).toBe(2);
      expect(await page.locator('.msg-meta').textContent()).toContain('openai · fake-llm');
      expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
      expect(await page.locator('#messages script').count()).toBe(0);

      // The upstream drops the connection mid-answer: the partial text stays, with an error.
      llm.behaviour = { kind: 'answer', text: 'This answer will break off after a few words.', tokenDelayMs: 20, breakAfterWords: 3 };
      await page.getByLabel('Your question').fill('And then?');
      await page.getByLabel('Your question').press('Enter');
      const failed = page.locator('.msg-assistant.msg-failed');
      await failed.waitFor();
      expect(await failed.locator('[role="alert"]').textContent()).toMatch(/\w/);
      expect(await failed.locator('.msg-body').textContent()).toContain('This answer will');
      expect(await page.locator('#chat-status').textContent()).not.toBe('');
      expect(await page.getByRole('button', { name: 'Send' }).isVisible()).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await context.close();
      llmServer.closeAllConnections();
      await new Promise<void>((resolve) => llmServer.close(() => resolve()));
      await llmDeps.queue.close({ cancelInFlight: true });
      await llmDeps.close();
      await llm.close();
    }
  });

  /**
   * Runs `fn` against a server of its own (the fixture corpus ingested into a fresh data dir, one
   * user) answering through a fake OpenAI-compatible LLM.
   */
  async function withLlmServer(behaviour: FakeLlmBehaviour, fn: (llmUrl: string, key: string, llm: FakeLlm) => Promise<void>): Promise<void> {
    const dataDir = path.join(tempDir('mneme-web-llm-'), 'data');
    const io = bufferIo(testEnv(dataDir));
    expect(await ingestCommand.run([FIXTURE_DOCS, '--json'], io), io.err()).toBe(0);
    const llm: FakeLlm = await startFakeLlm(behaviour);
    const llmDeps = await buildServerDeps(loadConfig(testEnv(dataDir, { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake-llm' }), { host: '127.0.0.1', port: 0 }));
    const key = (await createUser(llmDeps.store, { name: 'erin' })).apiKey;
    const llmServer = await new Promise<http.Server>((resolve) => {
      const s = composeApp(llmDeps, webDir).listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      await fn(`http://127.0.0.1:${(llmServer.address() as AddressInfo).port}`, key, llm);
    } finally {
      llmServer.closeAllConnections();
      await new Promise<void>((resolve) => llmServer.close(() => resolve()));
      await llmDeps.queue.close({ cancelInFlight: true });
      await llmDeps.close();
      await llm.close();
    }
  }

  it('renders an answer as markdown: heading, list, table, a sql block with a working Copy button; unsafe links and images stay inert', async () => {
    const sql = "SELECT part_number, flush_minutes\nFROM cartridges\nWHERE model = 'Halcyon X3'\n  AND note <> '[1]';";
    const markdown = [
      '## Flushing a new cartridge',
      '',
      'Flush a new `BW-TS-30` cartridge for **five minutes** [1], then:',
      '',
      '1. Open the cold tap fully',
      '2. Wait until the status ring turns steady teal [2]',
      '',
      '| Step | Minutes |',
      '|------|--------:|',
      '| Flush | 5 |',
      '| Rest | 2 |',
      '',
      'The same from the parts database:',
      '',
      '```sql',
      sql,
      '```',
      '',
      'See [the manual](https://example.org/halcyon) for details.',
    ].join('\n');
    const hostile = [
      '[click me](javascript:window.__pwned=11) [tab me](java\tscript:window.__pwned=12) [data me](data:text/html,<script>alert(1)</script>)',
      '',
      '![pixel](x" onerror="window.__pwned=13) ![svg](data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=) ![js](javascript:window.__pwned=14)',
      '',
      '<script>window.__pwned = 15</script>',
      '',
      'Raw <img src=x onerror="window.__pwned = 16"> stays text.',
    ].join('\n');
    await withLlmServer({ kind: 'answer', text: markdown, tokenDelayMs: 8 }, async (llmUrl, key, llm) => {
      const { context, page, errors } = await newPage();
      try {
        await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: llmUrl });
        await page.goto(`${llmUrl}/`);
        await page.getByLabel('API key').fill(key);
        await page.getByLabel('API key').press('Enter');
        await page.locator('#chat-view').waitFor({ state: 'visible' });
        // When the answer's rendered markdown is put in while it streams (its children replaced).
        await page.evaluate(() => {
          const w = window as unknown as { __renders: number[] };
          w.__renders = [];
          const replace = Element.prototype.replaceChildren;
          Element.prototype.replaceChildren = function (this: Element, ...nodes: Array<Node | string>) {
            if (this.matches('.msg-body[aria-busy="true"]')) w.__renders.push(performance.now());
            replace.apply(this, nodes);
          };
        });
        await ask(page, question);
        const body = page.locator('.msg-assistant .msg-body[aria-busy="false"]').last();

        // The growing markdown was re-rendered several times, never twice within ~50 ms; the last
        // render is the complete answer at `done` (not throttled).
        const renders = await page.evaluate(() => (window as unknown as { __renders: number[] }).__renders);
        expect(renders.length).toBeGreaterThanOrEqual(4);
        const streamed = renders.slice(0, -1);
        const gaps = streamed.slice(1).map((t, i) => t - (streamed[i] as number));
        expect(Math.min(...gaps)).toBeGreaterThanOrEqual(45);

        expect(await body.locator('h2').textContent()).toBe('Flushing a new cartridge');
        expect(await body.locator('strong').textContent()).toBe('five minutes');
        expect(await body.locator('p code').first().textContent()).toBe('BW-TS-30');
        expect(await body.locator('ol > li').count()).toBe(2);
        expect(await body.locator('.cite').count()).toBe(2);
        expect(await body.locator('.table-wrap table th').allTextContents()).toEqual(['Step', 'Minutes']);
        expect(await body.locator('table tbody td').allTextContents()).toEqual(['Flush', '5', 'Rest', '2']);
        expect(await body.locator('.code-block pre > code').textContent()).toBe(`${sql}\n`);
        expect(await body.locator('.code-block .code-lang').textContent()).toBe('sql');
        expect(await body.locator('.code-block .cite').count()).toBe(0);
        const link = body.locator('a');
        expect(await link.count()).toBe(1);
        expect([await link.getAttribute('href'), await link.getAttribute('target'), await link.getAttribute('rel')]).toEqual(['https://example.org/halcyon', '_blank', 'noopener noreferrer']);

        // Copy puts the exact code on the clipboard and says so, then returns to "Copy".
        const copy = body.getByRole('button', { name: 'Copy sql code' });
        await copy.click();
        await expect.poll(() => copy.textContent()).toBe('Copied');
        expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`${sql}\n`);
        await expect.poll(() => copy.textContent(), { timeout: 5000 }).toBe('Copy');
        await expectContrast(page, ['.answer h2', '.answer li', '.answer th', '.answer td', '.code-lang', '.copy-btn', '.answer pre code', '.answer a']);
        await page.evaluate(() => document.getElementById('messages')?.scrollTo(0, 0));
        await page.screenshot({ path: path.join(SCREENSHOTS, 'chat-markdown.png') });

        // Hostile markdown: javascript:/data: links are plain text, images neither load nor run,
        // raw HTML shows as text.
        llm.behaviour = { kind: 'answer', text: hostile, tokenDelayMs: 2 };
        await page.getByLabel('Your question').fill('And the risky parts?');
        await page.getByLabel('Your question').press('Enter');
        await expect.poll(() => page.locator('.msg-assistant .msg-body[aria-busy="false"]').count()).toBe(2);
        const bad = page.locator('.msg-assistant .msg-body').nth(1);
        const text = (await bad.textContent()) ?? '';
        expect(await bad.locator('a').count()).toBe(0);
        for (const label of ['click me', 'tab me', 'data me']) expect(text).toContain(label);
        await bad.getByText('click me').click();
        expect(await page.locator('#messages img, #messages script, #messages iframe, #messages svg image, #messages object, #messages embed').count()).toBe(0);
        expect(await page.locator('.msg-body [style], .msg-body [onerror], .msg-body [onclick], .msg-body [src]').count()).toBe(0);
        expect(text).toContain('<script>window.__pwned = 15</script>');
        expect(text).toContain('Raw <img src=x onerror="window.__pwned = 16"> stays text.');
        await page.waitForTimeout(200);
        expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
        expect(page.url()).toBe(`${llmUrl}/`);
        expect(errors).toEqual([]);
      } finally {
        await context.close();
      }
    });
  });

  it('is usable on a phone-sized window', async () => {
    const { context, page, errors } = await newPage(PHONE);
    await signIn(page, keys.alice);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    // The conversation list is behind a toggle on small screens.
    expect(await page.locator('#sidebar').isVisible()).toBe(false);
    const toggle = page.getByRole('button', { name: 'Conversations' });
    await toggle.click();
    expect(await toggle.getAttribute('aria-expanded')).toBe('true');
    // The oldest conversation with that question: the extractive one from the first test.
    await page.locator('.conv-item', { hasText: question }).last().click();
    await page.locator('#sidebar').waitFor({ state: 'hidden' });
    await page.locator('.msg-assistant').first().waitFor();
    await page.locator('.msg-assistant .cite').first().click();
    await page.locator('.cite-detail').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    const composer = await page.getByLabel('Your question').boundingBox();
    expect(composer && composer.y + composer.height).toBeLessThanOrEqual(PHONE.height);
    await page.evaluate(() => document.getElementById('messages')?.scrollTo(0, 0));
    await page.screenshot({ path: path.join(SCREENSHOTS, 'chat-phone.png') });
    expect(errors).toEqual([]);
    await context.close();
  });
});

/** The embedding model id the corpus card shows (the tiny BERT fixture, by absolute path). */
const TINY_MODEL_NAME = 'tiny-bert';
