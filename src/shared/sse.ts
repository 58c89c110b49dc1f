/**
 * Incremental Server-Sent Events parsing, for Node (streamed chat completions of an OpenAI-compatible
 * server, src/core/llm/openai.ts) and the browser (fetch + ReadableStream, src/web/api.ts: EventSource
 * cannot POST or send an Authorization header). The parsing itself is eventsource-parser's (the
 * WHATWG event-stream rules: LF/CRLF/CR line ends split anywhere, comments, multi-line data, BOM);
 * this adapter only turns its callbacks into "feed text, get the completed events" calls.
 */
import { createParser } from 'eventsource-parser';
import type { EventSourceParser } from 'eventsource-parser';

export interface SseEvent {
  /** The `event:` field, "message" when absent. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last event id seen so far in the stream (it persists across events, per the spec), or null. */
  id: string | null;
}

export interface SseParserOptions {
  /**
   * end() delivers a final event that lacks its terminating blank line (default false: discarded, as
   * the spec says). Lenient servers end streams that way; the OpenAI-compatible client accepts it.
   */
  flushUnterminated?: boolean;
}

export class SseParser {
  private readonly parser: EventSourceParser;
  private readonly flushUnterminated: boolean;
  private lastId: string | null = null;
  private completed: SseEvent[] = [];

  constructor(options: SseParserOptions = {}) {
    this.flushUnterminated = options.flushUnterminated ?? false;
    this.parser = createParser({
      onId: (id) => {
        this.lastId = id;
      },
      onEvent: (e) => {
        this.completed.push({ event: e.event || 'message', data: e.data, id: this.lastId });
      },
    });
  }

  /** Feeds decoded text (any piece of the stream); returns the events it completed, in order. */
  push(text: string): SseEvent[] {
    this.parser.feed(text);
    return this.take();
  }

  /** Ends the stream: returns the unterminated last event when `flushUnterminated`, else nothing. */
  end(): SseEvent[] {
    // Two line feeds end a pending line and then the event (an already-ended line makes the first
    // one the event's blank line; a split CRLF swallows the first): never a spurious event.
    if (this.flushUnterminated) this.parser.feed('\n\n');
    this.parser.reset();
    return this.take();
  }

  private take(): SseEvent[] {
    const out = this.completed;
    this.completed = [];
    return out;
  }
}
