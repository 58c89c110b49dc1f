import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { SseStream } from '../../../src/chat/http/sse.ts';

let server: http.Server | null = null;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

/** Serves one SSE route whose handler runs `fn`, and returns the raw body a client received. */
async function serve(fn: (sse: SseStream, res: express.Response) => void): Promise<string> {
  const app = express();
  app.get('/sse', (_req, res) => {
    const sse = new SseStream(res);
    fn(sse, res);
    sse.end();
  });
  server = http.createServer(app);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const res = await fetch(`http://127.0.0.1:${port}/sse`);
  expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
  expect(res.headers.get('cache-control')).toBe('no-cache, no-transform');
  return res.text();
}

describe('SseStream', () => {
  it('writes named events and bare data messages in SSE framing', async () => {
    const body = await serve((sse) => {
      sse.event('token', { text: 'a\nb' });
      sse.data({ x: 1 });
      sse.data('[DONE]');
    });
    expect(body).toBe('event: token\ndata: {"text":"a\\nb"}\n\ndata: {"x":1}\n\ndata: [DONE]\n\n');
  });

  it('hands every event to the socket before returning, not on the next tick', async () => {
    const corked: number[] = [];
    await serve((sse, res) => {
      sse.event('token', { text: 'x' });
      // Node corks a socket for each chunked write and uncorks it on the next tick; a local model
      // would already be decoding the next token by then, with the flush competing for its cores.
      corked.push(res.socket!.writableCorked);
      sse.event('token', { text: 'y' });
      corked.push(res.socket!.writableCorked);
    });
    expect(corked).toEqual([0, 0]);
  });

  it('drops writes after the response ended', async () => {
    const body = await serve((sse) => {
      sse.event('token', { text: 'kept' });
      sse.end();
      sse.event('token', { text: 'dropped' });
      expect(sse.closed).toBe(true);
    });
    expect(body).toBe('event: token\ndata: {"text":"kept"}\n\n');
  });
});
