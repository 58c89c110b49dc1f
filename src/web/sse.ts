/**
 * Server-Sent Events parsing in the browser (fetch + ReadableStream: EventSource cannot POST or send an
 * Authorization header): the shared eventsource-parser adapter, strict as the spec is (end() discards
 * an unterminated last message).
 */
export { SseParser } from '../shared/sse.ts';
export type { SseEvent } from '../shared/sse.ts';
