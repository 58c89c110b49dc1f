/**
 * Server-Sent Events parsing for streamed chat completions: the shared eventsource-parser adapter
 * (src/shared/sse.ts), lenient about a stream that ends without its final blank line (some
 * OpenAI-compatible servers do): end() delivers that last event.
 */
import { SseParser as SharedSseParser } from '../../shared/sse.ts';

export type { SseEvent } from '../../shared/sse.ts';

export class SseParser extends SharedSseParser {
  constructor() {
    super({ flushUnterminated: true });
  }
}
