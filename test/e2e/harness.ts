/** What the browser tests share: the chromium to drive, where screenshots go, and a real HTTP server for an app. */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { loadConfig } from '../../src/core/config.ts';
import { REPO, tempDir } from '../integration/http-helpers.ts';

export const CHROMIUM_PATH = loadConfig({ MNEME_CHROMIUM_PATH: process.env.MNEME_CHROMIUM_PATH }).chromiumPath;
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** docs/screenshots with MNEME_UPDATE_SCREENSHOTS=1 (the README's pictures), else a temp dir. */
export const SCREENSHOTS = process.env.MNEME_UPDATE_SCREENSHOTS === '1' ? path.join(REPO, 'docs/screenshots') : tempDir();

/** Listens on 127.0.0.1 at a free port; resolves with the server and its base URL. */
export async function listen(app: { listen(port: number, host: string, cb: () => void): http.Server }): Promise<{ server: http.Server; url: string }> {
  const server = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Closes `server` and every connection a browser kept alive. */
export async function stopServer(server: http.Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
