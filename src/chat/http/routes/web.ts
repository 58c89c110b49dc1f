/**
 * The two web pages, served by the chat server itself (no separate front-end server):
 * - GET /        chat page (dist/web/chat.html)
 * - GET /admin   monitoring page (dist/web/admin.html); the page is public, its data needs an admin key
 * - GET /assets/<name>-<hash>.<ext>  content-hashed bundles: `Cache-Control: public, max-age=31536000,
 *   immutable` (a new build has new names, so a cached file never goes stale)
 * HTML answers `Cache-Control: no-cache` (revalidated every time, cheap thanks to the ETag), so a
 * rebuild shows up on the next load. Every answer carries a strict Content-Security-Policy (no
 * inline script or style, nothing from other origins, no framing): even an HTML/script string that
 * slipped into the DOM could not run.
 *
 * When the pages are not built (`dist/web/chat.html` missing) both pages answer 503 with a short
 * page saying to run `npm run build`; the JSON API is unaffected.
 *
 * Mount BEFORE `authenticate`: the pages and assets are public (the browser cannot send a bearer
 * key when loading a page); the pages then call the API with the key the user typed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';
import type { Response } from 'express';

/** Where `npm run build` writes the pages: <repo>/dist/web. */
export const DEFAULT_WEB_ASSETS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../dist/web');

/** The policy: same-origin scripts, styles, XHR/fetch and images (+ data: images for the icon). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Hashed assets never change: cache them for a year (the maximum browsers honour). */
export const IMMUTABLE_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** Pages are revalidated on every load (ETag), so a rebuild is picked up immediately. */
export const PAGE_CACHE_CONTROL = 'no-cache';

/** Retry-After of the "not built" page, in seconds. */
const NOT_BUILT_RETRY_AFTER_SECONDS = 30;

const PAGES = { '/': 'chat.html', '/admin': 'admin.html' } as const;

const NOT_BUILT_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mneme: web pages not built</title></head>
<body>
<h1>mneme's web pages are not built</h1>
<p>The server is running and its HTTP API works, but the chat and monitoring pages have not been built yet.</p>
<p>Run <code>npm run build</code> in the mneme directory, then reload this page.</p>
</body></html>
`;

function securityHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
}

export interface WebRouterOptions {
  /** The build output (contains chat.html, admin.html, assets/). Default DEFAULT_WEB_ASSETS_DIR. */
  assetsDir?: string;
}

/**
 * Router serving the pages and their assets. Pages are read from disk on each request (they are a
 * few KB and the OS caches them), so a rebuild while the server runs needs no restart.
 */
export function webRouter(opts: WebRouterOptions = {}): Router {
  const dir = path.resolve(opts.assetsDir ?? DEFAULT_WEB_ASSETS_DIR);
  const router = Router({ strict: true });

  for (const [route, file] of Object.entries(PAGES)) {
    router.get(route, (_req, res, next) => {
      securityHeaders(res);
      let html: string;
      try {
        html = fs.readFileSync(path.join(dir, file), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          next(err);
          return;
        }
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Retry-After', String(NOT_BUILT_RETRY_AFTER_SECONDS));
        res.status(503).type('html').send(NOT_BUILT_HTML);
        return;
      }
      res.setHeader('Cache-Control', PAGE_CACHE_CONTROL);
      res.type('html').send(html);
    });
  }

  router.use(
    '/assets',
    (_req, res, next) => {
      securityHeaders(res);
      next();
    },
    express.static(path.join(dir, 'assets'), {
      index: false,
      redirect: false,
      dotfiles: 'ignore',
      immutable: true,
      maxAge: '365d',
      fallthrough: true,
    }),
    // Unknown asset (an old hash after a rebuild, a typo): a plain 404, never the API's 401.
    (req, res) => {
      res.setHeader('Cache-Control', 'no-store');
      res.status(404).type('text/plain').send(`no asset ${req.path}\n`);
    },
  );
  return router;
}
