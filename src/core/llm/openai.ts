/**
 * ChatModel backend "openai": any OpenAI-compatible chat completions server (llama.cpp server,
 * Ollama, vLLM, LM Studio, OpenAI itself). Always streams (`stream: true`) so tokens reach the client
 * as they are generated and a stalled server is noticed.
 *
 * Base URL rule: the endpoint is `<base>/chat/completions` where `<base>` is the configured URL with
 * trailing slashes removed, and `/v1` appended unless its last path segment already is a version
 * (`v1`, `v2`, ...). So `http://h:8000`, `http://h:8000/` and `http://h:8000/v1` all post to
 * `http://h:8000/v1/chat/completions`; `http://h/openai/v1` posts to `http://h/openai/v1/chat/completions`.
 */
import { estimateTokens } from '../tokens.ts';
import { CancelledError, UpstreamError, UpstreamTimeoutError, ValidationError } from '../errors.ts';
import { SseParser } from './sse.ts';
import type { ChatModel, GenerateRequest, GenerateResult, ModelState } from './types.ts';

/** Most bytes of an error response body read to extract the server's message. */
export const ERROR_BODY_MAX_BYTES = 64 * 1024;

export interface OpenAICompatibleOptions {
  /** Server base URL, with or without the trailing `/v1` (see the module doc). */
  baseUrl: string;
  /** Model name the server serves (sent as `model`, reported as `modelId`). */
  model: string;
  /** Sent as `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string | undefined;
  /** Deadline for the whole request, first byte to last, in milliseconds. */
  timeoutMs: number;
  /** Injected fetch (default: the global one). */
  fetch?: typeof fetch;
}

/** Resolves the chat completions endpoint from a base URL (see the module doc for the rule). */
export function chatCompletionsUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch (err) {
    throw new ValidationError(`invalid LLM server URL ${JSON.stringify(baseUrl)}`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ValidationError(`LLM server URL must be http(s), got ${JSON.stringify(baseUrl)}`);
  }
  let p = url.pathname.replace(/\/+$/, '');
  if (!/\/v\d+$/.test(p)) p += '/v1';
  url.pathname = `${p}/chat/completions`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** The URL as shown in messages: no credentials, no query. */
function displayUrl(baseUrl: string): string {
  try {
    const u = new URL(baseUrl);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return baseUrl;
  }
}

interface StreamChunk {
  choices?: { delta?: { content?: string | null }; message?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string } | string;
}

/** Network error codes (undici puts them on `cause.code`) that mean "the server is not there". */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

/** Wraps an exception thrown by the caller's onToken so it is rethrown as is, not blamed on the server. */
class CallbackFailure {
  constructor(readonly error: unknown) {}
}

function emit(req: GenerateRequest, text: string): void {
  try {
    req.onToken?.(text);
  } catch (err) {
    throw new CallbackFailure(err);
  }
}

function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function describe(err: unknown): string {
  const code = errorCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  const causeMsg = err instanceof Error && err.cause instanceof Error ? err.cause.message : '';
  return [code, causeMsg || msg].filter(Boolean).join(': ');
}

export class OpenAICompatibleChatModel implements ChatModel {
  readonly backend = 'openai';
  readonly modelId: string;
  private readonly endpoint: string;
  private readonly server: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  /** @throws ValidationError for a malformed base URL, an empty model name or a non-positive timeout. */
  constructor(opts: OpenAICompatibleOptions) {
    if (!opts.model) throw new ValidationError('the OpenAI-compatible backend needs a model name');
    if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) throw new ValidationError(`timeoutMs must be positive, got ${opts.timeoutMs}`);
    this.endpoint = chatCompletionsUrl(opts.baseUrl);
    this.server = `LLM server ${displayUrl(opts.baseUrl)}`;
    this.modelId = opts.model;
    this.apiKey = opts.apiKey;
    this.timeoutMs = opts.timeoutMs;
    this.fetchImpl = opts.fetch ?? globalThis.fetch;
  }

  /** A server backend has nothing to load: always ready (failures surface per request). */
  status(): ModelState {
    return { state: 'ready' };
  }

  countTokens(text: string): number {
    return estimateTokens(text);
  }

  async close(): Promise<void> {
    // No persistent resources: requests own their connections.
  }

  /**
   * Streams one completion.
   * @throws CancelledError when `req.signal` aborts (the HTTP request is aborted too);
   * UpstreamTimeoutError when the server does not finish within `timeoutMs`; UpstreamError for a
   * refused connection, DNS failure, HTTP error status (with the server's message) or malformed stream.
   */
  async generate(req: GenerateRequest): Promise<GenerateResult> {
    if (!Number.isInteger(req.sampling.maxTokens) || req.sampling.maxTokens < 1) {
      throw new ValidationError(`sampling.maxTokens must be a positive integer, got ${req.sampling.maxTokens}`);
    }
    if (req.signal.aborted) throw new CancelledError('generation cancelled before it started');

    const controller = new AbortController();
    let abortedBy: 'caller' | 'timeout' | null = null;
    const onCallerAbort = (): void => {
      abortedBy ??= 'caller';
      controller.abort();
    };
    req.signal.addEventListener('abort', onCallerAbort, { once: true });
    let gotFirstByte = false;
    const timer = setTimeout(() => {
      abortedBy ??= 'timeout';
      controller.abort();
    }, this.timeoutMs);

    const body: Record<string, unknown> = {
      model: this.modelId,
      messages: req.messages,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: req.sampling.maxTokens,
      temperature: req.sampling.temperature,
      top_p: req.sampling.topP,
      seed: req.sampling.seed,
    };
    if (req.sampling.stop.length > 0) body.stop = req.sampling.stop;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream, application/json' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;

    // Maps any failure to the contract's error types; abort reasons win over the symptom they cause.
    const mapError = (err: unknown): unknown => {
      if (err instanceof CallbackFailure) return err.error;
      if (abortedBy === 'caller') return new CancelledError('generation cancelled', { cause: err });
      if (abortedBy === 'timeout' || TIMEOUT_CODES.has(errorCode(err) ?? '')) {
        return new UpstreamTimeoutError(
          gotFirstByte
            ? `${this.server} did not finish the answer within ${this.timeoutMs} ms`
            : `${this.server} did not answer within ${this.timeoutMs} ms`,
          { cause: err },
        );
      }
      if (err instanceof UpstreamError || err instanceof ValidationError) return err;
      if (!gotFirstByte) {
        return new UpstreamError(`cannot reach ${this.server} (${describe(err)})`, { cause: err });
      }
      return new UpstreamError(`${this.server} broke off the stream (${describe(err)})`, { cause: err });
    };

    try {
      let res: Response;
      try {
        res = await this.fetchImpl(this.endpoint, { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal });
      } catch (err) {
        throw mapError(err);
      }
      gotFirstByte = true;
      if (!res.ok) throw await this.httpError(res).catch((err: unknown) => mapError(err));
      const contentType = res.headers.get('content-type') ?? '';
      try {
        const result = contentType.includes('application/json')
          ? await this.readJson(res, req)
          : await this.readStream(res, req);
        return result;
      } catch (err) {
        throw mapError(err);
      }
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener('abort', onCallerAbort);
      // Releases the connection on every early exit (malformed stream, callback error); no-op when done.
      controller.abort();
    }
  }

  private async httpError(res: Response): Promise<UpstreamError> {
    const raw = await readLimited(res, ERROR_BODY_MAX_BYTES);
    let message = raw.trim();
    try {
      const j = JSON.parse(raw) as { error?: { message?: unknown } | string; message?: unknown; detail?: unknown };
      const m = typeof j.error === 'string' ? j.error : (j.error?.message ?? j.message ?? j.detail);
      if (typeof m === 'string' && m) message = m;
    } catch {
      // Not JSON: keep the text.
    }
    if (message.length > 500) message = `${message.slice(0, 500)}…`;
    const hint = res.status === 401 || res.status === 403 ? ' (check MNEME_LLM_API_KEY)' : res.status === 404 ? ' (check the URL and MNEME_LLM_MODEL)' : '';
    const kind = res.status >= 500 ? 'failed' : 'rejected the request';
    return new UpstreamError(`${this.server} ${kind} (HTTP ${res.status})${message ? `: ${message}` : ''}${hint}`, {
      details: { upstream_status: res.status },
    });
  }

  /** A server that ignored `stream: true` and sent a plain completion. */
  private async readJson(res: Response, req: GenerateRequest): Promise<GenerateResult> {
    const raw = await res.text();
    let j: StreamChunk;
    try {
      j = JSON.parse(raw) as StreamChunk;
    } catch (err) {
      throw new UpstreamError(`${this.server} sent a response that is not JSON`, { cause: err });
    }
    if (j.error) throw new UpstreamError(`${this.server} reported an error: ${typeof j.error === 'string' ? j.error : (j.error.message ?? 'unknown')}`);
    const choice = j.choices?.[0];
    const text = choice?.message?.content;
    if (typeof text !== 'string') throw new UpstreamError(`${this.server} sent a completion without choices[0].message.content`);
    if (text) emit(req, text);
    return this.result(req, text, choice?.finish_reason ?? null, j.usage ?? null);
  }

  private async readStream(res: Response, req: GenerateRequest): Promise<GenerateResult> {
    if (!res.body) throw new UpstreamError(`${this.server} sent an empty response`);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    let text = '';
    let finish: string | null = null;
    let usage: StreamChunk['usage'] = null;
    let done = false;

    const handle = (data: string): void => {
      if (data.trim() === '[DONE]') {
        done = true;
        return;
      }
      let chunk: StreamChunk;
      try {
        chunk = JSON.parse(data) as StreamChunk;
      } catch (err) {
        throw new UpstreamError(`${this.server} sent a malformed stream event: ${JSON.stringify(data.slice(0, 200))}`, { cause: err });
      }
      if (chunk.error) {
        throw new UpstreamError(`${this.server} reported an error mid-stream: ${typeof chunk.error === 'string' ? chunk.error : (chunk.error.message ?? 'unknown')}`);
      }
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices ?? []) {
        const piece = choice.delta?.content;
        if (typeof piece === 'string' && piece !== '') {
          text += piece;
          emit(req, piece);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    };

    while (!done) {
      const { value, done: eof } = await reader.read();
      const events = eof ? [...parser.push(decoder.decode()), ...parser.end()] : parser.push(decoder.decode(value, { stream: true }));
      for (const ev of events) {
        if (done) break;
        handle(ev.data);
      }
      if (eof) break;
    }
    if (!done && finish === null) {
      throw new UpstreamError(`${this.server} closed the stream before the answer was complete`);
    }
    await reader.cancel().catch(() => undefined);
    return this.result(req, text, finish, usage);
  }

  private result(req: GenerateRequest, text: string, finish: string | null, usage: StreamChunk['usage']): GenerateResult {
    const promptTokens = usage?.prompt_tokens ?? req.messages.reduce((sum, m) => sum + estimateTokens(m.content), 0);
    const completionTokens = usage?.completion_tokens ?? estimateTokens(text);
    return { text, promptTokens, completionTokens, finishReason: finish === 'length' ? 'length' : 'stop' };
  }
}

/** Reads at most `maxBytes` of a body as text (error bodies can be arbitrarily large). */
async function readLimited(res: Response, maxBytes: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let out = '';
  let bytes = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    out += decoder.decode(value, { stream: true });
    if (bytes >= maxBytes) {
      await reader.cancel().catch(() => undefined);
      break;
    }
  }
  return out + decoder.decode();
}
