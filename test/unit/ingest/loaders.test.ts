import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectKind, loadDocument } from '../../../ingest/loaders.ts';
import type { LoadedDocument, LoadFailureCode } from '../../../ingest/types.ts';
import { LoaderError } from '../../../src/core/errors.ts';

const FIXTURES_DIR = join(import.meta.dirname, '../../fixtures/docs');

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const load = (text: string, fileName: string, opts?: { jsonTextFields?: string[] }): Promise<LoadedDocument> =>
  loadDocument(utf8(text), fileName, opts);

/** Awaits a rejection and checks it is a LoaderError with the given reason; returns it for message checks. */
async function expectLoaderError(promise: Promise<unknown>, reason: LoadFailureCode): Promise<LoaderError> {
  const error: unknown = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LoaderError);
  const loaderError = error as LoaderError;
  expect(loaderError.reason).toBe(reason);
  expect(loaderError.code).toBe(`load_${reason}`);
  expect(loaderError.message.length).toBeGreaterThan(5);
  return loaderError;
}

/**
 * A minimal valid PDF written by hand: one Helvetica (standard Type1, no embedding) text stream per
 * page, an Info dictionary with a Title, and a correct xref table (byte offsets computed here).
 * Page lines must not contain parentheses or backslashes (no string escaping here).
 */
function buildPdf(pages: readonly (readonly string[])[], title?: string): Uint8Array {
  const objects: string[] = [];
  const pageIds = pages.map((_, i) => 5 + 2 * i);
  objects.push('<< /Type /Catalog /Pages 2 0 R >>'); // 1
  objects.push(`<< /Type /Pages /Kids [${pageIds.map((id) => `${id} 0 R`).join(' ')}] /Count ${pages.length} >>`); // 2
  objects.push('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>'); // 3
  objects.push(title === undefined ? '<< /Producer (mneme test) >>' : `<< /Title (${title}) /Producer (mneme test) >>`); // 4
  pages.forEach((lines, i) => {
    const ops = ['BT', '/F1 12 Tf', '14 TL', '72 720 Td', ...lines.map((line) => `(${line}) Tj T*`), 'ET'].join('\n');
    objects.push(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents ${6 + 2 * i} 0 R >>`);
    objects.push(`<< /Length ${ops.length} >>\nstream\n${ops}\nendstream`);
  });
  // Everything is ASCII, so string length == byte offset.
  let pdf = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(pdf.length);
    pdf += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xrefOffset = pdf.length;
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  pdf += offsets.map((offset) => `${String(offset).padStart(10, '0')} 00000 n \n`).join('');
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /Info 4 0 R >>\nstartxref\n${xrefOffset}\n%%EOF\n`;
  return utf8(pdf);
}

describe('detectKind', () => {
  it.each([
    ['notes.md', 'text/markdown'],
    ['README.MARKDOWN', 'text/markdown'],
    ['page.mdx', 'text/markdown'],
    ['a.txt', 'text/plain'],
    ['a.text', 'text/plain'],
    ['guide.rst', 'text/plain'],
    ['server.log', 'text/plain'],
    ['index.html', 'text/html'],
    ['index.HTM', 'text/html'],
    ['page.xhtml', 'text/html'],
    ['paper.pdf', 'application/pdf'],
    ['data.json', 'application/json'],
    ['data.jsonl', 'application/json'],
    ['data.ndjson', 'application/json'],
    ['dir/sub.dir/file.md', 'text/markdown'],
    ['C:\\docs\\file.txt', 'text/plain'],
  ])('%s → %s', (name, kind) => {
    expect(detectKind(name)).toBe(kind);
  });

  it.each(['image.png', 'archive.tar.gz', 'Makefile', '.bashrc', 'dir.md/file', 'doc.docx'])('%s → null', (name) => {
    expect(detectKind(name)).toBeNull();
  });
});

describe('loadDocument: markdown', () => {
  const markdown = [
    '---',
    'title: "Zephyrin Field Guide"',
    'tags: [birds]',
    '---',
    '',
    'Intro before any heading.',
    '',
    '# Zephyrin',
    '',
    'About the zephyrin bird.',
    '',
    '## Habitat',
    '',
    'Lives on cliffs.',
    '',
    '### Nesting',
    '',
    'Builds nests of moss.',
    '',
    '```bash',
    '# this is a shell comment, not a heading',
    '## neither is this',
    'echo nest',
    '```',
    '',
    '~~~',
    '# tilde fence comment',
    '~~~',
    '',
    'After the fences.',
    '',
    '## Diet ##',
    '',
    'Eats beetles.',
    '',
    'Migration',
    '---------',
    '',
    'Flies south in October.',
    '',
    '#hashtag is not a heading',
  ].join('\n');

  it('splits by ATX and setext headings, keeps the heading stack and ignores # inside fences', async () => {
    const doc = await load(markdown, 'guide.md');
    expect(doc.kind).toBe('text/markdown');
    expect(doc.title).toBe('Zephyrin Field Guide');
    expect(doc.sections.map((s) => s.headingPath)).toEqual([
      [],
      ['Zephyrin'],
      ['Zephyrin', 'Habitat'],
      ['Zephyrin', 'Habitat', 'Nesting'],
      ['Zephyrin', 'Diet'],
      ['Zephyrin', 'Migration'],
    ]);
    expect(doc.sections[0]?.text).toBe('Intro before any heading.');
    const nesting = doc.sections[3]?.text ?? '';
    expect(nesting).toContain('# this is a shell comment, not a heading');
    expect(nesting).toContain('## neither is this');
    expect(nesting).toContain('```bash');
    expect(nesting).toContain('# tilde fence comment');
    expect(nesting).toContain('After the fences.');
    expect(doc.sections[5]?.text).toBe('Flies south in October.\n\n#hashtag is not a heading');
  });

  it('strips front matter from the text', async () => {
    const doc = await load(markdown, 'guide.md');
    const all = doc.sections.map((s) => s.text).join('\n');
    expect(all).not.toContain('tags: [birds]');
    expect(all).not.toContain('---');
  });

  it('title falls back to the first h1, then the file name without extension', async () => {
    expect((await load('Some text\n\n# First H1\n\nbody\n\n# Second H1\n\nmore', 'x.md')).title).toBe('First H1');
    expect((await load('Setext Title\n============\n\nbody', 'x.md')).title).toBe('Setext Title');
    expect((await load('## Only h2\n\nbody', 'notes/deep/my-notes.md')).title).toBe('my-notes');
    expect((await load('---\nauthor: me\n---\nbody', 'plain-front.md')).title).toBe('plain-front');
  });

  it('an h2 after an h3 pops back to the h2 level', async () => {
    const doc = await load('# A\n\n## B\n\n### C\n\nc\n\n## D\n\nd\n\n# E\n\ne', 'x.md');
    expect(doc.sections.map((s) => s.headingPath)).toEqual([['A', 'B', 'C'], ['A', 'D'], ['E']]);
  });

  it('cleans inline markup out of heading paths', async () => {
    const doc = await load('## The `mneme` **CLI** and [docs](http://x)\n\ntext', 'x.md');
    expect(doc.sections[0]?.headingPath).toEqual(['The mneme CLI and docs']);
  });

  it('a thematic break after a blank line is not a heading', async () => {
    const doc = await load('# T\n\npara one\n\n---\n\npara two', 'x.md');
    expect(doc.sections).toHaveLength(1);
    expect(doc.sections[0]?.text).toBe('para one\n\n---\n\npara two');
  });

  it('headings-only markdown is empty', async () => {
    await expectLoaderError(load('# Title\n\n## Sub\n', 'x.md'), 'empty');
  });
});

describe('loadDocument: html', () => {
  const html = `<!doctype html>
<html><head><title>Glowmoth &amp; Friends</title><style>.x{color:red}</style>
<script>document.write("INJECTED")</script></head>
<body>
<nav><a href="/">NAVLINK</a></nav>
<p>Before headings.</p>
<h1>Glowmoth</h1>
<p>Glowmoths   glow
   at night.</p>
<script>alert(1)</script>
<h2>Wings</h2>
<h3>Scales</h3>
<p>Tiny scales.<br>Second line.</p>
<h2>Food</h2>
<p>Literal &lt;script&gt;alert(2)&lt;/script&gt; is content; so is &lt;b&gt;not bold&lt;/b&gt; &amp; &quot;quotes&quot; &#169; &eacute;.</p>
<pre>
line 1
    indented   line 2
</pre>
<ul><li>one</li><li>two</li></ul>
<div hidden>HIDDENTEXT</div><span aria-hidden="true">ARIAHIDDEN</span><p style="display: none">STYLEHIDDEN</p>
<noscript>NOSCRIPTTEXT</noscript><template><p>TEMPLATETEXT</p></template>
<svg><title>SVGTITLE</title><text>SVGTEXT</text></svg>
<footer>FOOTERTEXT</footer>
</body></html>`;

  it('extracts readable text in sections by heading, with the heading stack', async () => {
    const doc = await load(html, 'glow.html');
    expect(doc.kind).toBe('text/html');
    expect(doc.title).toBe('Glowmoth & Friends');
    expect(doc.sections.map((s) => s.headingPath)).toEqual([[], ['Glowmoth'], ['Glowmoth', 'Wings', 'Scales'], ['Glowmoth', 'Food']]);
    expect(doc.sections[0]?.text).toBe('Before headings.');
    expect(doc.sections[1]?.text).toBe('Glowmoths glow at night.');
    expect(doc.sections[2]?.text).toBe('Tiny scales.\nSecond line.');
  });

  it('drops script, style, head, nav, footer, hidden, noscript, template and svg content', async () => {
    const doc = await load(html, 'glow.html');
    const all = doc.sections.map((s) => s.text).join('\n');
    for (const hidden of ['INJECTED', 'alert(1)', 'color:red', 'NAVLINK', 'FOOTERTEXT', 'HIDDENTEXT', 'ARIAHIDDEN', 'STYLEHIDDEN', 'NOSCRIPTTEXT', 'TEMPLATETEXT', 'SVGTITLE', 'SVGTEXT']) {
      expect(all).not.toContain(hidden);
    }
  });

  it('decodes entities so escaped markup is kept as text', async () => {
    const food = (await load(html, 'glow.html')).sections[3]?.text ?? '';
    expect(food).toContain('Literal <script>alert(2)</script> is content; so is <b>not bold</b> & "quotes" © é.');
  });

  it('keeps <pre> whitespace and puts list items on their own lines', async () => {
    const food = (await load(html, 'glow.html')).sections[3]?.text ?? '';
    expect(food).toContain('line 1\n    indented   line 2');
    expect(food).toMatch(/line 2\n\none\ntwo$/);
  });

  it('title falls back to the first h1, then the file name', async () => {
    expect((await load('<h2>Sub</h2><p>x</p><h1>Main</h1><p>y</p>', 'a.html')).title).toBe('Main');
    expect((await load('<p>just text</p>', 'site/about-us.htm')).title).toBe('about-us');
    expect((await load('<title>  </title><p>x</p>', 'blank-title.html')).title).toBe('blank-title');
  });

  it('separates table cells and rows', async () => {
    const doc = await load('<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>', 't.html');
    expect(doc.sections[0]?.text).toBe('a | b\n1 | 2');
  });

  it('markup-only html is empty', async () => {
    await expectLoaderError(load('<html><head><title>T</title></head><body><script>x()</script></body></html>', 'x.html'), 'empty');
  });
  it('drops navigation chrome marked by ARIA role or by generated-docs class names (DocBook prev/up/next)', async () => {
    const doc = await load(
      `<div class="navheader"><table><tr><th>8.1. Numeric Types</th></tr><tr><td><a href="p.html">Prev</a></td><td>Up</td><td>Next</td></tr></table></div>
<div class="sect1"><div class="titlepage"><div><div><h2 class="title">8.1. Numeric Types</h2></div></div></div>
<p>Numeric types consist of integers.</p></div>
<div role="navigation">ROLE-NAV</div><div role="contentinfo">ROLE-FOOTER</div><ol class="Breadcrumb">CRUMBS</ol>
<div class="navfooter"><table><tr><td>Prev</td><td>Home</td><td>Next</td></tr></table></div>
<div class="navigation-help">kept: not a whole class token of the list</div>`,
      'datatype-numeric.html',
    );
    const all = doc.sections.map((s) => s.text).join('\n');
    for (const chrome of ['Prev', 'Next', 'Home', 'ROLE-NAV', 'ROLE-FOOTER', 'CRUMBS']) expect(all).not.toContain(chrome);
    expect(doc.sections).toEqual([
      { headingPath: ['8.1. Numeric Types'], text: 'Numeric types consist of integers.\n\nkept: not a whole class token of the list' },
    ]);
  });

  it('scopes an admonition title (Note, Warning, <aside>) to its box: what follows is back under the section', async () => {
    const doc = await load(
      `<h1>9.4. String Functions</h1><p>Intro.</p>
<div class="note"><h3 class="title">Note</h3><p>Before 8.3 these were different.</p></div>
<p>The string functions are listed in Table 9.9.</p>
<aside><h2>Aside heading at the same level</h2><p>side text</p></aside>
<p>Still string functions.</p>
<h2>9.4.1. format</h2><p>Formats.</p>`,
      'functions-string.html',
    );
    expect(doc.sections).toEqual([
      { headingPath: ['9.4. String Functions'], text: 'Intro.' },
      { headingPath: ['9.4. String Functions', 'Note'], text: 'Before 8.3 these were different.' },
      { headingPath: ['9.4. String Functions'], text: 'The string functions are listed in Table 9.9.' },
      { headingPath: ['9.4. String Functions', 'Aside heading at the same level'], text: 'side text' },
      { headingPath: ['9.4. String Functions'], text: 'Still string functions.' },
      { headingPath: ['9.4. String Functions', '9.4.1. format'], text: 'Formats.' },
    ]);
  });
});

describe('loadDocument: plain text', () => {
  it('is one section titled by its first non-empty line', async () => {
    const doc = await load('\n\n  Ferry notes  \r\nline two\r\n\r\nline four\n', 'notes.txt');
    expect(doc).toEqual({ title: 'Ferry notes', kind: 'text/plain', sections: [{ headingPath: [], text: '  Ferry notes  \nline two\n\nline four' }] });
  });

  it('uses the file name when the first line is longer than 120 chars', async () => {
    const doc = await load(`${'x'.repeat(121)}\nmore`, 'logs/long-line.log');
    expect(doc.title).toBe('long-line');
  });

  it('strips a UTF-8 BOM', async () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8('Héllo BOM')]);
    const doc = await loadDocument(bytes, 'bom.txt');
    expect(doc.title).toBe('Héllo BOM');
    expect(doc.sections[0]?.text).toBe('Héllo BOM');
  });
});

describe('loadDocument: json', () => {
  it('jsonl: one section per object line, skipping blank and malformed lines', async () => {
    const jsonl = [
      '{"id": "q1", "title": "First question", "text": "Answer one."}',
      '',
      '{"id": "q2", "text": "Answer two."}',
      '{not json at all',
      '{"content": "Answer four, no id."}',
      '{"id": 7, "body": "Answer five."}',
      '{"title": "No text here"}',
      '[1, 2]',
    ].join('\n');
    const doc = await load(jsonl, 'faq.jsonl');
    expect(doc.kind).toBe('application/json');
    expect(doc.title).toBe('faq');
    expect(doc.sections).toEqual([
      { headingPath: ['First question'], text: 'Answer one.' },
      { headingPath: ['q2'], text: 'Answer two.' },
      { headingPath: ['record 5'], text: 'Answer four, no id.' },
      { headingPath: ['7'], text: 'Answer five.' },
    ]);
  });

  it('jsonl with every line malformed is a parse_error naming the first bad line', async () => {
    const error = await expectLoaderError(load('{bad\n\n[nope\n', 'x.ndjson'), 'parse_error');
    expect(error.message).toContain('line 1');
  });

  it('json array of objects; a text field order can be configured', async () => {
    const json = JSON.stringify([
      { title: 'A', text: 'alpha text', summary: 'alpha summary' },
      { title: 'B', page_content: 'beta content' },
      'not an object',
    ]);
    const doc = await load(json, 'arr.json');
    expect(doc.title).toBe('arr');
    expect(doc.sections).toEqual([
      { headingPath: ['A'], text: 'alpha text' },
      { headingPath: ['B'], text: 'beta content' },
    ]);
    const custom = await load(json, 'arr.json', { jsonTextFields: ['summary'] });
    expect(custom.sections).toEqual([{ headingPath: ['A'], text: 'alpha summary' }]);
  });

  it('json object: one record, titled by its "title"', async () => {
    const doc = await load('{"title": "Kiln Handbook", "body": "Fire at 1200 degrees."}', 'kiln.json');
    expect(doc).toEqual({ title: 'Kiln Handbook', kind: 'application/json', sections: [{ headingPath: ['Kiln Handbook'], text: 'Fire at 1200 degrees.' }] });
  });

  it('no record with a text field is empty, and the message names the fields', async () => {
    const error = await expectLoaderError(load('[{"title": "x", "value": 1}]', 'x.json'), 'empty');
    expect(error.message).toContain('text, content, body, page_content');
  });

  it('invalid json and non-object json are parse errors', async () => {
    await expectLoaderError(load('{"a": ', 'x.json'), 'parse_error');
    await expectLoaderError(load('42', 'x.json'), 'parse_error');
  });
});

describe('loadDocument: pdf', () => {
  it('extracts one section per non-empty page with the metadata title', async () => {
    const bytes = buildPdf([['Quasar Lantern manual', 'Charge it for four hours'], [], ['Page three mentions the Orrery mode']], 'Quasar Lantern Guide');
    const copy = bytes.slice();
    const doc = await loadDocument(bytes, 'lantern.pdf');
    expect(doc.kind).toBe('application/pdf');
    expect(doc.title).toBe('Quasar Lantern Guide');
    expect(doc.sections.map((s) => s.headingPath)).toEqual([['page 1'], ['page 3']]);
    expect(doc.sections[0]?.text).toContain('Quasar Lantern manual');
    expect(doc.sections[0]?.text).toContain('Charge it for four hours');
    expect(doc.sections[1]?.text).toContain('Orrery mode');
    // The caller's buffer is neither detached nor changed.
    expect(bytes).toEqual(copy);
  });

  it('falls back to the file name without a Title', async () => {
    const doc = await loadDocument(buildPdf([['hello pdf']]), 'reports/q3-report.pdf');
    expect(doc.title).toBe('q3-report');
  });

  it('a PDF without any text is empty', async () => {
    await expectLoaderError(loadDocument(buildPdf([[]]), 'blank.pdf'), 'empty');
  });

  it('a corrupt PDF is a parse_error', async () => {
    const good = buildPdf([['hello']]);
    const truncated = good.slice(0, 40);
    await expectLoaderError(loadDocument(truncated, 'broken.pdf'), 'parse_error');
    await expectLoaderError(loadDocument(utf8('%PDF-1.7\nthis is not really a pdf\n%%EOF'), 'fake.pdf'), 'parse_error');
  });

  it('a non-PDF file named .pdf is a parse_error (no %PDF- header)', async () => {
    const error = await expectLoaderError(load('just some text', 'notreally.pdf'), 'parse_error');
    expect(error.message).toContain('%PDF-');
  });
});

describe('loadDocument: failures', () => {
  it('empty file', async () => {
    const error = await expectLoaderError(loadDocument(new Uint8Array(0), 'empty.md'), 'empty');
    expect(error.message).toContain('0 bytes');
    await expectLoaderError(loadDocument(new Uint8Array(0), 'empty.pdf'), 'empty');
  });

  it('whitespace-only file', async () => {
    await expectLoaderError(load(' \n\t\r\n  \n', 'blank.txt'), 'empty');
    await expectLoaderError(load('\n\n', 'blank.jsonl'), 'empty');
  });

  it('NUL byte in the first 8 KiB is binary, with its offset', async () => {
    const bytes = new Uint8Array([...utf8('hello world!'), 0, ...utf8('more')]);
    const error = await expectLoaderError(loadDocument(bytes, 'data.txt'), 'binary');
    expect(error.message).toBe('binary content (NUL byte at offset 12)');
  });

  it('invalid UTF-8 is undecodable', async () => {
    const error = await expectLoaderError(loadDocument(new Uint8Array([0xff, 0xfe, 0xfd]), 'bad.txt'), 'undecodable');
    expect(error.message).toContain('UTF-8');
    const later = await expectLoaderError(loadDocument(new Uint8Array([...utf8('ok text '), 0xc3, 0x28]), 'bad.md'), 'undecodable');
    expect(later.message).toContain('offset 8');
  });

  it('UTF-16 text is undecodable, not binary', async () => {
    const utf16 = new Uint8Array([0xff, 0xfe, ...[...'hi there'].flatMap((c) => [c.charCodeAt(0), 0])]);
    const error = await expectLoaderError(loadDocument(utf16, 'wide.txt'), 'undecodable');
    expect(error.message).toContain('UTF-16');
  });

  it('unsupported extension', async () => {
    const error = await expectLoaderError(load('hello', 'photo.png'), 'unsupported');
    expect(error.message).toContain('.png');
    await expectLoaderError(load('hello', 'Makefile'), 'unsupported');
  });
});

describe('fixture corpus (test/fixtures/docs)', () => {
  const files = readdirSync(FIXTURES_DIR).sort();

  it('has a few documents of supported kinds', () => {
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const file of files) expect(detectKind(file)).not.toBeNull();
  });

  it.each(files)('%s loads into titled, non-empty sections', async (file) => {
    const doc = await loadDocument(new Uint8Array(readFileSync(join(FIXTURES_DIR, file))), file);
    expect(doc.title.trim()).not.toBe('');
    expect(doc.sections.length).toBeGreaterThan(0);
    for (const section of doc.sections) expect(section.text.trim()).not.toBe('');
  });

  it('the HTML page keeps escaped markup as text and drops its scripts and hidden parts', async () => {
    const file = 'vexmoor-lunar-gardening.html';
    const doc = await loadDocument(new Uint8Array(readFileSync(join(FIXTURES_DIR, file))), file);
    const all = doc.sections.map((s) => s.text).join('\n');
    expect(doc.title).toBe('Lunar Gardening Almanac – Vexmoor Valley');
    expect(all).toContain('<b>not bold</b>');
    expect(all).not.toContain("alert('xss')");
    expect(all).not.toContain('UA-VEXMOOR');
    expect(all).not.toContain('VEXSECRET42');
    expect(all).toContain('Thornbury Gold     2023-09   92%');
  });

  it('the markdown manual keeps config comments inside its code block', async () => {
    const file = 'halcyon-x3-manual.md';
    const doc = await loadDocument(new Uint8Array(readFileSync(join(FIXTURES_DIR, file))), file);
    expect(doc.title).toBe('Brightwater Halcyon X3 Water Purifier — Owner\'s Manual');
    const config = doc.sections.find((s) => s.headingPath.at(-1) === 'Configuration');
    expect(config?.text).toContain('## UV lamp schedule (this line is still a comment)');
    expect(doc.sections.some((s) => s.headingPath.join(' > ') === "Halcyon X3 Owner's Manual > Troubleshooting > Error E-417: low flow")).toBe(true);
  });
});
