/**
 * Incremental Server-Sent Events parser (the WHATWG event-stream format), for reading streamed chat
 * completions. Pure: feed it decoded text as it arrives, in pieces of any size, and collect events.
 * Handles \n, \r\n and \r line endings (also split across pieces), comment lines (": keep-alive"),
 * multi-line `data:` fields and a missing final blank line (flushed by `end()`).
 */

export interface SseEvent {
  /** The `event:` field, "message" when absent. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The `id:` field, when present. */
  id?: string;
}

export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private hasFields = false;

  /** Feeds decoded text; returns the events completed by it (possibly none). */
  push(text: string): SseEvent[] {
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      // A lone "\r" at the end may be the first half of "\r\n" still in flight: wait for more.
      if (c === '\r' && i === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, i);
      if (c === '\r' && this.buffer[i + 1] === '\n') i++;
      start = i + 1;
      const ev = this.line(line);
      if (ev) events.push(ev);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** Ends the stream: a trailing line and a pending event without its blank line are delivered. */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    const rest = this.buffer.replace(/\r$/, '');
    this.buffer = '';
    if (rest !== '') {
      const ev = this.line(rest);
      if (ev) events.push(ev);
    }
    const pending = this.dispatch();
    if (pending) events.push(pending);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        this.hasFields = true;
        break;
      case 'event':
        this.event = value;
        this.hasFields = true;
        break;
      case 'id':
        this.id = value;
        break;
      default:
        break; // "retry" and unknown fields are irrelevant here
    }
    return null;
  }

  private dispatch(): SseEvent | null {
    const had = this.hasFields && this.data.length > 0;
    const ev: SseEvent = { event: this.event || 'message', data: this.data.join('\n') };
    if (this.id !== undefined) ev.id = this.id;
    this.data = [];
    this.event = '';
    this.hasFields = false;
    // Per the spec an event with no data lines is not dispatched.
    return had ? ev : null;
  }
}
