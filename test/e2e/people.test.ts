/**
 * The People section of /admin in a real browser (Debian's chromium, playwright-core) against a real
 * server built like `mneme serve` (issue 14, item 5): an admin creates a user and copies the key from
 * the copy-once dialog (it works; the dialog forgets it), sees the key's last use, adds a named key,
 * rotates one (the old key stops, the new one works), revokes one, and deletes the user after typing
 * their name in the confirmation dialog. Screenshots: docs/screenshots/people.png and
 * people-key.png when MNEME_UPDATE_SCREENSHOTS=1.
 */
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/chat/http/app.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import type { ServerDeps } from '../../src/chat/http/wiring.ts';
import { createUser } from '../../src/chat/users.ts';
import { loadConfig } from '../../src/core/config.ts';
import { buildWeb } from '../../src/web/build.ts';
import { tempDir, testEnv } from '../integration/http-helpers.ts';
import { CHROMIUM_ARGS, CHROMIUM_PATH, SCREENSHOTS, listen, stopServer } from './harness.ts';

/** Longest wait for one UI step, in ms. */
const STEP_MS = 20_000;

describe('people on /admin in chromium', () => {
  let deps: ServerDeps;
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let root = '';

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM_PATH)) throw new Error(`chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set MNEME_CHROMIUM_PATH`);
    const dir = tempDir('mneme-people-web-');
    const webDir = (await buildWeb({ outDir: path.join(dir, 'web') })).outDir;
    deps = await buildServerDeps(loadConfig(testEnv(path.join(dir, 'data')), { host: '127.0.0.1', port: 0 }));
    root = (await createUser(deps.store, { name: 'root', admin: true })).apiKey;
    await createUser(deps.store, { name: 'bob', keyName: 'phone' });
    const app = createApp({ ...deps, webAssetsDir: webDir });
    ({ server, url } = await listen(app));
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
    fs.mkdirSync(SCREENSHOTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stopServer(server);
    await deps?.queue.close({ cancelInFlight: true });
    await deps?.close();
  });

  /** Status of a request with `key` (200: the key works, 401: it does not). */
  const keyStatus = async (key: string) => (await fetch(`${url}/v1/me/keys`, { headers: { authorization: `Bearer ${key}` } })).status;
  const row = (page: Page, user: string) => page.locator(`#people-list tr[data-user="${user}"]`);
  const keyItem = (page: Page, user: string, name: string) => row(page, user).locator('li.key-item', { hasText: name });

  /** Reads the key from the copy-once dialog and closes it (the dialog must forget it). */
  async function takeKey(page: Page, shot?: string): Promise<string> {
    const dialog = page.locator('#key-dialog');
    await dialog.waitFor({ state: 'visible' });
    const key = await page.locator('#key-dialog-key').inputValue();
    expect(key).toMatch(/^mn_[A-Za-z0-9_-]{43}$/);
    if (shot) await page.screenshot({ path: path.join(SCREENSHOTS, shot) });
    await page.getByRole('button', { name: 'I have stored it' }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await page.locator('#key-dialog-key').inputValue()).toBe('');
    return key;
  }

  it('create a user (key once), add, rotate and revoke named keys, last use shown, delete with confirmation', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}/admin`);
    await page.getByLabel('Admin API key').fill(root);
    await page.getByLabel('Admin API key').press('Enter');
    await row(page, 'bob').waitFor({ state: 'visible' });
    expect(await keyItem(page, 'bob', 'phone').textContent()).toContain('last used never');

    // Create: the key is shown once and works.
    await page.getByLabel('New user name').fill('alice');
    await page.getByLabel('First key name').fill('laptop');
    await page.getByRole('button', { name: 'Create user' }).click();
    const laptop = await takeKey(page, 'people-key.png');
    expect(await keyStatus(laptop)).toBe(200);
    await row(page, 'alice').waitFor({ state: 'visible' });
    expect(await page.locator('#people-status').textContent()).toBe('Created alice.');
    expect(await page.locator('#people-list').textContent()).not.toContain(laptop);

    // Add a named key; the panel now shows laptop's last use.
    await row(page, 'alice').getByLabel('New key name for alice').fill('ci');
    await row(page, 'alice').getByRole('button', { name: 'Add key for alice' }).click();
    const ci = await takeKey(page);
    expect(await keyStatus(ci)).toBe(200);
    await expect.poll(() => keyItem(page, 'alice', 'laptop').textContent()).toContain('last used just now');

    // Rotate laptop: confirm, a new key once; the old one stops.
    await page.getByRole('button', { name: 'Rotate key laptop of alice' }).click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    await page.locator('#btn-confirm').click();
    const laptop2 = await takeKey(page);
    expect(laptop2).not.toBe(laptop);
    expect(await keyStatus(laptop)).toBe(401);
    expect(await keyStatus(laptop2)).toBe(200);
    await expect.poll(() => row(page, 'alice').locator('li.key-revoked').count()).toBe(1);

    // Revoke ci (cancel first: nothing happens).
    await page.getByRole('button', { name: 'Revoke key ci of alice' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect(await keyStatus(ci)).toBe(200);
    await page.getByRole('button', { name: 'Revoke key ci of alice' }).click();
    await page.locator('#btn-confirm').click();
    await expect.poll(() => row(page, 'alice').locator('li.key-revoked').count()).toBe(2);
    expect(await keyStatus(ci)).toBe(401);
    expect(await keyStatus(laptop2)).toBe(200);
    await page.locator('#people').screenshot({ path: path.join(SCREENSHOTS, 'people.png') });

    // Delete: the button stays disabled until the name is typed.
    await page.getByRole('button', { name: 'Delete alice' }).click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    expect(await page.locator('#btn-confirm').isDisabled()).toBe(true);
    await page.getByLabel('Type the name to confirm').fill('alic');
    expect(await page.locator('#btn-confirm').isDisabled()).toBe(true);
    await page.getByLabel('Type the name to confirm').fill('alice');
    await page.locator('#btn-confirm').click();
    await row(page, 'alice').waitFor({ state: 'detached' });
    expect(await page.locator('#people-status').textContent()).toBe('Deleted alice.');
    expect(await keyStatus(laptop2)).toBe(401);
    expect(await row(page, 'bob').count()).toBe(1);
    expect(errors).toEqual([]);
    await context.close();
  }, 120_000);
});
