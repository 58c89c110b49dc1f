/** Pure text helpers of the pages: citation markers, formatting, error messages (markdown: markdown*.test.ts). */
import { describe, expect, it } from 'vitest';
import { ApiError, describeError, isAuthError } from '../../../src/web/api.ts';
import { splitCitations } from '../../../src/web/dom.ts';
import { clockSeconds, formatFeatureValue, formatMs, formatNumber, formatPct, humanize, relativeTime } from '../../../src/web/format.ts';

describe('splitCitations', () => {
  const known = new Set([1, 2, 3]);

  it('turns known [n] markers into citation segments and keeps the text around them', () => {
    expect(splitCitations('Flush for five minutes [1]. Then wait [2][3].', known)).toEqual([
      { kind: 'text', text: 'Flush for five minutes ' },
      { kind: 'cite', n: 1 },
      { kind: 'text', text: '. Then wait ' },
      { kind: 'cite', n: 2 },
      { kind: 'cite', n: 3 },
      { kind: 'text', text: '.' },
    ]);
  });

  it('expands groups and ranges', () => {
    expect(splitCitations('a [1, 3] b [1-3]', known).filter((s) => s.kind === 'cite')).toEqual([
      { kind: 'cite', n: 1 },
      { kind: 'cite', n: 3 },
      { kind: 'cite', n: 1 },
      { kind: 'cite', n: 2 },
      { kind: 'cite', n: 3 },
    ]);
  });

  it('leaves unknown numbers, markdown links, absurd ranges and non-numbers as text', () => {
    for (const text of ['see [4]', 'see [1, 9]', '[1](https://example.org)', '[1-90]', '[a]', 'array[0]']) {
      expect(splitCitations(text, known), text).toEqual([{ kind: 'text', text }]);
    }
  });

  it('keeps HTML as plain text (the page renders text segments with text nodes)', () => {
    const html = '<script>alert(1)</script> [2] <img src=x onerror=alert(2)>';
    const segs = splitCitations(html, known);
    expect(segs).toEqual([
      { kind: 'text', text: '<script>alert(1)</script> ' },
      { kind: 'cite', n: 2 },
      { kind: 'text', text: ' <img src=x onerror=alert(2)>' },
    ]);
    expect(segs.map((s) => (s.kind === 'text' ? s.text : `[${s.n}]`)).join('')).toBe(html);
  });

  it('returns nothing for empty text', () => {
    expect(splitCitations('', known)).toEqual([]);
  });
});

describe('formatting', () => {
  it('formats durations, shares and numbers, with a dash for unknown values', () => {
    expect([formatMs(3.456), formatMs(42.4), formatMs(1234), formatMs(15_500), formatMs(90_000), formatMs(null)]).toEqual(['3.5 ms', '42 ms', '1.23 s', '15.5 s', '1.5 min', '—']);
    expect([formatPct(0), formatPct(0.0123), formatPct(0.5), formatPct(1), formatPct(null), formatPct(Number.NaN)]).toEqual(['0%', '1.2%', '50%', '100%', '—', '—']);
    expect([formatNumber(1234567), formatNumber(0.333, 2), formatNumber(undefined)]).toEqual(['1,234,567', '0.33', '—']);
  });

  it('gives relative times', () => {
    const now = Date.parse('2025-01-10T12:00:00.000Z');
    expect(relativeTime('2025-01-10T11:59:50.000Z', now)).toBe('just now');
    expect(relativeTime('2025-01-10T11:55:00.000Z', now)).toBe('5 min ago');
    expect(relativeTime('2025-01-10T09:00:00.000Z', now)).toBe('3 h ago');
    expect(relativeTime('2025-01-08T12:00:00.000Z', now)).toBe('2 d ago');
    expect(relativeTime('2024-12-01T12:00:00.000Z', now)).toBe('2024-12-01');
    expect(relativeTime(null, now)).toBe('never');
    expect(clockSeconds('2025-01-10T12:03:04.000Z')).toMatch(/^\d\d:03:04$/);
  });

  it('summarizes feature values for people', () => {
    expect(formatFeatureValue('interest_vector', [0.1, 0.2, 0.3])).toBe("3-dimensional summary of your questions' meaning");
    expect(formatFeatureValue('engaged_documents', [4, 9])).toBe('#4, #9');
    expect(formatFeatureValue('top_collections', ['default', 'manuals'])).toBe('default, manuals');
    expect(formatFeatureValue('top_collections', Array.from({ length: 10 }, (_, i) => `c${i}`))).toBe('c0, c1, c2, c3, c4, c5, c6, c7 and 2 more');
    expect(formatFeatureValue('helpful_rate', 0.25)).toBe('25%');
    expect(formatFeatureValue('preferred_answer_length', 42)).toBe('42 words');
    expect(formatFeatureValue('messages_total', 3)).toBe('3');
    expect(formatFeatureValue('helpful_rate', null)).toBe('not known yet');
    expect(formatFeatureValue('disliked_documents', [])).toBe('none');
    expect(formatFeatureValue('name', '<b>bold</b>')).toBe('<b>bold</b>');
    expect(humanize('messages_7d')).toBe('Messages 7d');
  });
});

describe('API errors for people', () => {
  it('says what a status means without internals', () => {
    expect(describeError(new ApiError(401, 'unauthorized', 'missing or invalid API key'))).toContain('not accepted');
    expect(describeError(new ApiError(403, 'forbidden', 'x'))).toContain('admin');
    expect(describeError(new ApiError(429, 'rate_limited', 'x', 12))).toContain('12 seconds');
    expect(describeError(new ApiError(503, 'queue_full', 'the generation queue is full', 3))).toContain('the generation queue is full');
    expect(describeError(new ApiError(0, 'network_error', 'network error'))).toContain('Cannot reach');
    expect(describeError(new ApiError(413, 'payload_too_large', 'message is 9000 characters; the limit is 8000'))).toBe('message is 9000 characters; the limit is 8000');
    expect(describeError(new TypeError('boom'))).toBe('Something went wrong. Please try again.');
    expect(isAuthError(new ApiError(401, 'unauthorized', 'x'))).toBe(true);
    expect(isAuthError(new ApiError(403, 'forbidden', 'x'))).toBe(false);
  });
});
