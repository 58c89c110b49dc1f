/**
 * Bearer-key authentication. Every route except /healthz runs `authenticate`: it reads
 * `Authorization: Bearer <key>`, looks the sha256 of the key up among live users and puts the user on
 * `res.locals.user`. A missing, malformed, unknown, revoked or deleted key is a 401 (the same answer
 * for all of them, so the API never tells which keys exist). `requireAdmin` then 403s non-admins.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { Store } from '../../core/store/index.ts';
import { AuthError, ForbiddenError, InternalError, RateLimitError } from '../../core/errors.ts';
import type { TokenBucketLimiter } from '../rate-limit.ts';
import type { User } from '../users.ts';
import { findUserByApiKey } from '../users.ts';

/** Longest Authorization header value considered, in characters (real keys are ~46). */
const MAX_AUTH_HEADER_CHARS = 512;
const BEARER = /^Bearer[ \t]+([A-Za-z0-9._~+/=-]+)[ \t]*$/i;

/** The key in an Authorization header value, or null. Pure. */
export function parseBearer(header: string | undefined): string | null {
  if (!header || header.length > MAX_AUTH_HEADER_CHARS) return null;
  const m = BEARER.exec(header);
  return m?.[1] ?? null;
}

/** The failed-authentication limiter's key for the client of `req`: `ip:<TCP peer address>`. */
export function clientIpKey(req: Request): string {
  return `ip:${req.ip ?? req.socket.remoteAddress ?? 'unknown'}`;
}

/**
 * Middleware: authenticates the request or fails it with AuthError (401). Async (Express 5 passes a
 * rejected promise to the error handler); a store failure reaches the error handler too.
 *
 * With `failures` (a limiter keyed by client IP, MNEME_AUTH_FAIL_PER_MIN): every 401 takes a token
 * from the client's bucket, and once it is empty EVERY request from that IP is refused with 429 +
 * Retry-After before its key is even looked at, so keys cannot be guessed faster than the limit
 * (a valid key from the same address waits too). The address is the TCP peer (`req.ip`).
 */
export function authenticate(store: Pick<Store, 'users'>, failures?: TokenBucketLimiter): RequestHandler {
  return async (req, res, next) => {
    const ipKey = clientIpKey(req);
    const left = failures?.peek(ipKey);
    if (left && !left.ok) {
      next(new RateLimitError(left.retryAfterSeconds));
      return;
    }
    const key = parseBearer(req.get('authorization'));
    const user = key ? await findUserByApiKey(store, key) : null;
    if (!user) {
      failures?.take(ipKey);
      res.setHeader('WWW-Authenticate', 'Bearer realm="mneme"');
      next(new AuthError());
      return;
    }
    res.locals.user = user;
    next();
  };
}

/** Middleware (after `authenticate`): ForbiddenError (403) unless the user is an admin. */
export const requireAdmin: RequestHandler = (_req, res, next) => {
  next(currentUser(res).isAdmin ? undefined : new ForbiddenError('this route needs an admin API key'));
};

/**
 * The authenticated user of this request.
 * @throws InternalError when called on a route without `authenticate` (a wiring bug).
 */
export function currentUser(res: Response): User {
  const user = res.locals.user as User | undefined;
  if (!user) throw new InternalError('route used without authentication');
  return user;
}
