/**
 * Collections and access control in a real browser (Debian's chromium via playwright-core) against a
 * real server built like `mneme serve` (uploads wired), issue 14 item 4: an admin creates a private
 * collection on /admin, uploads a document into it from the chat page, shares it with bob on /admin;
 * bob sees it in his collection picker (the choice is remembered across a reload) and gets an answer
 * citing it; the admin revokes; after a reload bob's picker no longer lists it and his answer no
 * longer cites it. Needs chromium (MNEME_CHROMIUM_PATH, default /usr/bin/chromium).
 * MNEME_UPDATE_SCREENSHOTS=1 writes docs/screenshots/collections-picker.png and collections-admin.png.
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

/** Longest wait for one UI step, in ms. */
const STEP_MS = 20_000;

const COLLECTION = 'harbour-ops';
/** In the private collection. */
const CHAIN = { name: 'quillhaven-chain.md', title: 'Quillhaven harbour chain inspection', content: '# Quillhaven harbour chain inspection\n\nThe Quillhaven harbour boom chain is inspected every Monday at dawn by the night crew.\n' };
/** Public: what bob's question can still cite once the private collection is hidden. */
const FERRY = { name: 'quillhaven-ferry.md', title: 'Quillhaven harbour ferry', content: '# Quillhaven harbour ferry\n\nThe Quillhaven harbour ferry leaves every hour; the harbour office sells tickets.\n' };
const QUESTION = 'When is the Quillhaven harbour chain inspected?';
/** The control: a question bob can always get answered (public document). */
const FERRY_QUESTION = 'How often does the Quillhaven harbour ferry leave?';

describe('collections in chromium: picker, admin sharing, revoke', () => {
  let deps: ServerDeps;
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let root: string;
  let adminKey: string;
  let bobKey: string;

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM_PATH)) throw new Error(`chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set MNEME_CHROMIUM_PATH`);
    root = tempDir('mneme-collections-web-');
    const webDir = (await buildWeb({ outDir: path.join(root, 'web') })).outDir;
    const config = loadConfig(testEnv(path.join(root, 'data')), { host: '127.0.0.1', port: 0 });
    deps = await buildServerDeps(config);
    adminKey = (await createUser(deps.store, { name: 'root', admin: true })).apiKey;
    bobKey = (await createUser(deps.store, { name: 'bob' })).apiKey;
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

  async function signInChat(page: Page, key: string): Promise<void> {
    await page.goto(url);
    await page.getByLabel('API key').fill(key);
    await page.getByLabel('API key').press('Enter');
    await page.locator('#chat-view').waitFor({ state: 'visible' });
  }

  /** Asks in the chat page; returns the titles of the answer's cited sources. */
  async function ask(page: Page, text: string): Promise<string[]> {
    const before = await page.locator('.msg-assistant').count();
    await page.getByLabel('Your question').fill(text);
    await page.getByLabel('Your question').press('Enter');
    await page.locator('.msg-assistant').nth(before).locator('.msg-body[aria-busy="false"]').waitFor();
    return page.locator('.msg-assistant').nth(before).locator('.source-chip .chip-title').allTextContents();
  }

  /** Uploads `file` into `collection` from the chat page's documents panel and waits for the job. */
  async function upload(page: Page, collection: string, file: { name: string; content: string }): Promise<void> {
    await page.getByRole('button', { name: 'Documents' }).click();
    await page.locator('#documents-dialog').waitFor({ state: 'visible' });
    await page.locator('#upload-collection').fill(collection);
    const dataTransfer = await page.evaluateHandle((f) => {
      const dt = new DataTransfer();
      dt.items.add(new File([f.content], f.name, { type: 'text/markdown' }));
      return dt;
    }, file);
    await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer });
    await page.locator('.upload-item').first().and(page.locator('[data-state="done"]')).waitFor();
    await page.locator('#documents-dialog .dialog-head button').click();
  }

  const pickerOptions = (page: Page) => page.locator('#collection-picker option').evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
  const row = (page: Page, name: string) => page.locator(`#collections tr[data-collection="${name}"]`);

  it('an admin shares a private collection with bob; bob picks it and gets it cited; after a revoke it is gone from his picker and answers', async () => {
    const errors: string[] = [];
    const adminContext = await browser.newContext({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 });
    const admin = await adminContext.newPage();
    admin.setDefaultTimeout(STEP_MS);
    admin.on('pageerror', (e) => errors.push(`admin: ${e.message}`));

    // The admin creates the private collection on /admin.
    await admin.goto(`${url}/admin`);
    await admin.getByLabel('Admin API key').fill(adminKey);
    await admin.getByLabel('Admin API key').press('Enter');
    await admin.locator('#collections').waitFor({ state: 'visible' });
    await admin.getByLabel('Collection name').fill(COLLECTION);
    await admin.getByLabel('Visibility').selectOption('private');
    await admin.getByRole('button', { name: 'Create collection' }).click();
    await row(admin, COLLECTION).waitFor();
    expect(await row(admin, COLLECTION).locator('.visibility-private').textContent()).toBe('private');
    expect(await admin.locator('#collections-status').textContent()).toBe(`Collection ${COLLECTION} is private.`);

    // ... uploads a document into it and a public one into "default", from the chat page.
    const adminChat = await adminContext.newPage();
    adminChat.setDefaultTimeout(STEP_MS);
    adminChat.on('pageerror', (e) => errors.push(`admin chat: ${e.message}`));
    await signInChat(adminChat, adminKey);
    await upload(adminChat, COLLECTION, CHAIN);
    await upload(adminChat, 'default', FERRY);
    await expect.poll(() => pickerOptions(adminChat)).toEqual(['', 'default', COLLECTION]);

    // Bob, before the grant: the collection is not in his picker, answers never cite it.
    const bobContext = await browser.newContext({ viewport: { width: 1280, height: 820 }, deviceScaleFactor: 1 });
    const bob = await bobContext.newPage();
    bob.setDefaultTimeout(STEP_MS);
    bob.on('pageerror', (e) => errors.push(`bob: ${e.message}`));
    await signInChat(bob, bobKey);
    await expect.poll(() => pickerOptions(bob)).toEqual(['', 'default']);
    expect(await ask(bob, FERRY_QUESTION)).toContain(FERRY.title);
    expect(await ask(bob, QUESTION)).not.toContain(CHAIN.title);

    // The admin grants bob read access on /admin.
    await admin.getByRole('button', { name: 'Refresh' }).click();
    await expect.poll(() => row(admin, COLLECTION).locator('td').nth(2).textContent()).toBe('1');
    await row(admin, COLLECTION).getByLabel(`User to grant access to ${COLLECTION}`).fill('bob');
    await row(admin, COLLECTION).getByRole('button', { name: 'Grant' }).click();
    await row(admin, COLLECTION).locator('li.grant-item[data-user="bob"]').waitFor();
    expect(await row(admin, COLLECTION).locator('li.grant-item[data-user="bob"] .badge').textContent()).toBe('read');
    await admin.locator('#collections-title').scrollIntoViewIfNeeded();
    await admin.locator('section', { has: admin.locator('#collections') }).screenshot({ path: path.join(SCREENSHOTS, 'collections-admin.png') });

    // Bob reloads: the picker lists it; he picks it, the choice survives a reload, the answer cites it.
    await bob.reload();
    await bob.locator('#chat-view').waitFor({ state: 'visible' });
    await expect.poll(() => pickerOptions(bob)).toEqual(['', 'default', COLLECTION]);
    expect(await bob.locator(`#collection-picker option[value="${COLLECTION}"]`).textContent()).toBe(`${COLLECTION} (1 document, private)`);
    await bob.getByLabel('Search in').selectOption(COLLECTION);
    await bob.reload();
    await bob.locator('#chat-view').waitFor({ state: 'visible' });
    await expect.poll(() => bob.locator('#collection-picker').inputValue()).toBe(COLLECTION);
    const cited = await ask(bob, QUESTION);
    expect(cited).toContain(CHAIN.title);
    expect(cited).not.toContain(FERRY.title); // the picked collection only
    await bob.screenshot({ path: path.join(SCREENSHOTS, 'collections-picker.png') });

    // The admin revokes.
    await row(admin, COLLECTION).getByRole('button', { name: `Revoke bob's access to ${COLLECTION}` }).click();
    await row(admin, COLLECTION).locator('li.grant-item[data-user="bob"]').waitFor({ state: 'detached' });

    // Bob reloads: the collection is gone from his picker (back to all readable), answers never cite it.
    await bob.reload();
    await bob.locator('#chat-view').waitFor({ state: 'visible' });
    await expect.poll(() => pickerOptions(bob)).toEqual(['', 'default']);
    expect(await bob.locator('#collection-picker').inputValue()).toBe('');
    expect(await ask(bob, QUESTION)).not.toContain(CHAIN.title);
    expect(await ask(bob, FERRY_QUESTION)).toContain(FERRY.title);
    expect(await bob.locator('#chat-main').textContent()).not.toContain('boom chain is inspected every Monday');

    // Groups: the admin makes a group with bob in it and grants the group the collection.
    await admin.getByLabel('Group name').fill('crew');
    await admin.getByRole('button', { name: 'Create group' }).click();
    const crew = admin.locator('#groups-table tr[data-group="crew"]');
    await crew.waitFor();
    await crew.getByLabel('User to add to group crew').fill('bob');
    await crew.getByRole('button', { name: 'Add' }).click();
    await crew.locator('li.member-item[data-user="bob"]').waitFor();
    await row(admin, COLLECTION).getByLabel(`Grant ${COLLECTION} to a user or a group`).selectOption('group');
    await row(admin, COLLECTION).getByLabel(`Group to grant access to ${COLLECTION}`).fill('crew');
    await row(admin, COLLECTION).getByRole('button', { name: 'Grant' }).click();
    await row(admin, COLLECTION).locator('li.group-grant-item[data-group="crew"]').waitFor();
    await expect.poll(() => crew.locator('td').nth(3).textContent()).toBe(COLLECTION);
    await admin.locator('#groups-table').scrollIntoViewIfNeeded();
    await admin.locator('section', { has: admin.locator('#collections') }).screenshot({ path: path.join(SCREENSHOTS, 'collections-groups.png') });
    await bob.reload();
    await bob.locator('#chat-view').waitFor({ state: 'visible' });
    await expect.poll(() => pickerOptions(bob)).toEqual(['', 'default', COLLECTION]);
    expect(await ask(bob, QUESTION)).toContain(CHAIN.title);
    // Bob leaves the group: gone again.
    await crew.getByRole('button', { name: 'Remove bob from group crew' }).click();
    await crew.locator('li.member-item[data-user="bob"]').waitFor({ state: 'detached' });
    await bob.reload();
    await bob.locator('#chat-view').waitFor({ state: 'visible' });
    await expect.poll(() => pickerOptions(bob)).toEqual(['', 'default']);
    expect(await ask(bob, QUESTION)).not.toContain(CHAIN.title);
    expect(errors).toEqual([]);
    await bobContext.close();
    await adminContext.close();
  }, 180_000);
});
