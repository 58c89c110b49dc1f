import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  AuthError,
  CancelledError,
  ConfigError,
  InternalError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitError,
  UnavailableError,
  UpstreamError,
  UpstreamTimeoutError,
  ValidationError,
} from '../../../src/core/errors.ts';
import { UPSTREAM_MESSAGES, parseBody, toHttpError } from '../../../src/chat/http/errors.ts';

describe('toHttpError (the one error → HTTP mapping)', () => {
  it('maps typed errors to their status and code with their message', () => {
    const cases: Array<[Error, number, string]> = [
      [new ValidationError('message: bad'), 400, 'invalid_request'],
      [new AuthError(), 401, 'unauthorized'],
      [new NotFoundError('no conversation x'), 404, 'not_found'],
      [new PayloadTooLargeError('too big'), 413, 'payload_too_large'],
      [new CancelledError(), 499, 'cancelled'],
    ];
    for (const [err, status, code] of cases) {
      const m = toHttpError(err);
      expect(m.status, code).toBe(status);
      expect(m.body).toEqual({ error: { code, message: err.message } });
      expect(m.retryAfterSeconds).toBeUndefined();
    }
  });

  it('upstream LLM errors keep their code but show a generic message (the text is logged)', () => {
    const down = toHttpError(new UpstreamError('HTTP 500 from http://10.0.0.5:8000/v1: CUDA out of memory at /opt/models/x.gguf'));
    expect(down).toEqual({ status: 502, body: { error: { code: 'upstream_error', message: UPSTREAM_MESSAGES[502] } }, retryAfterSeconds: undefined, unexpected: true });
    const slow = toHttpError(new UpstreamTimeoutError('no answer from http://10.0.0.5:8000 in 120000 ms'));
    expect(slow.body).toEqual({ error: { code: 'upstream_timeout', message: UPSTREAM_MESSAGES[504] } });
  });

  it('adds Retry-After to 429 and 503', () => {
    expect(toHttpError(new RateLimitError(7))).toMatchObject({ status: 429, retryAfterSeconds: 7 });
    expect(toHttpError(new UnavailableError('queue_full', 'full', 3))).toMatchObject({ status: 503, retryAfterSeconds: 3, body: { error: { code: 'queue_full' } } });
    expect(toHttpError(new UnavailableError('model_loading', 'loading', 0.2)).retryAfterSeconds).toBe(1);
  });

  it('hides internals: 500s and unknown errors get a generic message', () => {
    const secret = new ConfigError('cannot open /home/me/secret/db');
    expect(toHttpError(secret)).toEqual({ status: 500, body: { error: { code: 'internal_error', message: 'internal error' } }, retryAfterSeconds: undefined, unexpected: true });
    expect(toHttpError(new InternalError('boom at x.ts:3')).body.error.message).toBe('internal error');
    const plain = toHttpError(new TypeError("Cannot read properties of undefined (reading 'x')"));
    expect(plain.status).toBe(500);
    expect(JSON.stringify(plain.body)).not.toContain('Cannot read');
    expect(toHttpError('a string').status).toBe(500);
  });

  it('maps body-parser failures: malformed JSON 400, too large 413', () => {
    expect(toHttpError(Object.assign(new SyntaxError('Unexpected end'), { type: 'entity.parse.failed', status: 400 }))).toMatchObject({
      status: 400,
      body: { error: { code: 'invalid_json' } },
    });
    expect(toHttpError(Object.assign(new Error('request entity too large'), { type: 'entity.too.large', status: 413 }))).toMatchObject({
      status: 413,
      body: { error: { code: 'payload_too_large' } },
    });
    expect(toHttpError(Object.assign(new Error('x'), { type: 'charset.unsupported', status: 415 })).status).toBe(415);
  });
});

describe('parseBody', () => {
  const schema = z.object({ message: z.string(), n: z.number().optional() }).strict();
  it('names the offending field', () => {
    expect(() => parseBody(schema, { message: 1 })).toThrow(/^message: /);
    expect(() => parseBody(schema, { message: 'x', extra: 1 })).toThrow(ValidationError);
    expect(() => parseBody(schema, undefined)).toThrow(/Content-Type: application\/json/);
    expect(() => parseBody(schema, [1])).toThrow(/must be an object/);
    expect(parseBody(schema, { message: 'x' })).toEqual({ message: 'x' });
  });
});
