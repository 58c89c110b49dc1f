/**
 * People and their named API keys (issue 14, item 5). A key in clear appears in exactly one response:
 * the one that made it (create user, add key, rotate). Listings show the key's prefix, never the key.
 *
 * Admins (`/v1/admin/users…`, 403 for others; `Cache-Control: no-store`):
 * - `GET /v1/admin/users` → `{data: [{id, name, admin, created_at, keys: [KeyView]}]}` (live users,
 *   oldest first; every key of theirs, revoked ones too).
 * - `POST /v1/admin/users` `{name, admin?, key_name?}` → 201 `{user, key, api_key}` (409: name taken).
 * - `DELETE /v1/admin/users/:name` → `{deleted: true, user, erased: {table: rows}}` (the erasure of
 *   DELETE /v1/me; 404: no such user; 409: yourself — use DELETE /v1/me).
 * - `POST /v1/admin/users/:name/keys` `{name}` → 201 `{key, api_key}` (409: a live key of that name).
 * - `POST /v1/admin/users/:name/keys/:id/rotate` → 201 `{key, api_key, revoked}` (the new key takes
 *   the old one's name; the old one is revoked in the same transaction).
 * - `DELETE /v1/admin/users/:name/keys/:id` → 204 (404: no such live key of that user).
 *
 * Every user, for their own keys: `GET /v1/me/keys` → `{data: [KeyView & {current}]}` (`current`:
 * the key of this request), `POST /v1/me/keys` `{name}` → 201 `{key, api_key}`,
 * `POST /v1/me/keys/:id/rotate` → 201 `{key, api_key, revoked}`, `DELETE /v1/me/keys/:id` → 204.
 * Revoking or rotating the key a request came with works; that key is refused (401) from then on.
 *
 * KeyView: `{id, name, prefix, created_at, last_used_at, revoked_at}` (last_used_at accurate to
 * about a minute, see auth.ts).
 */
import { Router } from 'express';
import type { Response } from 'express';
import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../../core/errors.ts';
import type { ApiKeyRecord, User, UserWithKeys } from '../../users.ts';
import { createUser, eraseUser, findUserByName, issueApiKey, listUsersWithKeys, revokeApiKey, rotateApiKey } from '../../users.ts';
import { currentKeyId, currentUser, requireAdmin } from '../auth.ts';
import type { AppContext } from '../context.ts';
import { parseBody } from '../errors.ts';

/** A key as the API shows it (never the key). */
export interface KeyView {
  id: number;
  name: string;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export function keyView(k: ApiKeyRecord): KeyView {
  return { id: k.id, name: k.name, prefix: k.keyPrefix, created_at: k.createdAt, last_used_at: k.lastUsedAt, revoked_at: k.revokedAt };
}

function userView(u: User, keys: ApiKeyRecord[] = []): { id: number; name: string; admin: boolean; created_at: string; keys: KeyView[] } {
  return { id: u.id, name: u.name, admin: u.isAdmin, created_at: u.createdAt, keys: keys.map(keyView) };
}

const createUserSchema = z.object({ name: z.string(), admin: z.boolean().default(false), key_name: z.string().optional() }).strict();
const newKeySchema = z.object({ name: z.string() }).strict();

/** A key id path segment. @throws NotFoundError when it is not a positive integer (like an unknown id). */
function keyIdParam(v: unknown): number {
  const id = typeof v === 'string' && /^[1-9]\d{0,15}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(id)) throw new NotFoundError('no such key');
  return id;
}

/** The live user called `name`. @throws NotFoundError. */
async function namedUser(ctx: AppContext, name: unknown): Promise<User> {
  const user = typeof name === 'string' ? await findUserByName(ctx.deps.store, name) : null;
  if (!user) throw new NotFoundError('no such user');
  return user;
}

function noStore(res: Response): void {
  res.setHeader('Cache-Control', 'no-store');
}

/** The routes of one user's own keys, under `/v1/me/keys`. */
function ownKeyRoutes(ctx: AppContext, router: Router): void {
  const { store } = ctx.deps;
  router.get('/v1/me/keys', async (_req, res) => {
    noStore(res);
    const current = currentKeyId(res);
    const keys = await store.users.keys(currentUser(res).id);
    res.json({ data: keys.map((k) => ({ ...keyView(k), current: k.id === current })) });
  });
  router.post('/v1/me/keys', async (req, res) => {
    const b = parseBody(newKeySchema, req.body);
    const { key, apiKey } = await issueApiKey(store, currentUser(res).id, b.name);
    noStore(res);
    res.status(201).json({ key: keyView(key), api_key: apiKey });
  });
  router.post('/v1/me/keys/:id/rotate', async (req, res) => {
    const r = await rotateApiKey(store, currentUser(res).id, keyIdParam(req.params.id));
    noStore(res);
    res.status(201).json({ key: keyView(r.key), api_key: r.apiKey, revoked: keyView(r.revoked) });
  });
  router.delete('/v1/me/keys/:id', async (req, res) => {
    await revokeApiKey(store, currentUser(res).id, keyIdParam(req.params.id));
    res.status(204).end();
  });
}

/** The admin routes of people and their keys, under `/v1/admin/users`. */
function adminPeopleRoutes(ctx: AppContext, router: Router): void {
  const { store } = ctx.deps;
  router.use('/v1/admin/users', requireAdmin, (_req, res, next) => {
    noStore(res);
    next();
  });
  router.get('/v1/admin/users', async (_req, res) => {
    const users: UserWithKeys[] = await listUsersWithKeys(store);
    res.json({ data: users.map((u) => userView(u, u.keys)) });
  });
  router.post('/v1/admin/users', async (req, res) => {
    const b = parseBody(createUserSchema, req.body);
    const { user, apiKey } = await createUser(store, { name: b.name, admin: b.admin, keyName: b.key_name });
    const keys = await store.users.keys(user.id);
    ctx.logger.info('user created', { user_id: user.id, admin: user.isAdmin, by: currentUser(res).id });
    res.status(201).json({ user: userView(user, keys), key: keys[0] ? keyView(keys[0]) : null, api_key: apiKey });
  });
  router.delete('/v1/admin/users/:name', async (req, res) => {
    const user = await namedUser(ctx, req.params.name);
    if (user.id === currentUser(res).id) throw new ConflictError('an admin cannot delete themselves here: use DELETE /v1/me');
    const erased = await eraseUser(store, user.id, ctx.deps.onlineFeatures);
    ctx.logger.info('user erased', { user_id: user.id, by: currentUser(res).id, erased });
    res.json({ deleted: true, user: user.name, erased });
  });
  router.post('/v1/admin/users/:name/keys', async (req, res) => {
    const user = await namedUser(ctx, req.params.name);
    const b = parseBody(newKeySchema, req.body);
    const { key, apiKey } = await issueApiKey(store, user.id, b.name);
    res.status(201).json({ key: keyView(key), api_key: apiKey });
  });
  router.post('/v1/admin/users/:name/keys/:id/rotate', async (req, res) => {
    const user = await namedUser(ctx, req.params.name);
    const r = await rotateApiKey(store, user.id, keyIdParam(req.params.id));
    res.status(201).json({ key: keyView(r.key), api_key: r.apiKey, revoked: keyView(r.revoked) });
  });
  router.delete('/v1/admin/users/:name/keys/:id', async (req, res) => {
    const user = await namedUser(ctx, req.params.name);
    await revokeApiKey(store, user.id, keyIdParam(req.params.id));
    res.status(204).end();
  });
}

export function peopleRoutes(ctx: AppContext): Router {
  const router = Router({ strict: true });
  ownKeyRoutes(ctx, router);
  adminPeopleRoutes(ctx, router);
  return router;
}
