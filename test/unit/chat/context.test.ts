import { describe, expect, it } from 'vitest';
import { NO_CONTEXT, fitContext, formatContext, formatHistory, formatPassage, sourceLabel, toPassages } from '../../../src/chat/context.ts';
import type { RetrievedChunk } from '../../../src/chat/types.ts';
import { ValidationError } from '../../../src/core/errors.ts';
import { estimateTokens } from '../../../src/core/tokens.ts';

function chunk(id: number, text: string, extra: Partial<RetrievedChunk> = {}): RetrievedChunk {
  return {
    chunkId: id,
    documentId: 100 + id,
    collection: 'default',
    source: `/data/docs/doc-${id}.md`,
    title: `Doc ${id}`,
    headingPath: `Section ${id}`,
    text,
    contentSha256: 'x'.repeat(64),
    score: 1 / id,
    bm25Rank: id,
    denseRank: null,
    ...extra,
  };
}

describe('formatContext', () => {
  it('numbers passages [1]..[n] in order with title, heading, source file name and text', () => {
    const out = formatContext([chunk(7, 'Alpha text.'), chunk(3, '  Beta text.\n')]);
    expect(out).toBe('[1] Doc 7 › Section 7 (source: doc-7.md)\nAlpha text.\n\n[2] Doc 3 › Section 3 (source: doc-3.md)\nBeta text.');
  });

  it('omits empty title/heading parts and falls back to the source', () => {
    expect(formatPassage(chunk(1, 't', { title: '', headingPath: '' }), 4)).toBe('[4] doc-1.md\nt');
    expect(formatPassage(chunk(1, 't', { headingPath: '' }), 1)).toBe('[1] Doc 1 (source: doc-1.md)\nt');
  });

  it('says so when there are no passages', () => {
    expect(formatContext([])).toBe(NO_CONTEXT);
  });

  it('keeps URLs as sources and shortens paths', () => {
    expect(sourceLabel('https://example.org/a/b.html')).toBe('https://example.org/a/b.html');
    expect(sourceLabel('file:///home/u/x.txt')).toBe('x.txt');
    expect(sourceLabel('/abs/path/y.pdf')).toBe('y.pdf');
  });
});

describe('formatHistory', () => {
  it('labels turns, skips system turns, strips old citation markers and collapses whitespace', () => {
    const out = formatHistory([
      { role: 'system', content: 'secret rules' },
      { role: 'user', content: 'How heavy is the\nunit?' },
      { role: 'assistant', content: 'It weighs 4.2 kg [1][2], see also [1, 3].' },
      { role: 'user', content: 'And the [draft] version?' },
    ]);
    expect(out).toBe('User: How heavy is the unit?\nAssistant: It weighs 4.2 kg, see also.\nUser: And the [draft] version?');
  });

  it('returns an empty string for no turns and cuts long turns at a word boundary', () => {
    expect(formatHistory([])).toBe('');
    const long = 'word '.repeat(100);
    const out = formatHistory([{ role: 'user', content: long }], { maxCharsPerTurn: 50 });
    expect(out.startsWith('User: word word')).toBe(true);
    expect(out.endsWith('word…')).toBe(true);
    expect(out.length).toBeLessThanOrEqual('User: '.length + 51);
  });
});

describe('toPassages', () => {
  it('uses the same numbering as formatContext', () => {
    expect(toPassages([chunk(5, 'five'), chunk(2, 'two')])).toEqual([
      { n: 1, text: 'five', title: 'Doc 5', source: '/data/docs/doc-5.md' },
      { n: 2, text: 'two', title: 'Doc 2', source: '/data/docs/doc-2.md' },
    ]);
  });
});

describe('fitContext', () => {
  const chars = (s: string): number => s.length;
  const chunks = [chunk(1, 'a'.repeat(100)), chunk(2, 'b'.repeat(100)), chunk(3, 'c'.repeat(100)), chunk(4, 'd'.repeat(100))];

  it('keeps everything when it fits', () => {
    const r = fitContext(chunks, 10_000, chars);
    expect(r.kept).toEqual(chunks);
    expect(r.dropped).toEqual([]);
  });

  it('drops the lowest-ranked chunks first, whole, and the kept context fits the budget exactly as formatted', () => {
    const two = formatContext(chunks.slice(0, 2)).length;
    const three = formatContext(chunks.slice(0, 3)).length;
    for (const budget of [two, two + 1, three - 1]) {
      const r = fitContext(chunks, budget, chars);
      expect(r.kept.map((c) => c.chunkId)).toEqual([1, 2]);
      expect(r.dropped.map((c) => c.chunkId)).toEqual([3, 4]);
      expect(formatContext(r.kept).length).toBeLessThanOrEqual(budget);
    }
    expect(fitContext(chunks, three, chars).kept.map((c) => c.chunkId)).toEqual([1, 2, 3]);
  });

  it('never cuts a chunk: a small lower-ranked chunk does not jump ahead of a big one that does not fit', () => {
    const mixed = [chunk(1, 'x'.repeat(50)), chunk(2, 'y'.repeat(5000)), chunk(3, 'z')];
    const r = fitContext(mixed, 200, chars);
    expect(r.kept.map((c) => c.chunkId)).toEqual([1]);
    expect(r.kept[0]?.text).toBe(mixed[0]?.text);
    expect(r.dropped.map((c) => c.chunkId)).toEqual([2, 3]);
  });

  it('keeps nothing for a zero budget and works with the token estimator', () => {
    expect(fitContext(chunks, 0, chars)).toEqual({ kept: [], dropped: chunks });
    const prose = [chunk(1, 'The quick brown fox jumps over the lazy dog. '.repeat(10)), chunk(2, 'Another sentence about ferries. '.repeat(10))];
    const first = estimateTokens(formatPassage(prose[0] as RetrievedChunk, 1));
    expect(fitContext(prose, first, estimateTokens).kept).toHaveLength(1);
    expect(() => fitContext(prose, Number.NaN, estimateTokens)).toThrow(ValidationError);
  });
});
