/**
 * Helpers for the HTTP integration tests: a temp data dir with the fixture corpus ingested through
 * the real pipeline (tiny BERT), a real server on 127.0.0.1:0 built exactly like `mneme serve`
 * (buildServerDeps + createApp), SSE parsing, and a small OpenAI-compatible LLM server whose
 * behaviour each test sets (answer, fail, hang, stream slowly).
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { loadConfig } from '../../src/core/config.ts';
import type { Config } from '../../src/core/config.ts';
import { createApp } from '../../src/chat/http/app.ts';
import { buildServerDeps } from '../../src/chat/http/wiring.ts';
import type { ServerDeps } from '../../src/chat/http/wiring.ts';
import { createUser } from '../../src/chat/users.ts';
import { ingestCommand } from '../../src/commands/ingest.ts';
import type { CommandIo } from '../../src/commands/types.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TINY_BERT = path.join(REPO, 'test/fixtures/models/tiny-bert');
export const FIXTURE_DOCS = path.join(REPO, 'test/fixtures/docs');

export function tempDir(prefix = 'mneme-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A CommandIo writing into strings. */
export function bufferIo(env: Record<string, string | undefined>): CommandIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _enc, cb) {
        append(String(chunk));
        cb();
      },
    });
  return {
    stdout: sink((s) => (out += s)),
    stderr: sink((s) => (err += s)),
    env,
    isTty: false,
    out: () => out,
    err: () => err,
  };
}

/** MNEME_* for a test: tiny BERT, offline, no rate limits (per key, failed auth per IP), no background materializer. */
export function testEnv(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MNEME_DATA_DIR: dataDir,
    MNEME_OFFLINE: '1',
    MNEME_EMBED_MODEL: TINY_BERT,
    MNEME_RATE_LIMIT_PER_MIN: '0',
    MNEME_AUTH_FAIL_PER_MIN: '0',
    MNEME_FEATURES_INTERVAL_S: '0',
    ...extra,
  };
}

/** Ingests the fixture corpus into `dataDir` with the real pipeline. */
export async function ingestFixtures(env: Record<string, string>): Promise<void> {
  const io = bufferIo(env);
  const code = await ingestCommand.run([FIXTURE_DOCS, '--json'], io);
  if (code !== 0) throw new Error(`ingest failed (${code}): ${io.err()}`);
}

export interface TestServer {
  url: string;
  config: Config;
  deps: ServerDeps;
  server: http.Server;
  /** A separate SQLite handle on the server's database file, for test set-up and probes only. */
  db: Database.Database;
  /** Creates a user and returns its API key. */
  key(name: string, admin?: boolean): Promise<string>;
  stop(): Promise<void>;
}

/** Builds the deps like `mneme serve` and listens on 127.0.0.1:0. */
export async function startTestServer(env: Record<string, string>): Promise<TestServer> {
  const config = loadConfig(env, { host: '127.0.0.1', port: 0 });
  const deps = await buildServerDeps(config);
  const app = createApp(deps);
  const server = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  const db = new Database(config.dbFile);
  return {
    url: `http://127.0.0.1:${port}`,
    config,
    deps,
    server,
    db,
    key: async (name, admin = false) => (await createUser(deps.store, { name, admin })).apiKey,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await deps.queue.close({ cancelInFlight: true });
      await deps.close();
      db.close();
    },
  };
}

export function authHeaders(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
}

/** POSTs JSON and returns status, headers and the parsed body. */
export async function postJson(url: string, key: string | null, body: unknown, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export interface SseMessage {
  event: string | null;
  data: string;
}

/** Parses a complete SSE body into messages (comments skipped). */
export function parseSse(text: string): SseMessage[] {
  const out: SseMessage[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':') || line === '') continue;
      const i = line.indexOf(':');
      const field = i === -1 ? line : line.slice(0, i);
      const value = i === -1 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (event !== null || data.length > 0) out.push({ event, data: data.join('\n') });
  }
  return out;
}

/** Counts rows of `table` (optionally WHERE clause) through a probe handle (TestServer.db). */
export function count(probe: { db: Database.Database }, table: string, where = '1', ...params: unknown[]): number {
  return probe.db.prepare(`SELECT count(*) FROM "${table}" WHERE ${where}`).pluck().get(...params) as number;
}

/** Waits until `fn` is true (polling), or throws after `timeoutMs`. */
export async function waitFor(fn: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export type FakeLlmBehaviour =
  | { kind: 'answer'; text: string; tokenDelayMs?: number; firstByteDelayMs?: number; breakAfterWords?: number }
  | { kind: 'status'; status: number; message: string }
  /** Accepts the request and never answers. */
  | { kind: 'hang' }
  /** Drops the connection without a response (a crashed server). */
  | { kind: 'destroy' };

export interface FakeLlm {
  url: string;
  behaviour: FakeLlmBehaviour;
  /** Request bodies received. */
  requests: Array<{ messages: Array<{ role: string; content: string }>; stream?: boolean }>;
  /** Requests whose connection closed before the answer ended (the client aborted). */
  aborted: number;
  close(): Promise<void>;
}

/**
 * A minimal OpenAI-compatible server on 127.0.0.1:0 (POST /v1/chat/completions). It streams the
 * answer word by word as `chat.completion.chunk` SSE when asked to stream, like llama.cpp/Ollama.
 */
export async function startFakeLlm(initial: FakeLlmBehaviour = { kind: 'answer', text: 'It works [1].' }): Promise<FakeLlm> {
  const state: FakeLlm = {
    url: '',
    behaviour: initial,
    requests: [],
    aborted: 0,
    close: async () => {},
  };
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d));
    req.on('end', () => {
      const body = JSON.parse(raw || '{}');
      state.requests.push(body);
      const b = state.behaviour;
      let finished = false;
      res.on('close', () => {
        if (!finished) state.aborted++;
      });
      if (b.kind === 'hang') return;
      if (b.kind === 'destroy') {
        finished = true;
        req.socket.destroy();
        return;
      }
      if (b.kind === 'status') {
        finished = true;
        res.writeHead(b.status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: b.message } }));
        return;
      }
      const words = b.text.split(/(?<= )/);
      const send = async () => {
        if (b.firstByteDelayMs) await new Promise((r) => setTimeout(r, b.firstByteDelayMs));
        if (res.destroyed) return;
        if (!body.stream) {
          finished = true;
          res.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify({ choices: [{ message: { role: 'assistant', content: b.text }, finish_reason: 'stop' }], usage: { prompt_tokens: 10, completion_tokens: words.length } }),
          );
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const [i, w] of words.entries()) {
          if (res.destroyed) return;
          if (b.breakAfterWords !== undefined && i >= b.breakAfterWords) {
            finished = true;
            res.socket?.destroy();
            return;
          }
          res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: w }, finish_reason: null }] })}\n\n`);
          if (b.tokenDelayMs) await new Promise((r) => setTimeout(r, b.tokenDelayMs));
        }
        if (res.destroyed) return;
        res.write(`data: ${JSON.stringify({ choices: [{ delta: {}, finish_reason: 'stop' }] })}\n\n`);
        res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 10, completion_tokens: words.length } })}\n\n`);
        finished = true;
        res.end('data: [DONE]\n\n');
      };
      void send();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}
