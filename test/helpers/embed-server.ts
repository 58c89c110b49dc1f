/**
 * A real OpenAI-compatible embedding server for tests and benchmarks (node:http on 127.0.0.1, port 0):
 * `POST /v1/embeddings {model, input}` → `{data: [{index, embedding}]}` with deterministic vectors (a
 * hash of the text), answered in REVERSED order so clients must restore it by `index`. Failures are
 * scripted per request with `script`; it counts requests and the most in flight at once.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the server does with one request: answer normally, fail with a status, or never answer. */
export type StubAction = 'ok' | 'hang' | 'reset' | { status: number; headers?: Record<string, string>; body?: string };

export interface StubEmbedServer {
  /** `http://127.0.0.1:PORT` (no /v1). */
  url: string;
  /** Vector size of the next answers (change it to simulate a model switch). */
  dim: number;
  /** Milliseconds each answer waits before being sent. */
  delayMs: number;
  /** Called per request (0-based count) before answering; default always 'ok'. */
  script: (n: number, input: string[]) => StubAction;
  requests: number;
  inFlight: number;
  maxInFlight: number;
  /** Input sizes of the requests answered, in arrival order. */
  batchSizes: number[];
  /** Authorization headers seen. */
  authHeaders: (string | undefined)[];
  /** Model names seen. */
  models: string[];
  close(): Promise<void>;
}

/** Deterministic vector of `text`: dim values in [-1, 1) from a hash-seeded xorshift32. Not normalized. */
export function stubVector(text: string, dim: number): number[] {
  let x = createHash('sha256').update(text).digest().readUInt32LE(0) || 1;
  const out: number[] = [];
  for (let i = 0; i < dim; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(x / 2 ** 31 - 1);
  }
  return out;
}

export async function startStubEmbedServer(options: { dim?: number; delayMs?: number } = {}): Promise<StubEmbedServer> {
  const sockets = new Set<import('node:net').Socket>();
  const state: Omit<StubEmbedServer, 'url' | 'close'> = {
    dim: options.dim ?? 16,
    delayMs: options.delayMs ?? 0,
    script: () => 'ok',
    requests: 0,
    inFlight: 0,
    maxInFlight: 0,
    batchSizes: [],
    authHeaders: [],
    models: [],
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/embeddings') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `no route ${req.method} ${req.url}` } }));
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { model: string; input: string[] };
      const n = state.requests++;
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      state.authHeaders.push(req.headers.authorization);
      state.models.push(body.model);
      const action = state.script(n, body.input);
      const finish = () => {
        state.inFlight--;
        if (action === 'hang') return;
        if (action === 'reset') {
          req.socket.destroy();
          return;
        }
        if (action !== 'ok') {
          res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers }).end(action.body ?? JSON.stringify({ error: { message: `scripted ${action.status}` } }));
          return;
        }
        state.batchSizes.push(body.input.length);
        const data = body.input.map((t, index) => ({ object: 'embedding', index, embedding: stubVector(t, state.dim) })).reverse();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', model: body.model, data }));
      };
      if (action === 'hang') {
        res.on('close', () => state.inFlight--);
        return;
      }
      if (state.delayMs > 0) setTimeout(finish, state.delayMs);
      else finish();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const stub = state as StubEmbedServer;
  stub.url = `http://127.0.0.1:${port}`;
  stub.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return stub;
}
