/**
 * People and named keys over HTTP (issue 14, item 5): an admin creates a user (the key shown once),
 * lists users with their keys (prefixes, never keys or hashes), adds, rotates and revokes named keys
 * and deletes a user; a user manages their own keys under /v1/me/keys; last_used_at is recorded
 * once per minute per key, not per request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usersCommand } from '../../src/commands/users.ts';
import type { TestServer } from './http-helpers.ts';
import { authHeaders, bufferIo, postJson, startTestServer, tempDir, testEnv, waitFor } from './http-helpers.ts';

describe('people and named keys over HTTP', () => {
  let srv: TestServer;
  let admin: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    env = testEnv(tempDir());
    srv = await startTestServer(env);
    admin = await srv.key('root', true);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  const get = async (path: string, key: string) => {
    const r = await fetch(`${srv.url}${path}`, { headers: authHeaders(key) });
    return { status: r.status, body: r.status === 204 ? null : await r.json() };
  };
  const del = async (path: string, key: string) => {
    const r = await fetch(`${srv.url}${path}`, { method: 'DELETE', headers: authHeaders(key) });
    return { status: r.status, body: r.status === 204 ? null : await r.json() };
  };
  const works = async (key: string) => (await fetch(`${srv.url}/v1/me/keys`, { headers: authHeaders(key) })).status;

  it('an admin creates a user: 201 with the key once; the listing shows prefixes, never keys or hashes; 409 for a taken name', async () => {
    const r = await postJson(`${srv.url}/v1/admin/users`, admin, { name: 'alice', key_name: 'laptop' });
    expect(r.status).toBe(201);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.body).toMatchObject({ user: { name: 'alice', admin: false }, key: { name: 'laptop', revoked_at: null, last_used_at: null }, api_key: expect.stringMatching(/^mn_/) });
    expect(r.body.api_key.startsWith(r.body.key.prefix)).toBe(true);
    expect(await works(r.body.api_key)).toBe(200);
    const list = await get('/v1/admin/users', admin);
    expect(list.status).toBe(200);
    const alice = list.body.data.find((u: { name: string }) => u.name === 'alice');
    expect(alice.keys).toEqual([{ id: r.body.key.id, name: 'laptop', prefix: r.body.key.prefix, created_at: expect.any(String), last_used_at: expect.anything(), revoked_at: null }]);
    const text = JSON.stringify(list.body);
    expect(text).not.toContain(r.body.api_key);
    const hash = (srv.db.prepare('SELECT key_hash FROM api_keys WHERE id = ?').get(r.body.key.id) as { key_hash: string }).key_hash;
    expect(text).not.toContain(hash);
    expect(JSON.stringify(srv.db.prepare('SELECT * FROM api_keys').all())).not.toContain(r.body.api_key);
    expect((await postJson(`${srv.url}/v1/admin/users`, admin, { name: 'alice' })).status).toBe(409);
    expect((await postJson(`${srv.url}/v1/admin/users`, admin, { name: '../x' })).status).toBe(400);
    expect((await postJson(`${srv.url}/v1/admin/users`, admin, { name: 'zed', key_name: ' padded' })).status).toBe(400);
  });

  it('non-admins get 403 on every admin people route', async () => {
    const bob = await srv.key('bob');
    expect((await get('/v1/admin/users', bob)).status).toBe(403);
    expect((await postJson(`${srv.url}/v1/admin/users`, bob, { name: 'mallory', admin: true })).status).toBe(403);
    expect((await del('/v1/admin/users/root', bob)).status).toBe(403);
    expect((await postJson(`${srv.url}/v1/admin/users/bob/keys`, bob, { name: 'x' })).status).toBe(403);
  });

  it('named keys: add (409 on a live name), rotate (old key 401, new key works, same name), revoke (401; again 404)', async () => {
    const created = await postJson(`${srv.url}/v1/admin/users`, admin, { name: 'carol' });
    const first = created.body.api_key as string;
    expect(created.body.key.name).toBe('default');
    const ci = await postJson(`${srv.url}/v1/admin/users/carol/keys`, admin, { name: 'ci' });
    expect(ci.status).toBe(201);
    expect(await works(ci.body.api_key)).toBe(200);
    expect((await postJson(`${srv.url}/v1/admin/users/carol/keys`, admin, { name: 'ci' })).status).toBe(409);
    expect((await postJson(`${srv.url}/v1/admin/users/nobody/keys`, admin, { name: 'ci' })).status).toBe(404);

    const rot = await postJson(`${srv.url}/v1/admin/users/carol/keys/${created.body.key.id}/rotate`, admin, {});
    expect(rot.status).toBe(201);
    expect(rot.body).toMatchObject({ key: { name: 'default', revoked_at: null }, revoked: { id: created.body.key.id, revoked_at: expect.any(String) } });
    expect(await works(first)).toBe(401);
    expect(await works(rot.body.api_key)).toBe(200);
    expect(await works(ci.body.api_key)).toBe(200);
    // A key id of carol's under another user's name is not found.
    expect((await del(`/v1/admin/users/bob/keys/${ci.body.key.id}`, admin)).status).toBe(404);
    expect((await del(`/v1/admin/users/carol/keys/${ci.body.key.id}`, admin)).status).toBe(204);
    expect(await works(ci.body.api_key)).toBe(401);
    expect((await del(`/v1/admin/users/carol/keys/${ci.body.key.id}`, admin)).status).toBe(404);
    expect((await del('/v1/admin/users/carol/keys/abc', admin)).status).toBe(404);
    const carol = (await get('/v1/admin/users', admin)).body.data.find((u: { name: string }) => u.name === 'carol');
    expect(carol.keys.map((k: { name: string; revoked_at: string | null }) => [k.name, k.revoked_at !== null])).toEqual([['default', true], ['ci', true], ['default', false]]);
  });

  it('a user lists, creates, rotates and revokes their own keys under /v1/me/keys, and cannot touch anyone else\'s', async () => {
    const dan = await srv.key('dan');
    const eve = await srv.key('eve');
    const mine = await get('/v1/me/keys', dan);
    expect(mine.body.data).toEqual([expect.objectContaining({ name: 'default', current: true })]);
    const phone = await postJson(`${srv.url}/v1/me/keys`, dan, { name: 'phone' });
    expect(phone.status).toBe(201);
    expect(await works(phone.body.api_key)).toBe(200);
    const seen = await get('/v1/me/keys', phone.body.api_key);
    expect(seen.body.data.map((k: { name: string; current: boolean }) => [k.name, k.current])).toEqual([['default', false], ['phone', true]]);
    // eve cannot revoke or rotate dan's key: 404, and the key still works.
    expect((await del(`/v1/me/keys/${phone.body.key.id}`, eve)).status).toBe(404);
    expect((await postJson(`${srv.url}/v1/me/keys/${phone.body.key.id}/rotate`, eve, {})).status).toBe(404);
    expect(await works(phone.body.api_key)).toBe(200);
    const rot = await postJson(`${srv.url}/v1/me/keys/${phone.body.key.id}/rotate`, dan, {});
    expect(rot.status).toBe(201);
    expect(await works(phone.body.api_key)).toBe(401);
    expect((await del(`/v1/me/keys/${rot.body.key.id}`, dan)).status).toBe(204);
    expect(await works(rot.body.api_key)).toBe(401);
    expect(await works(dan)).toBe(200);
    expect((await postJson(`${srv.url}/v1/me/keys`, dan, { name: '' })).status).toBe(400);
  });

  it('last_used_at is written after a use, and not again by uses within the minute', async () => {
    const r = await postJson(`${srv.url}/v1/admin/users`, admin, { name: 'fay' });
    const id = r.body.key.id as number;
    const lastUsed = () => (srv.db.prepare('SELECT last_used_at FROM api_keys WHERE id = ?').get(id) as { last_used_at: string | null }).last_used_at;
    expect(lastUsed()).toBeNull();
    const before = new Date().toISOString();
    expect(await works(r.body.api_key)).toBe(200);
    await waitFor(() => lastUsed() !== null, 5000, 'last_used_at written');
    const first = lastUsed()!;
    expect(first >= before.slice(0, 19)).toBe(true);
    for (let i = 0; i < 5; i++) expect(await works(r.body.api_key)).toBe(200);
    await new Promise((res) => setTimeout(res, 100));
    expect(lastUsed()).toBe(first);
  });

  it('an admin deletes a user (erasure: key 401, rows gone); 404 for nobody, 409 for themselves', async () => {
    const r = await postJson(`${srv.url}/v1/admin/users`, admin, { name: 'gus' });
    await postJson(`${srv.url}/v1/admin/users/gus/keys`, admin, { name: 'second' });
    const d = await del('/v1/admin/users/gus', admin);
    expect(d.status).toBe(200);
    expect(d.body).toMatchObject({ deleted: true, user: 'gus', erased: { users: 1, api_keys: 2 } });
    expect(await works(r.body.api_key)).toBe(401);
    expect(srv.db.prepare('SELECT count(*) AS n FROM api_keys WHERE user_id = ?').get(r.body.user.id)).toEqual({ n: 0 });
    expect((await del('/v1/admin/users/gus', admin)).status).toBe(404);
    expect((await del('/v1/admin/users/root', admin)).status).toBe(409);
    expect(await works(admin)).toBe(200);
  });

  it('CLI: users keys create|list|rotate|revoke on the server\'s database; users create --key-name; the old CLI contracts hold', async () => {
    const cli = async (args: string[]) => {
      const io = bufferIo(env);
      const code = await usersCommand.run(args, io).catch((e: Error) => {
        io.stderr.write(e.message);
        return -1;
      });
      return { code, out: io.out(), err: io.err() };
    };
    const made = await cli(['create', '--name', 'hal', '--key-name', 'desktop', '--json']);
    expect(made.code).toBe(0);
    const created = JSON.parse(made.out.trim()) as { name: string; api_key: string; admin: boolean };
    expect(created).toEqual({ name: 'hal', api_key: expect.stringMatching(/^mn_/), admin: false });
    const add = await cli(['keys', 'create', '--name', 'hal', '--key-name', 'ci', '--json']);
    expect(add.code).toBe(0);
    const ci = JSON.parse(add.out.trim()) as { key: { id: number; name: string }; api_key: string };
    expect(ci.key.name).toBe('ci');
    expect(await works(ci.api_key)).toBe(200);
    const list = JSON.parse((await cli(['keys', 'list', '--name', 'hal', '--json'])).out.trim()) as Array<{ name: string; prefix: string }>;
    expect(list.map((k) => k.name)).toEqual(['desktop', 'ci']);
    expect(JSON.stringify(list)).not.toContain(ci.api_key);
    const rot = await cli(['keys', 'rotate', '--name', 'hal', '--key-id', String(ci.key.id)]);
    expect(rot.code).toBe(0);
    expect(rot.out).toMatch(/API key \(shown once[^)]*\): mn_/);
    expect(await works(ci.api_key)).toBe(401);
    const fresh = /: (mn_\S+)/.exec(rot.out)![1]!;
    expect(await works(fresh)).toBe(200);
    const newId = (JSON.parse((await cli(['keys', 'list', '--name', 'hal', '--json'])).out.trim()) as Array<{ id: number; revoked_at: string | null }>).at(-1)!.id;
    expect((await cli(['keys', 'revoke', '--name', 'hal', '--key-id', String(newId)])).code).toBe(0);
    expect(await works(fresh)).toBe(401);
    expect(await works(created.api_key)).toBe(200);
    expect((await cli(['keys', 'revoke', '--name', 'hal', '--key-id', String(newId)])).code).not.toBe(0);
    expect((await cli(['keys', 'create', '--name', 'hal'])).code).not.toBe(0);
    const users = JSON.parse((await cli(['list', '--json'])).out.trim()) as Array<{ name: string; key_prefix: string }>;
    expect(users.find((u) => u.name === 'hal')).toMatchObject({ key_prefix: created.api_key.slice(0, 10) });
  });
});
