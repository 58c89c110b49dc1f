/**
 * Server-Sent Events over an Express response: named events (`event: token`, `done`, `error` for
 * /v1/chat) and bare `data:` lines (the OpenAI-compatible stream). Writes after the client went away
 * are dropped silently (the answer pipeline is cancelled separately through its AbortSignal).
 */
import type { Response } from 'express';

/** Comment line sent this often to keep proxies from closing an idle stream, in ms. */
export const SSE_HEARTBEAT_MS = 15_000;

export class SseStream {
  private readonly res: Response;
  private heartbeat: NodeJS.Timeout | null = null;
  private started = false;

  constructor(res: Response) {
    this.res = res;
  }

  /** Sends the status line and SSE headers (idempotent). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.res.status(200);
    this.res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('Cache-Control', 'no-cache, no-transform');
    this.res.setHeader('Connection', 'keep-alive');
    // nginx buffers responses by default, which would hold every token until the end.
    this.res.setHeader('X-Accel-Buffering', 'no');
    this.res.flushHeaders();
    this.heartbeat = setInterval(() => this.write(': keep-alive\n\n'), SSE_HEARTBEAT_MS);
    this.heartbeat.unref();
    this.res.once('close', () => this.stopHeartbeat());
  }

  /** True once the client can no longer receive anything. */
  get closed(): boolean {
    return this.res.writableEnded || this.res.destroyed;
  }

  /** `event: NAME` + `data: JSON`. */
  event(name: string, data: unknown): void {
    this.start();
    this.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** A bare `data:` message (JSON-encoded unless already a string, e.g. `[DONE]`). */
  data(data: unknown): void {
    this.start();
    this.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }

  end(): void {
    this.stopHeartbeat();
    if (!this.closed) this.res.end();
  }

  private write(chunk: string): void {
    if (this.closed) return;
    this.res.write(chunk);
    // Node corks the socket for a chunked write and flushes it on the next tick, by which time a
    // local model has already started decoding the next token; flushing now keeps the syscall (and
    // whatever it wakes) out of the decode that follows. An extra uncork is a no-op.
    this.res.socket?.uncork();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
}
