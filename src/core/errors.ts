/**
 * Typed errors. Every error mneme raises on purpose is a MnemeError with a stable `code` and an HTTP
 * `status`; the HTTP layer maps them in one place (src/chat/http/errors.ts) and the CLI prints
 * `message` and exits non-zero. Never branch on message text: branch on the class or `code`.
 */
export class MnemeError extends Error {
  /** Stable machine-readable code, e.g. "invalid_request". */
  readonly code: string;
  /** HTTP status this error maps to. */
  readonly status: number;
  /** Extra fields safe to show a client (never secrets, never stack traces). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: string,
    status: number,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = options?.details;
  }
}

type Opts = { cause?: unknown; details?: Record<string, unknown> };

/** 400: a request, CLI argument, env variable or prompt variable failed validation. */
export class ValidationError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('invalid_request', 400, message, options);
  }
}

/** Invalid configuration (env or flags); the message names the variable. */
export class ConfigError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('invalid_config', 500, message, options);
  }
}

/** 401: missing, malformed, unknown or revoked API key. */
export class AuthError extends MnemeError {
  constructor(message = 'missing or invalid API key', options?: Opts) {
    super('unauthorized', 401, message, options);
  }
}

/** 403: authenticated but not allowed (e.g. admin route with a user key). */
export class ForbiddenError extends MnemeError {
  constructor(message = 'forbidden', options?: Opts) {
    super('forbidden', 403, message, options);
  }
}

/** 404: unknown id, or an id that belongs to another user (never reveal which). */
export class NotFoundError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('not_found', 404, message, options);
  }
}

/**
 * 404 `collection_not_found`: a chat request named a collection that holds no live document.
 * `details.collections` lists the collections the user can read (shown to the client).
 */
export class CollectionNotFoundError extends MnemeError {
  constructor(collection: string, collections: Array<{ name: string; documents: number }>, options?: Opts) {
    super('collection_not_found', 404, `no collection "${collection}"`, { ...options, details: { ...options?.details, collections } });
  }
}

/** 409: a conflicting state, e.g. another ingestion holds the data dir lock. */
export class ConflictError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('conflict', 409, message, options);
  }
}

/** 413: request body or message over its limit. */
export class PayloadTooLargeError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('payload_too_large', 413, message, options);
  }
}

/** 429: per-key rate limit hit. `retryAfterSeconds` goes into Retry-After. */
export class RateLimitError extends MnemeError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number, options?: Opts) {
    super('rate_limited', 429, `rate limit exceeded; retry in ${retryAfterSeconds}s`, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** 503: generation queue full, or the model is still loading / failed. */
export class UnavailableError extends MnemeError {
  readonly retryAfterSeconds: number;
  constructor(code: 'queue_full' | 'model_loading' | 'model_failed' | 'shutting_down' | 'database_busy', message: string, retryAfterSeconds = 1, options?: Opts) {
    super(code, 503, message, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** 502: an upstream LLM server failed or answered garbage. */
export class UpstreamError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('upstream_error', 502, message, options);
  }
}

/** 504: an upstream LLM server did not answer in time. */
export class UpstreamTimeoutError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('upstream_timeout', 504, message, options);
  }
}

/** A model (embedding or chat) could not be loaded; the message names the path or hub id. */
export class ModelLoadError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('model_load_failed', 500, message, options);
  }
}

/** Generation was cancelled (client went away, shutdown). */
export class CancelledError extends MnemeError {
  constructor(message = 'cancelled', options?: Opts) {
    super('cancelled', 499, message, options);
  }
}

/** The prompt + answer budget does not fit the model's context window. */
export class ContextOverflowError extends MnemeError {
  constructor(message: string, options?: Opts) {
    super('context_overflow', 400, message, options);
  }
}

/** Why a file could not be ingested; stable codes for the JSON summary and tests. */
export type LoadFailureCode =
  | 'binary'
  | 'empty'
  | 'too_large'
  | 'undecodable'
  | 'unreadable'
  | 'unsupported'
  | 'parse_error';

/**
 * One file that could not be ingested. Not fatal to the run: the pipeline lists it as failed with
 * `reason` and goes on.
 */
export class LoaderError extends MnemeError {
  readonly reason: LoadFailureCode;
  constructor(reason: LoadFailureCode, message: string, options?: Opts) {
    super(`load_${reason}`, 422, message, options);
    this.reason = reason;
  }
}

/** Unexpected internal failure wrapper: keeps the cause, shows the client only a generic message. */
export class InternalError extends MnemeError {
  constructor(message = 'internal error', options?: Opts) {
    super('internal_error', 500, message, options);
  }
}
