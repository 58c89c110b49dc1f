/**
 * The pages' HTTP client: JSON calls with the bearer key, the streamed chat call (SSE over fetch),
 * error bodies `{error:{code, message}}` turned into ApiError, and the key kept in sessionStorage
 * (gone when the tab closes; never in localStorage or a cookie).
 */
import type { ChatAnswer } from '../chat/answer.ts';
import { SseParser } from './sse.ts';

export class ApiError extends Error {
  /** HTTP status; 0 when the server could not be reached. */
  readonly status: number;
  readonly code: string;
  /** Retry-After, in seconds, when the server sent one. */
  readonly retryAfterSeconds: number | null;
  constructor(status: number, code: string, message: string, retryAfterSeconds: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** True for the errors that mean "this key no longer works": back to sign-in. */
export function isAuthError(err: unknown): err is ApiError {
  return err instanceof ApiError && err.status === 401;
}

/** A sentence for the user about `err` (never a stack trace). Pure. */
export function describeError(err: unknown): string {
  if (!(err instanceof ApiError)) return err instanceof Error && err.name === 'AbortError' ? 'Stopped.' : 'Something went wrong. Please try again.';
  switch (err.status) {
    case 0:
      return 'Cannot reach the mneme server. Check that it is running, then try again.';
    case 401:
      return 'This API key was not accepted: it is unknown, revoked or its user was deleted.';
    case 403:
      return 'This API key is valid but does not belong to an admin.';
    case 429:
      return `Too many requests. Try again in ${err.retryAfterSeconds ?? 'a few'} seconds.`;
    case 503:
      return `The server is busy or still loading its model (${err.message}). Try again in ${err.retryAfterSeconds ?? 'a few'} seconds.`;
    default:
      return err.message || `Request failed (HTTP ${err.status}).`;
  }
}

/** sessionStorage entries: the chat key and the admin key are separate sign-ins. */
export const STORAGE_KEYS = { chat: 'mneme.chat.key', admin: 'mneme.admin.key' } as const;

export function loadKey(which: keyof typeof STORAGE_KEYS): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEYS[which]);
  } catch {
    return null;
  }
}

export function saveKey(which: keyof typeof STORAGE_KEYS, key: string | null): void {
  try {
    if (key === null) sessionStorage.removeItem(STORAGE_KEYS[which]);
    else sessionStorage.setItem(STORAGE_KEYS[which], key);
  } catch {
    // Storage disabled (private mode settings): the key then lives only in memory for this page.
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText;
  try {
    const body = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === 'string') code = body.error.code;
    if (typeof body.error?.message === 'string') message = body.error.message;
  } catch {
    // Not JSON (a proxy's error page): keep the status text.
  }
  const retry = Number(res.headers.get('retry-after'));
  return new ApiError(res.status, code, message, Number.isFinite(retry) && retry > 0 ? retry : null);
}

async function send(key: string, path: string, init: RequestInit): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('Authorization', `Bearer ${key}`);
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network_error', 'network error');
  }
  if (!res.ok) throw await errorFrom(res);
  return res;
}

/**
 * One JSON call. `body` is sent as JSON when given.
 * @throws ApiError (status 0 when unreachable); AbortError when `signal` fires.
 */
export async function apiJson<T>(key: string, path: string, opts: { method?: string; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const init: RequestInit = { method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'), signal: opts.signal ?? null };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  const res = await send(key, path, init);
  return (await res.json()) as T;
}

/**
 * A DELETE; a response body (e.g. erasure counts) is not read.
 * @throws ApiError (status 0 when unreachable).
 */
export async function apiDelete(key: string, path: string): Promise<void> {
  await send(key, path, { method: 'DELETE' });
}

export interface ChatRequest {
  message: string;
  conversation_id?: string;
  top_k?: number;
  collection?: string;
}

/**
 * POST /v1/chat with `stream: true`: calls `onToken` per `token` event and resolves with the `done`
 * object. An `error` event rejects with an ApiError carrying its status.
 * @throws ApiError; AbortError when `signal` fires (the server then logs the turn as cancelled).
 */
export async function streamChat(key: string, req: ChatRequest, opts: { signal?: AbortSignal; onToken: (text: string) => void }): Promise<ChatAnswer> {
  const res = await send(key, '/v1/chat', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify({ ...req, stream: true }),
    signal: opts.signal ?? null,
  });
  if (!res.body) throw new ApiError(res.status, 'no_body', 'the server sent no answer');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const ev of parser.push(value)) {
      if (ev.event === 'token') {
        const data = JSON.parse(ev.data) as { text?: unknown };
        if (typeof data.text === 'string') opts.onToken(data.text);
      } else if (ev.event === 'done') {
        await reader.cancel().catch(() => {});
        return JSON.parse(ev.data) as ChatAnswer;
      } else if (ev.event === 'error') {
        const data = JSON.parse(ev.data) as { code?: string; message?: string; status?: number };
        throw new ApiError(data.status ?? 500, data.code ?? 'stream_error', data.message ?? 'the answer failed');
      }
    }
  }
  throw new ApiError(502, 'stream_ended', 'the answer stream ended before it was complete');
}
