/**
 * The releases panel of /admin in a real browser (Debian's chromium, playwright-core) against a real
 * server built like `mneme serve` (issue 15): an admin sees the live release and the candidate,
 * clicks the green button and sees the live release change (and chat answers follow it), then
 * clicks the red button and sees the previous release live again; both changes are audit rows
 * naming the admin.
 */
import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/chat/http/app.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import type { ServerDeps } from '../../src/chat/http/wiring.ts';
import { canaryRelease, createRelease } from '../../src/chat/releases.ts';
import { createUser } from '../../src/chat/users.ts';
import { ingestCommand } from '../../src/commands/ingest.ts';
import { loadConfig } from '../../src/core/config.ts';
import { buildWeb } from '../../src/web/build.ts';
import { FIXTURE_DOCS, bufferIo, tempDir, testEnv } from '../integration/http-helpers.ts';

const CHROMIUM_PATH = loadConfig({ MNEME_CHROMIUM_PATH: process.env.MNEME_CHROMIUM_PATH }).chromiumPath;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** Longest wait for one UI step, in ms. */
const STEP_MS = 15_000;

describe('releases on /admin in chromium', () => {
  let deps: ServerDeps;
  let server: http.Server;
  let url: string;
  let browser: Browser;
  let root = '';
  let user = '';

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM_PATH)) throw new Error(`chromium not found at ${CHROMIUM_PATH}: install it (apt-get install -y chromium) or set MNEME_CHROMIUM_PATH`);
    const dir = tempDir('mneme-releases-web-');
    const env = testEnv(path.join(dir, 'data'));
    const io = bufferIo(env);
    expect(await ingestCommand.run([FIXTURE_DOCS, '--json'], io), io.err()).toBe(0);
    const webDir = (await buildWeb({ outDir: path.join(dir, 'web') })).outDir;
    const config = loadConfig(env, { host: '127.0.0.1', port: 0 });
    deps = await buildServerDeps(config);
    root = (await createUser(deps.store, { name: 'root', admin: true })).apiKey;
    user = (await createUser(deps.store, { name: 'alice' })).apiKey;
    // A candidate for every user (100 %), so chat shows which release answers.
    await createRelease(deps.store, config, { name: 'v2', sets: ['retrieval.top_k=4'], actor: 'test' });
    await canaryRelease(deps.store, 'v2', 100, { actor: 'test' });
    await deps.releases.refresh();
    const app = createApp({ ...deps, webAssetsDir: webDir });
    server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await deps?.queue.close({ cancelInFlight: true });
    await deps?.close();
  });

  const chatRelease = async (): Promise<string> => {
    const r = await fetch(`${url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${user}`, 'content-type': 'application/json' }, body: JSON.stringify({ message: 'What does kestrelctl do?' }) });
    expect(r.status).toBe(200);
    return ((await r.json()) as { release: string }).release;
  };
  const text = (page: Page, sel: string) => page.locator(sel).textContent();

  it('an admin clicks promote, sees the live release change, then clicks rollback', async () => {
    expect(await chatRelease()).toBe('v2'); // the candidate arm (100 %)
    const context = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${url}/admin`);
    await page.getByLabel('Admin API key').fill(root);
    await page.getByLabel('Admin API key').press('Enter');
    await page.locator('#dashboard').waitFor({ state: 'visible' });

    await expect.poll(() => text(page, '#release-live')).toBe('initial');
    await expect.poll(() => text(page, '#release-candidate')).toBe('v2 for 100% of users');
    expect(await page.locator('#btn-rollback').isDisabled()).toBe(true);
    expect(await page.locator('#release-arms tbody tr').count()).toBe(2);
    expect(await text(page, '#release-decision')).toContain('not enough data yet');

    // Green button.
    await page.getByLabel('Reason for the change').fill('v2 looks good');
    await page.getByRole('button', { name: 'Promote candidate' }).click();
    await expect.poll(() => text(page, '#release-live')).toBe('v2');
    await expect.poll(() => text(page, '#release-status')).toContain('Promoted');
    expect(await text(page, '#release-previous')).toBe('initial');
    expect(await text(page, '#release-candidate')).toBe('none');
    expect(await page.locator('#btn-promote').isDisabled()).toBe(true);
    expect(await chatRelease()).toBe('v2');

    // Red button.
    await page.getByRole('button', { name: 'Roll back' }).click();
    await expect.poll(() => text(page, '#release-live')).toBe('initial');
    await expect.poll(() => text(page, '#release-status')).toContain('Rolled back');
    expect(await chatRelease()).toBe('initial');
    const events = await page.locator('#release-events li').allTextContents();
    expect(events[0]).toMatch(/admin:root · rollback: v2 → initial/);
    expect(events[1]).toMatch(/admin:root · promote: initial → v2 — “v2 looks good”/);
    expect(errors).toEqual([]);
    await context.close();
  }, 60_000);
});
