/**
 * The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 that speaks the chat
 * completions wire format (streaming SSE and plain JSON) and misbehaves on request.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/core/config.ts';
import { CancelledError, ConfigError, ModelLoadError, UpstreamError, UpstreamTimeoutError, ValidationError } from '../../../src/core/errors.ts';
import { ExtractiveChatModel } from '../../../src/core/llm/extractive.ts';
import { createChatModel, samplingFromConfig } from '../../../src/core/llm/index.ts';
import { OpenAICompatibleChatModel, chatCompletionsUrl } from '../../../src/core/llm/openai.ts';
import { SseParser } from '../../../src/core/llm/sse.ts';
import type { GenerateRequest, SamplingParams } from '../../../src/core/llm/types.ts';

type Mode =
  | 'stream'
  | 'stream-no-usage'
  | 'stream-length'
  | 'json'
  | 'error-500'
  | 'error-400'
  | 'error-500-html'
  | 'hang'
  | 'trickle'
  | 'close-mid-stream'
  | 'malformed'
  | 'no-done'
  | 'stall-after-first';

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

let server: http.Server;
let port: number;
let mode: Mode = 'stream';
let received: Received[] = [];
/** Resolved when the server sees the client's socket close during a 'stall-after-first' response. */
let sawClientClose: Promise<void>;
let markClientClose: () => void;

const TOKENS = ['The', ' unit', ' weighs', ' 4.2', ' kg', ' [1]', '.'];

function chunk(delta: Record<string, unknown>, finish: string | null = null): string {
  return `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'test-model', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
}

function sseHead(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function handle(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>): Promise<void> {
  switch (mode) {
    case 'stream':
    case 'stream-no-usage':
    case 'stream-length': {
      sseHead(res);
      res.write(': keep-alive\n\n');
      res.write(chunk({ role: 'assistant', content: '' }));
      for (const t of TOKENS) {
        const ev = chunk({ content: t });
        // Split every event across two writes (and so, usually, two reads) mid-line.
        const cut = Math.floor(ev.length / 2);
        res.write(ev.slice(0, cut));
        await sleep(2);
        res.write(ev.slice(cut).replace(/\n\n$/, '\r\n\r\n'));
      }
      res.write(chunk({}, mode === 'stream-length' ? 'length' : 'stop'));
      if (mode !== 'stream-no-usage') {
        res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 321, completion_tokens: 7, total_tokens: 328 } })}\n\n`);
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    case 'json':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'c2',
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: 'Plain answer [1].' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 },
        }),
      );
      return;
    case 'error-500':
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'CUDA out of memory', type: 'server_error' } }));
      return;
    case 'error-500-html':
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html>Service Unavailable</html>');
      return;
    case 'error-400':
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `model '${String(body.model)}' not found`, type: 'invalid_request_error' } }));
      return;
    case 'hang':
      return; // never answers
    case 'trickle': {
      sseHead(res);
      for (let i = 0; i < 200 && !res.destroyed; i++) {
        res.write(chunk({ content: ` t${i}` }));
        await sleep(50);
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    case 'close-mid-stream':
      sseHead(res);
      res.write(chunk({ content: 'Half' }));
      await sleep(20);
      req.socket.destroy();
      return;
    case 'malformed':
      sseHead(res);
      res.write(chunk({ content: 'ok' }));
      res.end('data: {"choices": [ this is not json\n\n');
      return;
    case 'no-done':
      sseHead(res);
      res.write(chunk({ content: 'cut' }));
      res.end();
      return;
    case 'stall-after-first':
      sseHead(res);
      res.on('close', () => markClientClose());
      res.write(chunk({ content: 'First' }));
      return; // then nothing: the client must cancel
  }
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      raw += d;
    });
    req.on('end', () => {
      const body = JSON.parse(raw || '{}') as Record<string, unknown>;
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      void handle(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  received = [];
  mode = 'stream';
  sawClientClose = new Promise<void>((resolve) => {
    markClientClose = resolve;
  });
});

const SAMPLING: SamplingParams = { maxTokens: 64, temperature: 0.3, topP: 0.9, seed: 1234, stop: ['\n\nUser:', '###'] };

function request(extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    messages: [
      { role: 'system', content: 'You answer from context.' },
      { role: 'user', content: 'How heavy is it?' },
    ],
    sampling: SAMPLING,
    signal: new AbortController().signal,
    context: { query: 'How heavy is it?', passages: [] },
    ...extra,
  };
}

function model(opts: { timeoutMs?: number; baseUrl?: string; apiKey?: string } = {}): OpenAICompatibleChatModel {
  return new OpenAICompatibleChatModel({
    baseUrl: opts.baseUrl ?? `http://127.0.0.1:${port}`,
    model: 'test-model',
    timeoutMs: opts.timeoutMs ?? 5000,
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
  });
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('SseParser', () => {
  it('parses events split anywhere, with any line ending, comments and multi-line data', () => {
    const stream = ': ping\r\ndata: {"a":1}\r\n\r\nevent: note\ndata: line1\ndata:line2\n\ndata: [DONE]\r\r';
    // Feed it one character at a time: every split point (including inside "\r\n") must work.
    const p = new SseParser();
    const events = [...stream].flatMap((c) => p.push(c));
    events.push(...p.end());
    expect(events).toEqual([
      { event: 'message', data: '{"a":1}', id: null },
      { event: 'note', data: 'line1\nline2', id: null },
      { event: 'message', data: '[DONE]', id: null },
    ]);
  });

  it('flushes a final event without its blank line on end(), and ignores events without data', () => {
    const p = new SseParser();
    expect(p.push('event: x\n\nid: 3\ndata: tail')).toEqual([]);
    expect(p.end()).toEqual([{ event: 'message', data: 'tail', id: '3' }]);
  });
});

describe('chatCompletionsUrl', () => {
  it('appends /v1 unless the path already ends in a version segment', () => {
    expect(chatCompletionsUrl('http://h:8000')).toBe('http://h:8000/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:8000/')).toBe('http://h:8000/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:8000/v1')).toBe('http://h:8000/v1/chat/completions');
    expect(chatCompletionsUrl('http://h:8000/v1/')).toBe('http://h:8000/v1/chat/completions');
    expect(chatCompletionsUrl('https://h/openai/v2')).toBe('https://h/openai/v2/chat/completions');
    expect(chatCompletionsUrl('http://h/api')).toBe('http://h/api/v1/chat/completions');
    expect(() => chatCompletionsUrl('not a url')).toThrow(ValidationError);
    expect(() => chatCompletionsUrl('ftp://h')).toThrow(ValidationError);
  });
});

describe('OpenAICompatibleChatModel', () => {
  it('is a ready server backend named after its model', () => {
    const m = model();
    expect(m.backend).toBe('openai');
    expect(m.modelId).toBe('test-model');
    expect(m.status()).toEqual({ state: 'ready' });
  });

  it('streams tokens in order and parses usage', async () => {
    const tokens: string[] = [];
    const r = await model().generate(request({ onToken: (t) => tokens.push(t) }));
    expect(tokens).toEqual(TOKENS);
    expect(r).toEqual({ text: TOKENS.join(''), promptTokens: 321, completionTokens: 7, finishReason: 'stop' });
  });

  it('sends the messages, model and sampling parameters, streaming with usage, to /v1/chat/completions', async () => {
    await model({ apiKey: 'sk-test-123' }).generate(request());
    expect(received).toHaveLength(1);
    const got = received[0] as Received;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/v1/chat/completions');
    expect(got.headers.authorization).toBe('Bearer sk-test-123');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.body).toEqual({
      model: 'test-model',
      messages: request().messages,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 64,
      temperature: 0.3,
      top_p: 0.9,
      seed: 1234,
      stop: ['\n\nUser:', '###'],
    });
  });

  it('omits stop when there are no stop strings, and accepts a base URL ending in /v1', async () => {
    await model({ baseUrl: `http://127.0.0.1:${port}/v1/` }).generate(request({ sampling: { ...SAMPLING, stop: [] } }));
    expect(received[0]?.url).toBe('/v1/chat/completions');
    expect(received[0]?.body).not.toHaveProperty('stop');
    expect(received[0]?.headers.authorization).toBeUndefined();
  });

  it('estimates token counts when the server sends no usage, and reports finish_reason length', async () => {
    mode = 'stream-no-usage';
    const m = model();
    const r = await m.generate(request());
    expect(r.completionTokens).toBe(m.countTokens(TOKENS.join('')));
    expect(r.promptTokens).toBeGreaterThan(0);
    mode = 'stream-length';
    expect((await m.generate(request())).finishReason).toBe('length');
  });

  it('accepts a non-streaming JSON completion', async () => {
    mode = 'json';
    const tokens: string[] = [];
    const r = await model().generate(request({ onToken: (t) => tokens.push(t) }));
    expect(r).toEqual({ text: 'Plain answer [1].', promptTokens: 11, completionTokens: 4, finishReason: 'stop' });
    expect(tokens).toEqual(['Plain answer [1].']);
  });

  it('maps HTTP 5xx to UpstreamError naming the server and carrying its message', async () => {
    mode = 'error-500';
    const err = await rejection(model().generate(request()));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(err.message).toContain('HTTP 500');
    expect(err.message).toContain('CUDA out of memory');
    mode = 'error-500-html';
    const html = await rejection(model().generate(request()));
    expect(html).toBeInstanceOf(UpstreamError);
    expect(html.message).toContain('HTTP 503');
  });

  it('maps HTTP 4xx to UpstreamError with the server error message', async () => {
    mode = 'error-400';
    const err = await rejection(model().generate(request()));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).not.toBeInstanceOf(UpstreamTimeoutError);
    expect(err.message).toContain("model 'test-model' not found");
    expect(err.message).toContain('HTTP 404');
  });

  it('times out with UpstreamTimeoutError when the server never answers', async () => {
    mode = 'hang';
    const started = Date.now();
    const err = await rejection(model({ timeoutMs: 300 }).generate(request()));
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(UpstreamTimeoutError);
    expect(err.message).toContain('did not answer within 300 ms');
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(3000);
  });

  it('times out when the whole answer takes longer than the timeout, even if tokens keep coming', async () => {
    mode = 'trickle';
    const tokens: string[] = [];
    const started = Date.now();
    const err = await rejection(model({ timeoutMs: 400 }).generate(request({ onToken: (t) => tokens.push(t) })));
    expect(err).toBeInstanceOf(UpstreamTimeoutError);
    expect(err.message).toContain('did not finish');
    expect(tokens.length).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('maps a server that closes mid-stream to UpstreamError', async () => {
    mode = 'close-mid-stream';
    const err = await rejection(model().generate(request()));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  it('maps a stream that ends without [DONE] or finish_reason to UpstreamError', async () => {
    mode = 'no-done';
    const err = await rejection(model().generate(request()));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err.message).toMatch(/before the answer was complete/);
  });

  it('maps a malformed stream event to UpstreamError', async () => {
    mode = 'malformed';
    const err = await rejection(model().generate(request()));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err.message).toMatch(/malformed stream event/);
  });

  it('maps a refused connection to UpstreamError naming the server', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await rejection(model({ baseUrl: `http://127.0.0.1:${deadPort}` }).generate(request()));
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err.message).toContain(`cannot reach LLM server http://127.0.0.1:${deadPort}`);
    expect(err.message).toContain('ECONNREFUSED');
  });

  it('cancels mid-stream: rejects with CancelledError and aborts the HTTP request', async () => {
    mode = 'stall-after-first';
    const ac = new AbortController();
    const tokens: string[] = [];
    const p = model().generate(
      request({
        signal: ac.signal,
        onToken: (t) => {
          tokens.push(t);
          ac.abort();
        },
      }),
    );
    const err = await rejection(p);
    expect(err).toBeInstanceOf(CancelledError);
    expect(tokens).toEqual(['First']);
    // The server sees its response socket close (within a bound, or the test fails).
    await Promise.race([sawClientClose, sleep(3000).then(() => Promise.reject(new Error('server never saw the socket close')))]);
  });

  it('rethrows an error from the onToken callback as is and releases the connection', async () => {
    mode = 'stall-after-first';
    const boom = new Error('client socket gone');
    const err = await rejection(
      model().generate(
        request({
          onToken: () => {
            throw boom;
          },
        }),
      ),
    );
    expect(err).toBe(boom);
    await Promise.race([sawClientClose, sleep(3000).then(() => Promise.reject(new Error('server never saw the socket close')))]);
  });

  it('rejects at once, without a request, when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(model().generate(request({ signal: ac.signal }))).rejects.toBeInstanceOf(CancelledError);
    expect(received).toHaveLength(0);
  });

  it('validates its options', () => {
    expect(() => new OpenAICompatibleChatModel({ baseUrl: 'http://x', model: '', timeoutMs: 10 })).toThrow(ValidationError);
    expect(() => new OpenAICompatibleChatModel({ baseUrl: 'http://x', model: 'm', timeoutMs: 0 })).toThrow(ValidationError);
    expect(() => new OpenAICompatibleChatModel({ baseUrl: 'nope', model: 'm', timeoutMs: 10 })).toThrow(ValidationError);
  });
});

describe('createChatModel', () => {
  const cfg = (env: Record<string, string>) => loadConfig({ MNEME_DATA_DIR: '/tmp/mneme-unused', ...env });

  it('builds the extractive backend by default', async () => {
    const m = await createChatModel(cfg({}));
    expect(m).toBeInstanceOf(ExtractiveChatModel);
    expect(m.modelId).toBe('extractive-v1');
  });

  it('builds the OpenAI-compatible backend, which then talks to the configured server', async () => {
    const m = await createChatModel(cfg({ MNEME_LLM: `openai:http://127.0.0.1:${port}/v1`, MNEME_LLM_MODEL: 'served-model', MNEME_LLM_API_KEY: 'k1', MNEME_LLM_TIMEOUT_MS: '5000' }));
    expect(m).toBeInstanceOf(OpenAICompatibleChatModel);
    expect(m.backend).toBe('openai');
    expect(m.modelId).toBe('served-model');
    const r = await m.generate(request());
    expect(r.text).toBe(TOKENS.join(''));
    expect(received[0]?.body.model).toBe('served-model');
    expect(received[0]?.headers.authorization).toBe('Bearer k1');
  });

  it('requires MNEME_LLM_MODEL for openai:, and fails fast on a missing local model naming its path', async () => {
    await expect(createChatModel(cfg({ MNEME_LLM: 'openai:http://127.0.0.1:1' }))).rejects.toThrow(/MNEME_LLM_MODEL/);
    await expect(createChatModel(cfg({ MNEME_LLM: 'openai:http://127.0.0.1:1' }))).rejects.toBeInstanceOf(ConfigError);
    await expect(createChatModel(cfg({ MNEME_LLM: 'gguf:/models/x.gguf' }))).rejects.toBeInstanceOf(ModelLoadError);
    await expect(createChatModel(cfg({ MNEME_LLM: 'gguf:/models/x.gguf' }))).rejects.toThrow('/models/x.gguf');
    await expect(createChatModel(cfg({ MNEME_LLM: 'transformers:/models/nope' }))).rejects.toThrow('/models/nope');
  });

  it('derives sampling parameters from the config', () => {
    const c = cfg({ MNEME_LLM_MAX_TOKENS: '99', MNEME_LLM_TEMPERATURE: '0.7', MNEME_LLM_TOP_P: '0.5', MNEME_LLM_SEED: '7' });
    expect(samplingFromConfig(c, ['###'])).toEqual({ maxTokens: 99, temperature: 0.7, topP: 0.5, seed: 7, stop: ['###'] });
    expect(samplingFromConfig(c).stop).toEqual([]);
  });
});
