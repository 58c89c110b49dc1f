/**
 * The ONE place where errors become HTTP responses. Every route throws (or passes to `next`) and this
 * module decides the status and the body `{error:{code, message}}`:
 * - MnemeError → its `status` and `code`; its message is shown (they are written for users), except
 *   InternalError and any status ≥ 500 other than 503, which get a generic message: upstream LLM
 *   failures (502/504) get UPSTREAM_MESSAGES, their text is logged (server log + prediction log).
 * - body-parser errors: malformed JSON → 400 `invalid_json`, body over the limit → 413
 *   `payload_too_large`, unsupported charset/Content-Encoding → 415, a compressed body that does not
 *   decompress (corrupt gzip/deflate/br) → 400 `invalid_body`.
 * - a URL whose percent-encoding does not decode (`/v1/conversations/%FF/messages`: URIError from
 *   route parameter decoding) → 400 `invalid_request`.
 * - anything else → 500 `internal_error` with a generic message; the stack goes to the server log,
 *   never to the client.
 * 429 and 503 carry `Retry-After` (seconds).
 */
import type { ErrorRequestHandler, Response } from 'express';
import type { z } from 'zod';
import { CollectionNotFoundError, MnemeError, RateLimitError, UnavailableError, ValidationError } from '../../core/errors.ts';
import type { Logger } from '../log.ts';

export interface HttpErrorBody {
  error: { code: string; message: string; collections?: unknown };
}

export interface HttpError {
  status: number;
  body: HttpErrorBody;
  /** Seconds for the Retry-After header (429, 503). */
  retryAfterSeconds: number | undefined;
  /** True when the error is unexpected and deserves a stack trace in the server log. */
  unexpected: boolean;
}

/** Status used for a request whose client went away (nginx's convention; never actually seen by that client). */
export const CLIENT_CLOSED_STATUS = 499;
/** Retry-After for 503s that do not say otherwise, in seconds. */
export const DEFAULT_RETRY_AFTER_SECONDS = 1;

/** What clients read for upstream LLM failures, by status (the real text is only logged). */
export const UPSTREAM_MESSAGES: Readonly<Record<number, string>> = {
  502: 'the language model server failed to answer; see the server log',
  504: 'the language model server did not answer in time',
};

/** Shape of the errors body-parser (through express.json) passes to `next`. */
interface BodyParserError {
  type: string;
  status?: number;
  expose?: boolean;
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return typeof err === 'object' && err !== null && typeof (err as { type?: unknown }).type === 'string' && typeof (err as { status?: unknown }).status === 'number';
}

function body(code: string, message: string): HttpErrorBody {
  return { error: { code, message } };
}

/** Maps any thrown value to status + body. Pure. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof MnemeError) {
    const retryAfterSeconds =
      err instanceof RateLimitError || err instanceof UnavailableError ? Math.max(1, Math.ceil(err.retryAfterSeconds)) : err.status === 503 ? DEFAULT_RETRY_AFTER_SECONDS : undefined;
    const status = err.status >= 400 && err.status <= 599 ? err.status : err.status === CLIENT_CLOSED_STATUS ? CLIENT_CLOSED_STATUS : 500;
    // An upstream LLM server's error text (URLs, its internals, model paths) goes to the server log
    // and the prediction log; the client gets a generic message with the same code.
    const upstreamMessage = UPSTREAM_MESSAGES[status];
    if (upstreamMessage !== undefined) return { status, body: body(err.code, upstreamMessage), retryAfterSeconds, unexpected: true };
    // 5xx other than unavailable are our bugs or config problems: the message may name files or
    // internals, so the client gets a generic one.
    const exposeMessage = err.status < 500 || err.status === 503;
    const b = body(exposeMessage ? err.code : status === 500 ? 'internal_error' : err.code, exposeMessage ? err.message : 'internal error');
    // The one error whose details are part of its contract: the collections a user can read.
    if (err instanceof CollectionNotFoundError) Object.assign(b.error, { collections: err.details?.['collections'] ?? [] });
    return {
      status,
      body: b,
      retryAfterSeconds,
      unexpected: !exposeMessage,
    };
  }
  if (isBodyParserError(err)) {
    switch (err.type) {
      case 'entity.parse.failed':
        return { status: 400, body: body('invalid_json', 'request body is not valid JSON'), retryAfterSeconds: undefined, unexpected: false };
      case 'entity.too.large':
        return { status: 413, body: body('payload_too_large', 'request body is over the size limit'), retryAfterSeconds: undefined, unexpected: false };
      case 'charset.unsupported':
      case 'encoding.unsupported':
        return { status: 415, body: body('unsupported_media_type', 'unsupported charset or content encoding'), retryAfterSeconds: undefined, unexpected: false };
      case 'request.aborted':
        return { status: 400, body: body('request_aborted', 'request body was not received completely'), retryAfterSeconds: undefined, unexpected: false };
      default:
        if (err.status && err.status >= 400 && err.status < 500) {
          return { status: err.status, body: body('invalid_request', 'malformed request body'), retryAfterSeconds: undefined, unexpected: false };
        }
    }
  }
  // Express decodes route parameters with decodeURIComponent; a bad %-sequence is the client's fault.
  if (err instanceof URIError) {
    return { status: 400, body: body('invalid_request', 'the URL contains malformed percent-encoding'), retryAfterSeconds: undefined, unexpected: false };
  }
  // body-parser wraps stream errors (zlib: corrupt gzip/deflate/br data) as http-errors with a 4xx
  // status and `expose: true` but no `type`.
  if (isClientHttpError(err)) {
    return { status: 400, body: body('invalid_body', 'request body could not be read or decompressed'), retryAfterSeconds: undefined, unexpected: false };
  }
  return { status: 500, body: body('internal_error', 'internal error'), retryAfterSeconds: undefined, unexpected: true };
}

/** An http-errors error (body-parser, raw-body) with a 4xx status meant to be shown. */
function isClientHttpError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { status, expose } = err as { status?: unknown; expose?: unknown };
  return expose === true && typeof status === 'number' && status >= 400 && status < 500;
}

/**
 * Writes `err` as the response. When headers were already sent (a stream in progress) it only ends
 * the response: stream routes report mid-stream errors themselves (SSE `error` event).
 */
export function sendError(res: Response, err: unknown, logger?: Logger): HttpError {
  const mapped = toHttpError(err);
  if (mapped.unexpected) logger?.error('request failed', { error: describeError(err) });
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return mapped;
  }
  if (mapped.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(mapped.retryAfterSeconds));
  res.status(mapped.status).json(mapped.body);
  return mapped;
}

/** Express error middleware (register last). */
export function errorHandler(logger?: Logger): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    sendError(res, err, logger);
  };
}

/** Message + cause chain + stack for the server log (never for clients). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  let out = err.stack ?? `${err.name}: ${err.message}`;
  let cause: unknown = err.cause;
  for (let depth = 0; cause !== undefined && depth < 5; depth++) {
    out += `\ncaused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return out;
}

/**
 * Validates a JSON request body with `schema`.
 * @throws ValidationError naming the first bad field (`message: expected string`), or saying the
 * body is missing when it was not JSON at all.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (body === undefined) throw new ValidationError('expected a JSON body (Content-Type: application/json)');
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ValidationError('the JSON body must be an object');
  const res = schema.safeParse(body);
  if (!res.success) {
    const issue = res.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'body';
    throw new ValidationError(`${where}: ${issue?.message ?? 'invalid'}`, { cause: res.error });
  }
  return res.data;
}
