/**
 * Bearer-key authentication. Every route except /healthz runs `authenticate`: it reads
 * `Authorization: Bearer <key>`, looks the sha256 of the key up among live users and puts the user on
 * `res.locals.user`. A missing, malformed, unknown, revoked or deleted key is a 401 (the same answer
 * for all of them, so the API never tells which keys exist). `requireAdmin` then 403s non-admins.
 *
 * Last use of a key (`api_keys.last_used_at`): recorded without a write per request. KeyUseRecorder
 * remembers, per key, when it last wrote; a use less than KEY_USE_WRITE_INTERVAL_MS (1 min) after
 * that is not written at all, and the others are batched and written in one statement after the
 * request was let through (setImmediate, never awaited by the request; a failed write is logged and
 * dropped). So last_used_at is accurate to about a minute, each server process writes at most once a
 * minute per key, and replicas each keep their own throttle.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { Store } from '../../core/store/index.ts';
import { AuthError, ForbiddenError, InternalError, RateLimitError } from '../../core/errors.ts';
import type { TokenBucketLimiter } from '../rate-limit.ts';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import type { User } from '../users.ts';
import { authenticateApiKey } from '../users.ts';

/** A key's last_used_at is written at most this often per server process, in ms (1 min). */
export const KEY_USE_WRITE_INTERVAL_MS = 60_000;
/** Keys remembered by the throttle before entries older than the interval are dropped. */
const KEY_USE_MEMORY_MAX = 10_000;

/** Throttled, batched, off-the-request-path writes of keys' last use (see the module comment). */
export class KeyUseRecorder {
  private readonly lastWritten = new Map<number, number>();
  private pending = new Map<number, string>();
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();

  /**
   * @param intervalMs shortest time between two writes for one key, in ms. Default KEY_USE_WRITE_INTERVAL_MS.
   * @param now clock in ms (tests).
   */
  constructor(
    private readonly store: Pick<Store, 'users'>,
    private readonly o: { intervalMs?: number; now?: () => number; logger?: Logger } = {},
  ) {}

  /** Notes that `keyId` was used now. Never waits and never throws. */
  used(keyId: number): void {
    const t = (this.o.now ?? Date.now)();
    const last = this.lastWritten.get(keyId);
    if (last !== undefined && t - last < (this.o.intervalMs ?? KEY_USE_WRITE_INTERVAL_MS)) return;
    if (this.lastWritten.size >= KEY_USE_MEMORY_MAX) this.forgetOld(t);
    this.lastWritten.set(keyId, t);
    this.pending.set(keyId, new Date(t).toISOString());
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Writes the uses noted so far (one statement); resolves when written or failed (logged). */
  async flush(): Promise<void> {
    const uses = [...this.pending].map(([keyId, at]) => ({ keyId, at }));
    this.pending = new Map();
    if (uses.length > 0) {
      this.writing = this.writing.then(() =>
        this.store.users.recordKeyUse(uses).catch((err: unknown) => {
          (this.o.logger ?? silentLogger).warn('recording API key use failed', { keys: uses.length, error: (err as Error).message });
        }),
      );
    }
    await this.writing;
  }

  private forgetOld(t: number): void {
    for (const [id, at] of this.lastWritten) if (t - at >= (this.o.intervalMs ?? KEY_USE_WRITE_INTERVAL_MS)) this.lastWritten.delete(id);
  }
}

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
export function authenticate(store: Pick<Store, 'users'>, failures?: TokenBucketLimiter, keyUse: KeyUseRecorder = new KeyUseRecorder(store)): RequestHandler {
  return async (req, res, next) => {
    const ipKey = clientIpKey(req);
    const left = failures?.peek(ipKey);
    if (left && !left.ok) {
      next(new RateLimitError(left.retryAfterSeconds));
      return;
    }
    const key = parseBearer(req.get('authorization'));
    const found = key ? await authenticateApiKey(store, key) : null;
    if (!found) {
      failures?.take(ipKey);
      res.setHeader('WWW-Authenticate', 'Bearer realm="mneme"');
      next(new AuthError());
      return;
    }
    res.locals.user = found.user;
    res.locals.keyId = found.keyId;
    keyUse.used(found.keyId);
    next();
  };
}

/** The id of the API key this request authenticated with, or null (no `authenticate` on the route). */
export function currentKeyId(res: Response): number | null {
  return typeof res.locals.keyId === 'number' ? res.locals.keyId : null;
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
