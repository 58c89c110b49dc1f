/**
 * `mneme serve` builds the web pages at start when they are missing (right after `npm ci`) or stale,
 * so `GET /` never answers "not built" on a fresh checkout. Real startServer, real esbuild build.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import { startServer } from '../../src/commands/serve.ts';
import { MANIFEST_FILE, webBuildStaleReason } from '../../src/web/build.ts';
import { bufferIo, tempDir, testEnv } from './http-helpers.ts';

/** The budget for building the pages at start, in ms (measured well below it). */
const BUILD_BUDGET_MS = 1000;

describe('serve builds missing or stale web pages', () => {
  it('GET / answers the chat page on a never-built checkout, and a stale build is rebuilt', async () => {
    const env = testEnv(tempDir(), { MNEME_EMBED_MODEL: 'none' });
    const config = loadConfig(env, { host: '127.0.0.1', port: 0 });
    const webDir = path.join(tempDir(), 'dist', 'web');
    expect(webBuildStaleReason(webDir)).toBe('not built');

    const logs: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
    const logger = { info: (msg: string, fields?: Record<string, unknown>) => logs.push({ msg, fields }), warn: () => {}, error: () => {}, debug: () => {} };
    const deps = await buildServerDeps(config);
    const running = await startServer(config, bufferIo(env), { deps: { ...deps, webAssetsDir: webDir, close: deps.close }, logger: logger as never });
    try {
      const page = await fetch(`${running.url}/`);
      expect(page.status).toBe(200);
      const html = await page.text();
      const script = /src="(\/assets\/chat-[^"]+\.js)"/.exec(html)?.[1];
      expect(script).toBeDefined();
      expect((await fetch(`${running.url}${script}`)).status).toBe(200);
      const built = logs.find((l) => l.msg === 'web pages built');
      expect(built?.fields?.reason).toBe('not built');
      expect(built?.fields?.ms as number).toBeLessThan(BUILD_BUDGET_MS);
    } finally {
      await running.shutdown();
    }
    expect(webBuildStaleReason(webDir)).toBeNull();

    // A source newer than the build makes it stale (here: the manifest is dated back instead).
    const old = new Date('2000-01-01T00:00:00Z');
    fs.utimesSync(path.join(webDir, MANIFEST_FILE), old, old);
    expect(webBuildStaleReason(webDir)).toMatch(/changed$/);
  }, 60_000);
});
