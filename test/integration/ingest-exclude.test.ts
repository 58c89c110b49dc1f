/**
 * `mneme ingest --exclude GLOB` and the page verdict stored with each document (real CLI processes,
 * real SQLite file): excluded files are reported as skipped and, with --prune, leave the collection;
 * navigation pages are stored with a weight < 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { IngestSummary } from '../../ingest/pipeline.ts';
import { PAGE_KIND_WEIGHTS } from '../../ingest/pipeline.ts';
import { cliEnv, runCli, tempDir } from '../helpers/cli.ts';

const page = (title: string, body: string) => `<html><head><title>${title}</title></head><body>${body}</body></html>`;

describe('ingest --exclude and page weights', () => {
  it('skips excluded files, prunes them when they were ingested before, and stores navigation pages with a lower weight', () => {
    const corpus = tempDir('mneme-corpus-');
    const dataDir = tempDir();
    fs.mkdirSync(path.join(corpus, 'html'));
    fs.writeFileSync(path.join(corpus, 'html', 'brin-intro.html'), page('71.1. Introduction', '<h1>BRIN</h1><p>BRIN stands for block range index.</p>'));
    fs.writeFileSync(path.join(corpus, 'html', 'bookindex.html'), page('Index', '<h1>Index</h1><p><a href="brin-intro.html">BRIN</a>, <a href="x.html">block range index</a></p>'));
    fs.writeFileSync(path.join(corpus, 'html', 'release-15-2.html'), page('E.14. Release 15.2', '<h1>Release 15.2</h1><p>Fix BRIN index summarization.</p>'));
    const env = cliEnv({ MNEME_EMBED_MODEL: 'none' });
    const ingest = (...extra: string[]) => {
      const r = runCli(['ingest', corpus, '--data-dir', dataDir, '--json', ...extra], env);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as IngestSummary;
    };
    const live = () => {
      const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
      try {
        return Object.fromEntries(
          (db.prepare('SELECT source_uri, weight FROM documents WHERE deleted_at IS NULL').all() as Array<{ source_uri: string; weight: number }>).map((r) => [path.basename(r.source_uri), r.weight]),
        );
      } finally {
        db.close();
      }
    };

    const first = ingest();
    expect(first.documents_added).toBe(3);
    expect(live()).toEqual({ 'brin-intro.html': 1, 'bookindex.html': PAGE_KIND_WEIGHTS.index, 'release-15-2.html': PAGE_KIND_WEIGHTS.release_notes });

    const second = ingest('--exclude', 'release-*.html', '--exclude', 'html/bookindex.html', '--prune');
    expect(second.skipped.map((s) => [path.basename(s.path), s.reason])).toEqual([
      ['bookindex.html', 'excluded'],
      ['release-15-2.html', 'excluded'],
    ]);
    expect(second.documents_deleted).toBe(2);
    expect(Object.keys(live())).toEqual(['brin-intro.html']);

    const bad = runCli(['ingest', corpus, '--data-dir', dataDir, '--exclude', '[oops'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unclosed/);
  });
});
