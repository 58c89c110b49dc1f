/**
 * Builds the web pages into dist/web (what `mneme serve` serves; see src/chat/http/routes/web.ts):
 *   dist/web/chat.html, admin.html       the pages, referencing hashed assets
 *   dist/web/assets/<name>-<hash>.js|css|svg  bundled + minified by esbuild (shared code in a chunk)
 *   dist/web/manifest.json               source name → served URL, and sizes
 * The output is written beside the old one and swapped in at the end, so a running server never
 * serves a half-written build.
 *
 * Run: `npm run build` (= `node --import tsx src/web/build.ts`); prints one JSON line with the assets
 * and their raw/gzip sizes. `mneme serve` calls `ensureWebBuilt()` at start, which builds only when
 * the output is missing or older than one of the inputs recorded in its manifest.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const WEB_SRC_DIR = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_WEB_OUT_DIR = path.resolve(WEB_SRC_DIR, '../../dist/web');

/** Browsers the bundles target (evergreen releases of early 2023 and later). */
export const BROWSER_TARGETS = ['chrome109', 'edge109', 'firefox115', 'safari16'];
/** Pages and the entry points they reference. */
const PAGES = ['chat.html', 'admin.html'] as const;
const ENTRIES = { chat: 'chat.ts', admin: 'admin.ts', style: 'style.css' } as const;
const STATIC_ASSETS = ['favicon.svg'] as const;
/** Hex characters of the content hash in static asset names. */
const HASH_CHARS = 10;
const PLACEHOLDER = /\{\{asset:([\w.-]+)\}\}/g;

export interface BuildWebOptions {
  /** Default DEFAULT_WEB_OUT_DIR (<repo>/dist/web). */
  outDir?: string;
  /** Default true. */
  minify?: boolean;
}

export interface BuiltAsset {
  /** URL path served, e.g. /assets/chat-AB12CD34.js */
  url: string;
  bytes: number;
  gzipBytes: number;
}

export interface BuildWebResult {
  outDir: string;
  /** Source name (chat.ts, style.css, favicon.svg, and chunk files by output name) → asset. */
  assets: Record<string, BuiltAsset>;
  /** Page → bytes of JS + CSS it loads (gzip), the cost of a first visit. */
  pageGzipBytes: Record<string, number>;
}

function sizes(file: string): { bytes: number; gzipBytes: number } {
  const buf = fs.readFileSync(file);
  return { bytes: buf.length, gzipBytes: gzipSync(buf, { level: 9 }).length };
}

/**
 * Replaces `{{asset:NAME}}` in a page with the asset's URL and adds modulepreload links for the
 * shared chunks its script imports. Pure.
 * @throws Error naming an unknown asset.
 */
export function renderPage(html: string, urls: Record<string, string>, preload: readonly string[] = []): string {
  const out = html.replace(PLACEHOLDER, (_m, name: string) => {
    const url = urls[name];
    if (!url) throw new Error(`page references unknown asset "${name}"`);
    return url;
  });
  if (preload.length === 0) return out;
  const links = preload.map((u) => `<link rel="modulepreload" href="${u}">`).join('\n');
  return out.replace('</head>', `${links}\n</head>`);
}

/**
 * Bundles the pages. Writes into a temporary sibling of `outDir`, then replaces `outDir`.
 * @throws the esbuild error (with file and line) when a source does not compile.
 */
export async function buildWeb(opts: BuildWebOptions = {}): Promise<BuildWebResult> {
  const outDir = path.resolve(opts.outDir ?? DEFAULT_WEB_OUT_DIR);
  const tmp = `${outDir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const assetsDir = path.join(tmp, 'assets');
  fs.mkdirSync(assetsDir, { recursive: true });
  try {
    const result = await build({
      entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, file]) => [name, path.join(WEB_SRC_DIR, file)])),
      bundle: true,
      format: 'esm',
      splitting: true,
      platform: 'browser',
      target: BROWSER_TARGETS,
      minify: opts.minify ?? true,
      entryNames: '[name]-[hash]',
      chunkNames: 'chunk-[hash]',
      outdir: assetsDir,
      metafile: true,
      legalComments: 'none',
      charset: 'utf8',
      logLevel: 'silent',
    });

    const urls: Record<string, string> = {};
    const assets: Record<string, BuiltAsset> = {};
    const importsOf = new Map<string, string[]>();
    for (const [outPath, out] of Object.entries(result.metafile.outputs)) {
      const abs = path.resolve(outPath);
      const url = `/assets/${path.basename(abs)}`;
      const source = out.entryPoint ? path.basename(out.entryPoint) : path.basename(abs);
      urls[source] = url;
      assets[source] = { url, ...sizes(abs) };
      importsOf.set(source, out.imports.filter((i) => i.kind === 'import-statement').map((i) => `/assets/${path.basename(i.path)}`));
    }
    for (const name of STATIC_ASSETS) {
      const src = path.join(WEB_SRC_DIR, name);
      const buf = fs.readFileSync(src);
      const ext = path.extname(name);
      const file = `${path.basename(name, ext)}-${createHash('sha256').update(buf).digest('hex').slice(0, HASH_CHARS)}${ext}`;
      fs.writeFileSync(path.join(assetsDir, file), buf);
      urls[name] = `/assets/${file}`;
      assets[name] = { url: urls[name], ...sizes(path.join(assetsDir, file)) };
    }

    const pageGzipBytes: Record<string, number> = {};
    for (const page of PAGES) {
      const script = page.replace('.html', '.ts');
      const preload = importsOf.get(script) ?? [];
      const html = renderPage(fs.readFileSync(path.join(WEB_SRC_DIR, page), 'utf8'), urls, preload);
      fs.writeFileSync(path.join(tmp, page), html);
      const loaded = [assets[script], assets['style.css'], ...preload.map((u) => Object.values(assets).find((a) => a.url === u))];
      pageGzipBytes[page] = gzipSync(html).length + loaded.reduce((n, a) => n + (a?.gzipBytes ?? 0), 0);
    }
    // Every source the build read (bundled modules, pages, static assets), relative to WEB_SRC_DIR,
    // so `ensureWebBuilt` can tell a stale build from a current one.
    const inputs = [
      ...Object.keys(result.metafile.inputs).map((p) => path.resolve(p)),
      ...PAGES.map((p) => path.join(WEB_SRC_DIR, p)),
      ...STATIC_ASSETS.map((a) => path.join(WEB_SRC_DIR, a)),
    ]
      .filter((p) => !p.includes(`${path.sep}node_modules${path.sep}`))
      .map((p) => path.relative(WEB_SRC_DIR, p));
    const manifest = { built_at: new Date().toISOString(), assets, page_gzip_bytes: pageGzipBytes, inputs };
    fs.writeFileSync(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);

    fs.rmSync(outDir, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(outDir), { recursive: true });
    fs.renameSync(tmp, outDir);
    return { outDir, assets, pageGzipBytes };
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** The build's manifest (assets, sizes, inputs) inside the output directory. */
export const MANIFEST_FILE = 'manifest.json';

/**
 * Why the build in `outDir` must be (re)made, or null when it is current: missing pages or
 * manifest, a manifest without its input list (older build), or an input missing or modified after
 * the manifest was written.
 */
export function webBuildStaleReason(outDir: string = DEFAULT_WEB_OUT_DIR): string | null {
  const manifestPath = path.join(outDir, MANIFEST_FILE);
  let builtMs: number;
  let inputs: unknown;
  try {
    builtMs = fs.statSync(manifestPath).mtimeMs;
    inputs = (JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as { inputs?: unknown }).inputs;
  } catch {
    return 'not built';
  }
  if (PAGES.some((p) => !fs.existsSync(path.join(outDir, p)))) return 'pages missing';
  if (!Array.isArray(inputs) || inputs.length === 0) return 'built without an input list';
  for (const rel of inputs) {
    const abs = path.resolve(WEB_SRC_DIR, String(rel));
    let mtimeMs: number;
    try {
      mtimeMs = fs.statSync(abs).mtimeMs;
    } catch {
      return `${path.relative(WEB_SRC_DIR, abs)} is gone`;
    }
    if (mtimeMs > builtMs) return `${path.relative(WEB_SRC_DIR, abs)} changed`;
  }
  return null;
}

export interface EnsureWebBuiltResult {
  /** True when a build ran. */
  built: boolean;
  /** Why it ran (null: the build was current). */
  reason: string | null;
  /** Time spent, in ms. */
  ms: number;
}

/**
 * Builds the pages when they are missing or stale (what `mneme serve` does at start, so `GET /`
 * works right after `npm ci`). A current build costs a few stat calls; a build takes well under a
 * second (esbuild).
 * @throws the esbuild error when a source does not compile.
 */
export async function ensureWebBuilt(opts: BuildWebOptions = {}): Promise<EnsureWebBuiltResult> {
  const t0 = performance.now();
  const outDir = path.resolve(opts.outDir ?? DEFAULT_WEB_OUT_DIR);
  const reason = webBuildStaleReason(outDir);
  if (reason !== null) {
    try {
      await buildWeb(opts);
    } catch (err) {
      // Another process (a second server, a test run) may have swapped its build in at the same
      // moment: that one is as good as ours.
      if (webBuildStaleReason(outDir) !== null) throw err;
    }
  }
  return { built: reason !== null, reason, ms: Math.round(performance.now() - t0) };
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  buildWeb().then(
    (r) => {
      process.stdout.write(`${JSON.stringify({ out_dir: r.outDir, page_gzip_bytes: r.pageGzipBytes, assets: r.assets })}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`web build failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
