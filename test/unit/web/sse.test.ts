import { describe, expect, it } from 'vitest';
import { SseParser } from '../../../src/web/sse.ts';
import type { SseEvent } from '../../../src/web/sse.ts';

/** Feeds `chunks` one by one and collects every event. */
function feed(chunks: string[]): SseEvent[] {
  const p = new SseParser();
  return chunks.flatMap((c) => p.push(c));
}

describe('SseParser', () => {
  it('parses named events with JSON data, in order', () => {
    const text = 'event: token\ndata: {"text":"Hel"}\n\nevent: token\ndata: {"text":"lo"}\n\nevent: done\ndata: {"id":"resp_1"}\n\n';
    expect(feed([text])).toEqual([
      { event: 'token', data: '{"text":"Hel"}', id: null },
      { event: 'token', data: '{"text":"lo"}', id: null },
      { event: 'done', data: '{"id":"resp_1"}', id: null },
    ]);
  });

  it('gives the same events whatever the chunk boundaries (byte-by-byte, CRLF split across chunks)', () => {
    const text = 'event: token\r\ndata: {"text":"a b"}\r\n\r\n: keep-alive\r\n\r\nevent: done\r\ndata: {}\r\n\r\n';
    const whole = feed([text]);
    expect(whole.map((e) => e.event)).toEqual(['token', 'done']);
    expect(feed([...text])).toEqual(whole);
    for (let cut = 1; cut < text.length; cut++) expect(feed([text.slice(0, cut), text.slice(cut)]), `cut at ${cut}`).toEqual(whole);
  });

  it('handles bare CR line ends, multi-line data, comments, missing space and the default event name', () => {
    expect(feed(['data:one\rdata: two\r\r: a comment\n\n'])).toEqual([{ event: 'message', data: 'one\ntwo', id: null }]);
  });

  it('does not dispatch a message without data, and resets the event name after a blank line', () => {
    expect(feed(['event: token\n\ndata: x\n\n'])).toEqual([{ event: 'message', data: 'x', id: null }]);
  });

  it('keeps only the leading space after the colon once, and remembers the last id', () => {
    expect(feed(['id: 7\ndata:  two spaces\n\n'])).toEqual([{ event: 'message', data: ' two spaces', id: '7' }]);
  });

  it('discards an unterminated final message', () => {
    const p = new SseParser();
    expect(p.push('event: done\ndata: {}')).toEqual([]);
    expect(p.end()).toEqual([]);
  });
});
