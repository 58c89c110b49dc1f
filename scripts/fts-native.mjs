#!/usr/bin/env node
/**
 * Builds mneme's SQLite extension, native/mneme_fts.c → native/build/mneme_fts.so (postinstall of
 * mneme), against the SQLite headers better-sqlite3 ships (the extension runs inside its SQLite).
 *
 * The extension is optional (src/core/store/sqlite/fts-native.ts): without it connections rank with
 * FTS5's bm25(), same scores, more work per statement. So this never fails the install: when there
 * is no C compiler, the build fails, or the result does not load and score like bm25() in a process
 * of its own, no file is left and it says why. `CC` picks the compiler (default: cc, gcc, clang or
 * g++, the first found).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const say = (msg) => process.stderr.write(`mneme postinstall: ${msg}\n`);
const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'native', 'mneme_fts.c');
const out = path.join(root, 'native', 'build', 'mneme_fts.so');

function main() {
  if (process.platform === 'win32') return say('the FTS5 extension is not built on Windows: bm25() ranks');
  let headers;
  try {
    headers = path.join(path.dirname(require.resolve('better-sqlite3/package.json')), 'deps', 'sqlite3');
  } catch {
    return say('better-sqlite3 is not installed: the FTS5 extension is not built');
  }
  if (!fs.existsSync(path.join(headers, 'sqlite3ext.h'))) return say(`no sqlite3ext.h in ${headers}: the FTS5 extension is not built`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.rmSync(out, { force: true });
  // SQLite names the entry point after the file up to its first dot: sqlite3_mnemefts_init.
  const tmp = path.join(path.dirname(out), `mneme_fts.${process.pid}.tmp`);
  // CC, else the first C compiler found (g++ compiles it as C with -x c).
  const compilers = process.env.CC ? [[process.env.CC]] : [['cc'], ['gcc'], ['clang'], ['g++', '-x', 'c']];
  const flags = ['-O2', '-fPIC', '-shared', ...(process.platform === 'darwin' ? ['-undefined', 'dynamic_lookup'] : []), `-I${headers}`, source, '-o', tmp, '-lm'];
  let failure = null;
  for (const [cc, ...pre] of compilers) {
    try {
      execFileSync(cc, [...pre, ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
      failure = null;
      break;
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      if (err.code === 'ENOENT') failure ??= `no C compiler (${compilers.map((c) => c[0]).join(', ')})`;
      else {
        failure = String(err.stderr ?? err).split('\n').find((l) => /error/i.test(l)) ?? `${cc} exited non-zero`;
        break;
      }
    }
  }
  if (failure !== null || !fs.existsSync(tmp)) return say(`the FTS5 extension was not built (${failure ?? 'no output'}): bm25() ranks`);
  // It must load into better-sqlite3 and give bm25()'s scores, in a process of its own.
  const probe = `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
    const db = new Database(':memory:');
    db.loadExtension(${JSON.stringify(tmp)});
    db.exec("CREATE VIRTUAL TABLE t USING fts5(a, b)");
    const ins = db.prepare('INSERT INTO t (a, b) VALUES (?, ?)');
    for (let i = 0; i < 50; i++) ins.run('alpha beta '.repeat(1 + (i % 4)) + (i % 3 ? 'gamma' : ''), i % 5 ? 'beta' : 'delta');
    const q = '"beta" OR "gamma" OR "delta"';
    const n = (p) => db.prepare('SELECT count(*) AS n FROM t WHERE t MATCH ?').get(p).n;
    const a = db.prepare('SELECT rowid, bm25(t, 1.0, 0.5) AS s FROM t WHERE t MATCH ? ORDER BY s, rowid').all(q);
    const b = db.prepare('SELECT rowid, mneme_bm25(t, 1.0, 0.5, ?) AS s FROM t WHERE t MATCH ? ORDER BY s, rowid').all([n('"beta"'), n('"gamma"'), n('"delta"')].join(','), q);
    if (a.length === 0 || JSON.stringify(a) !== JSON.stringify(b)) process.exit(1);`;
  try {
    execFileSync(process.execPath, ['-e', probe], { stdio: 'ignore' });
  } catch {
    fs.rmSync(tmp, { force: true });
    return say('the FTS5 extension did not pass its probe: bm25() ranks');
  }
  fs.renameSync(tmp, out);
  say(`FTS5 extension built (${path.relative(root, out)})`);
}

try {
  main();
} catch (err) {
  say(`FTS5 extension skipped (${err instanceof Error ? err.message : String(err)})`);
}
