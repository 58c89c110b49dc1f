/**
 * The documents panel in a real browser (Debian's chromium via playwright-core) against a real
 * server built like `mneme serve` (uploads wired): upload two files with drag-and-drop, watch the
 * progress bar reach done, ask a question that cites them, delete one from the panel, ask again:
 * it is no longer cited. Needs chromium (MNEME_CHROMIUM_PATH, default /usr/bin/chromium).
 */
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/chat/http/app.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import type { ServerDeps } from '../../src/chat/http/wiring.ts';
import { createUser } from '../../src/chat/users.ts';
import { loadConfig } from '../../src/core/config.ts';
import { buildWeb } from '../../src/web/build.ts';
import { uploadIngester } from '../../ingest/upload.ts';
import { tempDir, testEnv } from '../integration/http-helpers.ts';
import { CHROMIUM_ARGS, CHROMIUM_PATH, SCREENSHOTS, listen, stopServer } from './harness.ts';

const STEP_MS = 20_000;

const LAMP = { name: 'brimblecombe-lamp.md', title: 'Brimblecombe lamp care', content: '# Brimblecombe lamp care\n\nThe Brimblecombe lighthouse lamp is cleaned every Tuesday with vinegar.\n' };
const HORN = { name: 'brimblecombe-foghorn.md', title: 'Brimblecombe foghorn checks', content: '# Brimblecombe foghorn checks\n\nThe Brimblecombe lighthouse foghorn is tested every Friday at noon.\n' };

describe('documents panel in chromium', () => {
  let deps: ServerDeps;
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let root: string;
  let adminKey: string;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM_PATH)) throw new Error(`chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set MNEME_CHROMIUM_PATH`);
    root = tempDir('mneme-docs-web-');
    const webDir = (await buildWeb({ outDir: path.join(root, 'web') })).outDir;
    const config = loadConfig(testEnv(path.join(root, 'data')), { host: '127.0.0.1', port: 0 });
    deps = await buildServerDeps(config);
    adminKey = (await createUser(deps.store, { name: 'root', admin: true })).apiKey;
    const ingestFiles = uploadIngester({ store: deps.store, dataDir: config.dataDir, maxFileBytes: config.maxFileBytes, embedder: deps.embedder });
    const app = createApp({ ...deps, webAssetsDir: webDir, ingestFiles });
    ({ server, url } = await listen(app));
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stopServer(server);
    await deps?.queue.close({ cancelInFlight: true });
    await deps?.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  async function ask(page: Page, text: string): Promise<string[]> {
    const before = await page.locator('.msg-assistant').count();
    await page.getByLabel('Your question').fill(text);
    await page.getByLabel('Your question').press('Enter');
    await page.locator('.msg-assistant').nth(before).locator('.msg-body[aria-busy="false"]').waitFor();
    return page.locator('.msg-assistant').nth(before).locator('.source-chip .chip-title').allTextContents();
  }

  it('uploads two files by drag-and-drop with a progress bar, answers cite them, a deleted one is cited no more', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.getByLabel('API key').fill(adminKey);
    await page.getByLabel('API key').press('Enter');
    await page.locator('#chat-view').waitFor({ state: 'visible' });

    await page.getByRole('button', { name: 'Documents' }).click();
    await page.locator('#documents-dialog').waitFor({ state: 'visible' });
    await page.locator('#upload-collection').fill('lighthouse');
    const dataTransfer = await page.evaluateHandle((files) => {
      const dt = new DataTransfer();
      for (const f of files) dt.items.add(new File([f.content], f.name, { type: 'text/markdown' }));
      return dt;
    }, [LAMP, HORN]);
    await page.dispatchEvent('#drop-zone', 'dragover', { dataTransfer });
    await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer });
    const upload = page.locator('.upload-item').first();
    await upload.and(page.locator('[data-state="done"]')).waitFor();
    const bar = upload.locator('progress');
    expect(await bar.getAttribute('max')).toBe('2');
    expect(await bar.evaluate((p) => (p as HTMLProgressElement).value)).toBe(2);
    expect(await upload.locator('.upload-state').textContent()).toBe('done: 2 of 2 files indexed');
    await page.locator('.doc-row', { hasText: HORN.title }).waitFor();
    expect(await page.locator('.doc-row', { hasText: LAMP.title }).locator('.doc-source').textContent()).toBe(`upload:${LAMP.name}`);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'documents.png') });
    await page.locator('#documents-dialog .dialog-head button').click();

    const question = 'When is the Brimblecombe lighthouse lamp cleaned and the foghorn tested?';
    const cited = await ask(page, question);
    expect(cited).toEqual(expect.arrayContaining([LAMP.title, HORN.title]));

    await page.getByRole('button', { name: 'Documents' }).click();
    await page.locator('#doc-search').fill('foghorn');
    const row = page.locator('.doc-row', { hasText: HORN.title });
    await page.locator('.doc-row').first().waitFor();
    await expect.poll(() => page.locator('.doc-row').count()).toBe(1);
    await row.getByRole('button', { name: `Delete ${HORN.title}` }).click();
    await row.getByRole('button', { name: `Delete ${HORN.title}` }).click(); // "Confirm delete"
    await row.waitFor({ state: 'detached' });
    await page.locator('#documents-dialog .dialog-head button').click();

    const after = await ask(page, question);
    expect(after).not.toContain(HORN.title);
    const docs = await fetch(`${url}/v1/documents?collection=lighthouse`, { headers: { authorization: `Bearer ${adminKey}` } }).then((r) => r.json());
    expect(docs.data.map((d: { title: string }) => d.title)).toEqual([LAMP.title]);
    expect(errors).toEqual([]);
    await context.close();
  }, 120_000);
});
