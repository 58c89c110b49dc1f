/**
 * Expands the paths given to `mneme ingest` into the files to consider. Follows symlinks but never
 * leaves the given roots, never loops, and never walks into the data dir (which may sit inside the
 * corpus). Hidden entries (".git", ".cache") and node_modules are not walked.
 */
import fs from 'node:fs';
import path from 'node:path';
import { detectKind } from './loaders.ts';

export type WalkItem =
  | { type: 'file'; path: string; size: number }
  | { type: 'failed'; path: string; reason: 'unreadable' | 'unsupported'; message: string }
  | { type: 'skipped'; path: string; reason: 'outside_roots' | 'symlink_loop' | 'data_dir' | 'special_file'; message: string };

export interface WalkOptions {
  /** Real paths never to enter (the data dir). */
  exclude: string[];
}

const SKIP_DIR_NAMES = new Set(['node_modules']);

function within(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function errMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, '')}` : String(err);
}

/**
 * Yields files in a stable order (roots as given, entries sorted by name). Files given explicitly
 * are yielded whatever their extension (an unsupported one becomes a failure); files found by walking
 * a directory are yielded only when their extension is a supported kind.
 */
export async function* walk(roots: string[], options: WalkOptions): AsyncGenerator<WalkItem> {
  const realRoots: string[] = [];
  for (const r of roots) {
    try {
      realRoots.push(fs.realpathSync(path.resolve(r)));
    } catch {
      // Reported below when the root itself is visited.
    }
  }
  const excluded = options.exclude.map((p) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  });
  const visitedDirs = new Set<string>();
  const seenFiles = new Set<string>();

  async function* visit(p: string, explicit: boolean): AsyncGenerator<WalkItem> {
    let real: string;
    let st: fs.Stats;
    try {
      real = await fs.promises.realpath(p);
      st = await fs.promises.stat(real);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') {
        yield { type: 'skipped', path: p, reason: 'symlink_loop', message: 'symlink loop' };
      } else {
        yield { type: 'failed', path: p, reason: 'unreadable', message: errMessage(err) };
      }
      return;
    }
    if (!realRoots.some((root) => within(real, root))) {
      yield { type: 'skipped', path: p, reason: 'outside_roots', message: `links outside the given paths (to ${real})` };
      return;
    }
    if (excluded.some((x) => within(real, x))) {
      yield { type: 'skipped', path: p, reason: 'data_dir', message: 'inside the data dir' };
      return;
    }
    if (st.isDirectory()) {
      if (visitedDirs.has(real)) {
        yield { type: 'skipped', path: p, reason: 'symlink_loop', message: `directory already visited (${real})` };
        return;
      }
      visitedDirs.add(real);
      let entries: fs.Dirent[];
      try {
        entries = await fs.promises.readdir(p, { withFileTypes: true });
      } catch (err) {
        yield { type: 'failed', path: p, reason: 'unreadable', message: errMessage(err) };
        return;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (e.name.startsWith('.') || SKIP_DIR_NAMES.has(e.name)) continue;
        const child = path.join(p, e.name);
        if (e.isFile() && detectKind(e.name) === null) continue;
        yield* visit(child, false);
      }
      return;
    }
    if (!st.isFile()) {
      yield { type: 'skipped', path: p, reason: 'special_file', message: 'not a regular file' };
      return;
    }
    // A file reached through a symlink outside a walk: filter by extension like any walked file.
    if (!explicit && detectKind(real) === null && detectKind(p) === null) return;
    if (seenFiles.has(real)) return;
    seenFiles.add(real);
    if (explicit && detectKind(p) === null) {
      yield { type: 'failed', path: p, reason: 'unsupported', message: `unsupported file type "${path.extname(p) || '(none)'}"` };
      return;
    }
    yield { type: 'file', path: path.resolve(p), size: st.size };
  }

  for (const r of roots) yield* visit(path.resolve(r), true);
}

/** True if `file` is inside one of `roots` (used to scope --prune to what was walked). */
export function isUnder(file: string, roots: string[]): boolean {
  return roots.some((r) => within(file, path.resolve(r)));
}
