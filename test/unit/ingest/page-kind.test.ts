/**
 * Ranking hygiene at ingest (issue 13, item 7): the loader's page verdict (title patterns, HTML link
 * density), the weight ingest stores for it, and `--exclude` globs.
 */
import { describe, expect, it } from 'vitest';
import { ExcludeMatcher, globToRegExp } from '../../../ingest/exclude.ts';
import { classifyPage, loadDocument, TOC_LINK_DENSITY } from '../../../ingest/loaders.ts';
import { documentWeight, PAGE_KIND_WEIGHTS } from '../../../ingest/pipeline.ts';
import { ValidationError } from '../../../src/core/errors.ts';

const html = (title: string, body: string) => new TextEncoder().encode(`<html><head><title>${title}</title></head><body>${body}</body></html>`);

describe('classifyPage', () => {
  it('recognizes indexes, tables of contents and release notes by title', () => {
    for (const t of ['Index', 'General Index', 'Appendix I. Index', 'I. Index', 'Index of functions']) expect(classifyPage(t)).toBe('index');
    for (const t of ['Release 15.2', 'E.14. Release 15.2', 'Appendix E. Release Notes', 'E.22. Prior Releases', 'Changelog']) expect(classifyPage(t)).toBe('release_notes');
    for (const t of ['Table of Contents', 'Contents']) expect(classifyPage(t)).toBe('toc');
    // Content pages that merely mention the words.
    for (const t of ['CREATE INDEX', 'DROP INDEX', '11.2. Index Types', '71.1. Introduction', 'Releasing locks', 'Release cycle of the project', 'Contents of a WAL record']) {
      expect(classifyPage(t)).toBe('content');
    }
  });

  it('judges link density only on pages with enough text', () => {
    expect(classifyPage('Chapter 11. Indexes', TOC_LINK_DENSITY, 5000)).toBe('toc');
    expect(classifyPage('Chapter 11. Indexes', TOC_LINK_DENSITY - 0.01, 5000)).toBe('content');
    expect(classifyPage('Links', 1, 50)).toBe('content');
  });

  it('the HTML loader measures link density and gives its verdict', async () => {
    const links = Array.from({ length: 30 }, (_, i) => `<li><a href="s${i}.html">11.${i}. Section about topic number ${i}</a></li>`).join('');
    const toc = await loadDocument(html('Chapter 11. Indexes', `<h1>Chapter 11. Indexes</h1><ul>${links}</ul>`), 'indexes.html');
    expect(toc.linkDensity).toBeGreaterThan(0.8);
    expect(toc.pageKind).toBe('toc');
    const content = await loadDocument(html('11.8. Partial Indexes', `<h1>Partial Indexes</h1><p>A partial index is built over a subset of a table; see <a href="x.html">CREATE INDEX</a>. ${'More text about it. '.repeat(20)}</p>`), 'p.html');
    expect(content.linkDensity).toBeLessThan(0.1);
    expect(content.pageKind).toBe('content');
    // An <a> without href (an anchor) is not a link.
    const anchors = await loadDocument(html('Anchors', `<p>${'<a id="x">plain words here</a> '.repeat(30)}</p>`), 'a.html');
    expect(anchors.linkDensity).toBe(0);
  });

  it('ingest weights: content 1, navigation pages less; non-HTML judged by title', () => {
    expect(documentWeight({ title: 'x', kind: 'text/html', sections: [], pageKind: 'toc' })).toBe(PAGE_KIND_WEIGHTS.toc);
    expect(documentWeight({ title: 'Release 2.1', kind: 'text/markdown', sections: [] })).toBe(PAGE_KIND_WEIGHTS.release_notes);
    expect(documentWeight({ title: 'Install', kind: 'text/markdown', sections: [] })).toBe(1);
    for (const w of Object.values(PAGE_KIND_WEIGHTS)) expect(w).toBeGreaterThan(0);
  });
});

describe('--exclude globs', () => {
  it('compiles * ** ? [..] and escapes the rest', () => {
    expect(globToRegExp('release-*.html').test('release-15-2.html')).toBe(true);
    expect(globToRegExp('release-*.html').test('sub/release-15-2.html')).toBe(false);
    expect(globToRegExp('**/drafts/**').test('a/b/drafts/c/d.md')).toBe(true);
    expect(globToRegExp('**/drafts/**').test('drafts/d.md')).toBe(true);
    expect(globToRegExp('file?.md').test('file1.md')).toBe(true);
    expect(globToRegExp('[!a]*.md').test('a.md')).toBe(false);
    expect(globToRegExp('[a-c].md').test('b.md')).toBe(true);
    expect(globToRegExp('a.b').test('axb')).toBe(false);
    expect(() => globToRegExp('[abc')).toThrow(ValidationError);
    expect(() => globToRegExp('')).toThrow(ValidationError);
  });

  it('a glob without "/" matches the file name, one with "/" the path under its root', () => {
    const m = new ExcludeMatcher(['bookindex.html', 'html/release-*.html'], ['/corpus']);
    expect(m.match('/corpus/html/bookindex.html')).toBe('bookindex.html');
    expect(m.match('/corpus/html/release-15-2.html')).toBe('html/release-*.html');
    expect(m.match('/corpus/other/release-15-2.html')).toBeNull();
    expect(m.match('/corpus/html/brin-intro.html')).toBeNull();
    expect(new ExcludeMatcher([], ['/corpus']).match('/corpus/x')).toBeNull();
  });
});
