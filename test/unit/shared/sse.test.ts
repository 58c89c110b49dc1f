/**
 * One SSE parser for the server's LLM client and the browser: both are the eventsource-parser
 * adapter of src/shared/sse.ts (the per-side tests are test/unit/web/sse.test.ts and the SseParser
 * suite of test/unit/core/openai-backend.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { SseParser as CoreSseParser } from '../../../src/core/llm/sse.ts';
import { SseParser } from '../../../src/shared/sse.ts';
import { SseParser as WebSseParser } from '../../../src/web/sse.ts';

describe('the shared SSE parser', () => {
  it('is the one both sides use', () => {
    expect(WebSseParser).toBe(SseParser);
    expect(new CoreSseParser()).toBeInstanceOf(SseParser);
  });

  it.each([
    ['core', () => new CoreSseParser()],
    ['web', () => new WebSseParser()],
  ])('%s: strips a leading byte-order mark (split or not) instead of losing the first event', (_side, make) => {
    const p = make();
    expect(p.push('\uFEFFdata: first\n\n')).toEqual([{ event: 'message', data: 'first', id: null }]);
    const q = make();
    expect([...q.push('\xEF\xBB'), ...q.push('\xBFdata: x\n\n')]).toEqual([{ event: 'message', data: 'x', id: null }]);
  });

  it('keeps the last event id across events and ignores an id containing NUL', () => {
    const p = new SseParser();
    expect(p.push('id: 1\ndata: a\n\ndata: b\n\nid: 2\0\ndata: c\n\n').map((e) => e.id)).toEqual(['1', '1', '1']);
  });

  it('end(): strict by default, lenient on the core side, never a spurious event after a complete one', () => {
    const strict = new SseParser();
    strict.push('data: tail');
    expect(strict.end()).toEqual([]);
    const lenient = new CoreSseParser();
    lenient.push('data: tail\r');
    expect(lenient.end()).toEqual([{ event: 'message', data: 'tail', id: null }]);
    const done = new CoreSseParser();
    expect(done.push('data: [DONE]\r\r')).toHaveLength(1);
    expect(done.end()).toEqual([]);
  });
});
