/**
 * mneme's SQLite extension (native/mneme_fts.c, built by `npm ci`'s postinstall,
 * scripts/fts-native.mjs): the FTS5 auxiliary function `mneme_bm25`, FTS5's bm25() with the
 * phrases' document frequencies given by the caller instead of counted again by every statement.
 *
 * Optional: without the built file (no C compiler at install, another platform) or with
 * `MNEME_FTS_NATIVE=0`, connections rank with bm25(), which gives the same scores at a higher cost
 * per statement (bench/README.md, "Issue 17: document frequencies counted once").
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';

/** Where scripts/fts-native.mjs writes the extension (the package's native/build/). */
export const FTS_EXTENSION_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'native', 'build', 'mneme_fts.so');

/** Whether a connection ranks with mneme_bm25, and why not when it does not. */
export interface FtsNativeState {
  loaded: boolean;
  /** Why the extension is not in use ('disabled', 'not built: <file>', or the load error). */
  reason: string | null;
}

/**
 * Loads the extension into `db` when `wanted` and the file exists. Never throws: a failed load leaves
 * the connection on bm25() and says why.
 */
export function loadFtsExtension(db: Database.Database, wanted: boolean, file = FTS_EXTENSION_FILE): FtsNativeState {
  if (!wanted) return { loaded: false, reason: 'disabled' };
  if (!fs.existsSync(file)) return { loaded: false, reason: `not built: ${file}` };
  try {
    // SQLite finds the entry point from the file name: mneme_fts.so → sqlite3_mnemefts_init.
    db.loadExtension(file);
    return { loaded: true, reason: null };
  } catch (err) {
    return { loaded: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * The quoted phrases of an FTS5 MATCH expression in the order FTS5 numbers them (text order),
 * unquoted. mneme's expressions quote every term and its terms hold no '"' (fts-query.ts), but a
 * doubled quote inside a phrase is read as FTS5 reads it.
 */
export function matchPhrases(match: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"]|"")*)"/g;
  for (let m = re.exec(match); m !== null; m = re.exec(match)) out.push(m[1]!.replace(/""/g, '"'));
  return out;
}
