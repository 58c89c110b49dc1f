/**
 * Incremental Server-Sent Events parser for the browser (fetch + ReadableStream: EventSource cannot
 * POST or send an Authorization header). Follows the WHATWG event-stream rules that matter here:
 * lines end in LF, CRLF or CR (also split across chunks); `:` starts a comment; `event`, `data`
 * (joined with "\n"), `id` fields; a blank line dispatches; a single space after the colon is
 * dropped; a message without data is not dispatched. Pure (no DOM).
 */

export interface SseEvent {
  /** The `event:` field, "message" when absent. */
  event: string;
  data: string;
  id: string | null;
}

export class SseParser {
  private buffer = '';
  private eventName = '';
  private data: string[] = [];
  private lastId: string | null = null;
  /** A chunk ended in CR: a following LF belongs to the same line break. */
  private pendingCr = false;

  /** Feeds decoded text; returns the events completed by it, in order. */
  push(text: string): SseEvent[] {
    const out: SseEvent[] = [];
    let s = text;
    if (this.pendingCr && s.startsWith('\n')) s = s.slice(1);
    this.pendingCr = false;
    this.buffer += s;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk unless done.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) {
        this.pendingCr = true;
      }
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const ev = this.line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  /** Ends the stream: an unterminated last message is discarded (as the spec says). */
  end(): SseEvent[] {
    this.buffer = '';
    this.eventName = '';
    this.data = [];
    return [];
  }

  private line(line: string): SseEvent | null {
    if (line === '') {
      if (this.data.length === 0) {
        this.eventName = '';
        return null;
      }
      const ev: SseEvent = { event: this.eventName || 'message', data: this.data.join('\n'), id: this.lastId };
      this.eventName = '';
      this.data = [];
      return ev;
    }
    if (line.startsWith(':')) return null;
    const i = line.indexOf(':');
    const field = i === -1 ? line : line.slice(0, i);
    let value = i === -1 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.eventName = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
    return null;
  }
}
