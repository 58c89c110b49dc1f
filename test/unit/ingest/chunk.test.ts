import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHUNK_OVERLAP_CHARS, CHUNK_SIZE_CHARS, MIN_CHUNK_CHARS, chunkDocument } from '../../../ingest/chunk.ts';
import { loadDocument } from '../../../ingest/loaders.ts';
import type { ChunkDraft, LoadedDocument, Section } from '../../../ingest/types.ts';
import { ValidationError } from '../../../src/core/errors.ts';
import { estimateTokens } from '../../../src/core/tokens.ts';

const FIXTURES_DIR = join(import.meta.dirname, '../../fixtures/docs');

const charCount = (text: string): number => text.length;

/** Deterministic filler prose: sentence i is unique so chunks can be traced back to their section. */
function prose(tag: string, sentences: number): string {
  const paragraphs: string[] = [];
  for (let i = 0; i < sentences; i += 4) {
    const paragraph: string[] = [];
    for (let j = i; j < Math.min(i + 4, sentences); j++) {
      paragraph.push(`The ${tag} sentence number ${j} talks about lanterns, ferries and moth wings in some detail.`);
    }
    paragraphs.push(paragraph.join(' '));
  }
  return paragraphs.join('\n\n');
}

function doc(kind: LoadedDocument['kind'], sections: Section[]): LoadedDocument {
  return { title: 'test', kind, sections };
}

function expectWellFormed(chunks: readonly ChunkDraft[], maxChars: number): void {
  chunks.forEach((chunk, i) => {
    expect(chunk.ord).toBe(i);
    expect(chunk.text).toBe(chunk.text.trim());
    expect(chunk.text).not.toBe('');
    expect(chunk.text.length).toBeLessThanOrEqual(maxChars);
  });
}

describe('chunkDocument', () => {
  it('exposes its defaults', () => {
    expect(CHUNK_SIZE_CHARS).toBe(1000);
    expect(CHUNK_OVERLAP_CHARS).toBe(150);
    expect(MIN_CHUNK_CHARS).toBe(20);
  });

  it('respects the chunk size (default and custom) and numbers chunks 0..n-1', async () => {
    const input = doc('text/plain', [{ headingPath: [], text: prose('plain', 80) }]);
    for (const size of [CHUNK_SIZE_CHARS, 400, 120]) {
      const chunks = await chunkDocument(input, charCount, size === CHUNK_SIZE_CHARS ? undefined : { chunkSizeChars: size });
      expect(chunks.length).toBeGreaterThan(1);
      expectWellFormed(chunks, size);
    }
  });

  it('splits a single unbroken line that is longer than the chunk size', async () => {
    const text = 'word '.repeat(500).trim();
    const chunks = await chunkDocument(doc('text/plain', [{ headingPath: [], text }]), charCount, { chunkSizeChars: 200, chunkOverlapChars: 0 });
    expectWellFormed(chunks, 200);
    expect(chunks.map((c) => c.text).join(' ')).toBe(text);
  });

  it('never crosses sections and gives each chunk its section heading path', async () => {
    const sections: Section[] = [
      { headingPath: [], text: prose('preface', 3) },
      { headingPath: ['Manual', 'Install'], text: prose('install', 20) },
      { headingPath: ['Manual', 'Install', 'Linux'], text: 'Short.' },
      { headingPath: ['Manual', 'Troubleshooting'], text: `${prose('trouble', 9)}\n\nEnd.` },
    ];
    const chunks = await chunkDocument(doc('text/markdown', sections), charCount, { chunkSizeChars: 300, chunkOverlapChars: 60 });
    expectWellFormed(chunks, 300);
    const expectedPaths = ['', 'Manual > Install', 'Manual > Install > Linux', 'Manual > Troubleshooting'];
    for (const chunk of chunks) {
      const owner = sections.findIndex((s) => s.text.includes(chunk.text));
      expect(owner).toBeGreaterThanOrEqual(0);
      expect(chunk.headingPath).toBe(expectedPaths[owner]);
      // Text from exactly one section (the tags are unique per section).
      const tags = ['preface', 'install', 'trouble'].filter((t) => chunk.text.includes(`The ${t} sentence`));
      expect(tags.length).toBeLessThanOrEqual(1);
    }
    // Sections keep their order; a tiny section is still its own chunk.
    expect(chunks.map((c) => c.headingPath).filter((p, i, all) => p !== all[i - 1])).toEqual(expectedPaths);
    expect(chunks.find((c) => c.headingPath === 'Manual > Install > Linux')?.text).toBe('Short.');
  });

  it('merges a tiny trailing piece into its own section only', async () => {
    const body = prose('merge', 8);
    const sections: Section[] = [
      { headingPath: ['A'], text: `${body}\n\nOk.` },
      { headingPath: ['B'], text: 'Bee section text is here.' },
    ];
    const chunks = await chunkDocument(doc('text/plain', sections), charCount, { chunkSizeChars: 420, chunkOverlapChars: 0 });
    expectWellFormed(chunks, 420);
    const a = chunks.filter((c) => c.headingPath === 'A');
    expect(a.some((c) => c.text === 'Ok.')).toBe(false);
    expect(a.at(-1)?.text.endsWith('Ok.')).toBe(true);
    expect(chunks.filter((c) => c.headingPath === 'B').map((c) => c.text)).toEqual(['Bee section text is here.']);
  });

  it('overlaps consecutive chunks of a section by at most the overlap', async () => {
    const text = prose('overlap', 24);
    const positions = (chunks: readonly ChunkDraft[]): { start: number; end: number }[] => {
      let from = 0;
      return chunks.map((c) => {
        const start = text.indexOf(c.text, from);
        expect(start).toBeGreaterThanOrEqual(0);
        from = start + 1;
        return { start, end: start + c.text.length };
      });
    };
    const chunks = await chunkDocument(doc('text/plain', [{ headingPath: [], text }]), charCount, { chunkSizeChars: 250, chunkOverlapChars: 120 });
    expectWellFormed(chunks, 250);
    const spans = positions(chunks);
    const overlaps = spans.slice(1).map((span, i) => (spans[i]?.end ?? 0) - span.start);
    expect(Math.max(...overlaps)).toBeGreaterThan(0);
    expect(Math.max(...overlaps)).toBeLessThanOrEqual(120);

    const plain = await chunkDocument(doc('text/plain', [{ headingPath: [], text }]), charCount, { chunkSizeChars: 250, chunkOverlapChars: 0 });
    const plainSpans = positions(plain);
    expect(plainSpans.slice(1).every((span, i) => span.start >= (plainSpans[i]?.end ?? 0))).toBe(true);
  });

  it('keeps a markdown code block whole when it fits', async () => {
    const code = '```python\n# not a heading\nprint("hi")\n```';
    const text = `${prose('md', 4)}\n\n${code}\n\nAfter code.`;
    const chunks = await chunkDocument(doc('text/markdown', [{ headingPath: ['Code'], text }]), charCount, { chunkSizeChars: 300, chunkOverlapChars: 0 });
    expectWellFormed(chunks, 300);
    expect(chunks.some((c) => c.text.includes(code))).toBe(true);
  });

  it('drops whitespace-only sections and trims text', async () => {
    const chunks = await chunkDocument(
      doc('text/plain', [
        { headingPath: ['Empty'], text: '   \n\n\t ' },
        { headingPath: ['Real'], text: '\n\n   Some real text.   \n' },
      ]),
      charCount,
    );
    expect(chunks).toEqual([{ ord: 0, text: 'Some real text.', headingPath: 'Real', tokenCount: 15 }]);
  });

  it('counts tokens with the given counter', async () => {
    const chunks = await chunkDocument(doc('text/plain', [{ headingPath: [], text: 'one two three' }]), (t) => t.split(' ').length);
    expect(chunks[0]?.tokenCount).toBe(3);
  });

  it('returns no chunks for a document without sections', async () => {
    expect(await chunkDocument(doc('text/plain', []), charCount)).toEqual([]);
  });

  it('is deterministic', async () => {
    const input = doc('text/markdown', [
      { headingPath: ['X'], text: prose('det', 30) },
      { headingPath: ['X', 'Y'], text: prose('det2', 10) },
    ]);
    const first = await chunkDocument(input, estimateTokens, { chunkSizeChars: 333, chunkOverlapChars: 50 });
    const second = await chunkDocument(structuredClone(input), estimateTokens, { chunkSizeChars: 333, chunkOverlapChars: 50 });
    expect(second).toEqual(first);
  });

  it('rejects invalid sizes', async () => {
    const input = doc('text/plain', [{ headingPath: [], text: 'x' }]);
    await expect(chunkDocument(input, charCount, { chunkSizeChars: 0 })).rejects.toBeInstanceOf(ValidationError);
    await expect(chunkDocument(input, charCount, { chunkSizeChars: 10.5 })).rejects.toBeInstanceOf(ValidationError);
    await expect(chunkDocument(input, charCount, { chunkSizeChars: 100, chunkOverlapChars: 100 })).rejects.toBeInstanceOf(ValidationError);
    await expect(chunkDocument(input, charCount, { chunkOverlapChars: -1 })).rejects.toBeInstanceOf(ValidationError);
    // A small size without an explicit overlap gets a proportional default overlap instead of failing.
    await expect(chunkDocument(input, charCount, { chunkSizeChars: 100 })).resolves.toHaveLength(1);
  });

  it('chunks the fixture corpus within limits', async () => {
    for (const file of readdirSync(FIXTURES_DIR).sort()) {
      const loaded = await loadDocument(new Uint8Array(readFileSync(join(FIXTURES_DIR, file))), file);
      const chunks = await chunkDocument(loaded, estimateTokens, { chunkSizeChars: 400 });
      expectWellFormed(chunks, 400);
      for (const chunk of chunks) {
        // A chunk's path is a section's path, or the shared prefix of packed small sections.
        expect(loaded.sections.some((s) => s.headingPath.join(' > ').startsWith(chunk.headingPath))).toBe(true);
      }
    }
  });
});

describe('estimateTokens', () => {
  it('is 0 for empty or whitespace text', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens(' \n\t ')).toBe(0);
  });

  it('counts common words and punctuation like BERT', () => {
    // bert-base-uncased: 9 word pieces + "." = 10.
    expect(estimateTokens('The quick brown fox jumps over the lazy dog.')).toBe(10);
    // "hello", ",", "world", "!" (BERT splits every punctuation char).
    expect(estimateTokens('Hello, world!')).toBe(4);
    expect(estimateTokens('a-b')).toBe(3);
  });

  it('charges long words, long numbers and identifiers more', () => {
    expect(estimateTokens('supercalifragilistic')).toBeGreaterThan(estimateTokens('super'));
    expect(estimateTokens('1234567890')).toBeGreaterThan(estimateTokens('12'));
    expect(estimateTokens('hx3e417')).toBeGreaterThan(1);
  });

  it('counts CJK characters one by one', () => {
    expect(estimateTokens('日本語')).toBe(3);
  });

  it('lands near 4–5 chars per token on English prose', async () => {
    const text = readFileSync(join(FIXTURES_DIR, 'tidewater-ferry-timetable.txt'), 'utf8');
    const ratio = text.length / estimateTokens(text);
    expect(ratio).toBeGreaterThan(3);
    expect(ratio).toBeLessThan(6);
  });

  it('grows with the text', () => {
    const base = prose('grow', 4);
    expect(estimateTokens(`${base} ${base}`)).toBe(2 * estimateTokens(base));
  });
});

describe('packSections', () => {
  it('packs consecutive small sections under their shared path, keeping their headings as lines', async () => {
    const { packSections } = await import('../../../ingest/chunk.ts');
    const packed = packSections(
      [
        { headingPath: ['Guide', 'Install'], text: 'Run the installer.' },
        { headingPath: ['Guide', 'Configure'], text: 'Edit the file.' },
        { headingPath: ['Other'], text: 'x'.repeat(990) },
        { headingPath: ['Other', 'Tail'], text: '   ' },
      ],
      1000,
    );
    expect(packed).toEqual([
      { headingPath: ['Guide'], text: '## Install\n\nRun the installer.\n\n## Configure\n\nEdit the file.' },
      { headingPath: ['Other'], text: 'x'.repeat(990) },
    ]);
  });

  it('leaves sections that do not fit together alone', async () => {
    const { packSections } = await import('../../../ingest/chunk.ts');
    const big = [
      { headingPath: ['A'], text: 'a'.repeat(600) },
      { headingPath: ['B'], text: 'b'.repeat(600) },
    ];
    expect(packSections(big, 1000)).toEqual(big);
  });
});
