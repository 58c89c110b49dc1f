/** markdown.ts: answer markdown → HTML string, the first of the page's two gates (DOMPurify is the second). */
import { describe, expect, it } from 'vitest';
import { escapeHtml, markdownToHtml, safeLinkUrl } from '../../../src/web/markdown.ts';

describe('safeLinkUrl', () => {
  it('keeps absolute http(s) and mailto URLs', () => {
    expect(safeLinkUrl('https://www.postgresql.org/docs/15/brin.html')).toBe('https://www.postgresql.org/docs/15/brin.html');
    expect(safeLinkUrl('HTTP://example.org')).toBe('http://example.org/');
    expect(safeLinkUrl('mailto:ops@example.org')).toBe('mailto:ops@example.org');
  });

  it('refuses script, data and relative URLs, however they are disguised', () => {
    for (const href of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', ' javascript:alert(1)', 'java\tscript:alert(1)', 'java\nscript:alert(1)', '\u0001javascript:alert(1)', 'data:text/html,<script>alert(1)</script>', 'vbscript:msgbox(1)', '/relative', '#top', '//evil.example/x', 'file:///etc/passwd', '']) {
      expect(safeLinkUrl(href), JSON.stringify(href)).toBeNull();
    }
  });
});

describe('markdownToHtml', () => {
  it('renders headings, emphasis, lists, tables and fenced code with its language', () => {
    const html = markdownToHtml('## Setup\n\nUse **WHERE** and `col`.\n\n- one\n- two\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n```sql\nSELECT *\nFROM t;\n```');
    expect(html).toContain('<h2>Setup</h2>');
    expect(html).toContain('<strong>WHERE</strong>');
    expect(html).toContain('<code>col</code>');
    expect(html).toMatch(/<ul>\s*<li>one<\/li>\s*<li>two<\/li>\s*<\/ul>/);
    expect(html).toMatch(/<table>[\s\S]*<th>a<\/th>[\s\S]*<td align="right">2<\/td>[\s\S]*<\/table>/);
    expect(html).toContain('<pre><code class="language-sql">SELECT *\nFROM t;\n</code></pre>');
  });

  it('keeps single line breaks (extractive answers and LLM text written line by line)', () => {
    expect(markdownToHtml('first line\nsecond line')).toBe('<p>first line<br>second line</p>\n');
  });

  it('escapes raw HTML, block and inline, instead of passing it through', () => {
    const html = markdownToHtml('<script>alert(1)</script>\n\nA <img src=x onerror=alert(2)> and <b>bold</b>.\n\n<iframe src="https://evil.example"></iframe>');
    expect(html).not.toMatch(/<(script|img|b|iframe)\b/);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('&lt;img src=x onerror=alert(2)&gt;');
    expect(html).toContain('&lt;iframe src=&quot;https://evil.example&quot;&gt;&lt;/iframe&gt;');
  });

  it('keeps links only for http(s) and mailto, otherwise only their text', () => {
    expect(markdownToHtml('[docs](https://example.org/a?b=1&c=2 "The docs")')).toBe('<p><a href="https://example.org/a?b=1&amp;c=2" title="The docs">docs</a></p>\n');
    for (const md of ['[click](javascript:alert(1))', '[click](JAVASCRIPT:alert(1))', '[click](jav&#x61;script:alert(1))', '[click](data:text/html;base64,PHNjcmlwdD4=)', '[click][r]\n\n[r]: javascript:alert(1)']) {
      const html = markdownToHtml(md);
      expect(html, md).not.toContain('<a');
      expect(html, md).toContain('click');
    }
    expect(markdownToHtml('<javascript:alert(1)>')).not.toContain('<a');
  });

  it('never renders an image: an http(s) one becomes a link, any other only its alt text', () => {
    expect(markdownToHtml('![diagram](https://example.org/d.png)')).toBe('<p><a href="https://example.org/d.png">diagram</a></p>\n');
    for (const md of ['![x](data:image/svg+xml;base64,PHN2Zz4=)', '![x](javascript:alert(1))', '![x](/local.png)', '![x"><img src=x onerror=alert(1)>](y)']) {
      const html = markdownToHtml(md);
      expect(html, md).not.toMatch(/<img|<a /);
    }
  });

  it('turns task-list checkboxes into characters (no form controls)', () => {
    expect(markdownToHtml('- [ ] todo\n- [x] done')).toBe('<ul>\n<li>☐ todo</li>\n<li>☑ done</li>\n</ul>\n');
  });

  it('leaves citation markers as text for the page to link', () => {
    expect(markdownToHtml('Flush it [1]. Wait [2, 3].')).toBe('<p>Flush it [1]. Wait [2, 3].</p>\n');
  });

  it('escapes every HTML-significant character', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });
});
