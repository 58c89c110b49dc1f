/**
 * `mneme ingest --exclude GLOB`: files of the walk that are left out of a collection (skipped, and
 * removed from it by `--prune`). Pure.
 *
 * Glob syntax: `*` any run of characters except `/`, `**` any run including `/` (`**∕` also matches
 * nothing), `?` one character except `/`, `[abc]` / `[a-z]` / `[!abc]` a class; everything else is
 * literal. A glob without `/` is matched against the file's name ("release-*.html"); a glob with `/`
 * against its path relative to the root it was found under ("html/release-*.html", "**∕drafts/**").
 */
import path from 'node:path';
import { ValidationError } from '../src/core/errors.ts';

/** Longest glob accepted, in characters. */
export const EXCLUDE_GLOB_MAX_CHARS = 512;

/**
 * Compiles a glob to an anchored RegExp.
 * @throws ValidationError for an empty or over-long glob, or an unclosed `[`.
 */
export function globToRegExp(glob: string): RegExp {
  if (glob === '' || glob.length > EXCLUDE_GLOB_MAX_CHARS) throw new ValidationError(`--exclude: a glob must have 1 to ${EXCLUDE_GLOB_MAX_CHARS} characters`);
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) throw new ValidationError(`--exclude: unclosed "[" in ${JSON.stringify(glob)}`);
      let body = glob.slice(i + 1, end);
      const negated = body.startsWith('!');
      if (negated) body = body.slice(1);
      re += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 'u');
}

/** A set of compiled --exclude globs. */
export class ExcludeMatcher {
  private readonly globs: Array<{ glob: string; re: RegExp; byName: boolean }>;
  private readonly roots: string[];

  /**
   * @param globs the --exclude values
   * @param roots the walked roots (absolute or relative to the working directory)
   * @throws ValidationError for an invalid glob
   */
  constructor(globs: readonly string[], roots: readonly string[]) {
    this.globs = globs.map((g) => ({ glob: g, re: globToRegExp(g), byName: !g.includes('/') }));
    this.roots = roots.map((r) => path.resolve(r));
  }

  get size(): number {
    return this.globs.length;
  }

  /** The first glob `file` matches, or null. */
  match(file: string): string | null {
    if (this.globs.length === 0) return null;
    const abs = path.resolve(file);
    const name = path.basename(abs);
    const rels = this.roots
      .map((r) => path.relative(r, abs))
      .filter((rel) => rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel))
      .map((rel) => rel.split(path.sep).join('/'));
    if (rels.length === 0) rels.push(name);
    for (const g of this.globs) {
      if (g.byName ? g.re.test(name) : rels.some((rel) => g.re.test(rel))) return g.glob;
    }
    return null;
  }
}
