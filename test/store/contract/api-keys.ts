/**
 * The contract of named API keys (issue 14, item 5; 095_api_keys.sql), run against every engine from
 * test/store/engines.test.ts: a user's first key, more named keys, revoke and rotate one key without
 * touching the others, last use recorded as the later time, and keys gone with their user.
 */
import { expect, it } from 'vitest';
import { ConflictError, NotFoundError } from '../../../src/core/errors.ts';
import type { Store } from '../../../src/core/store/index.ts';

export interface ApiKeyEngineUnderTest {
  name: string;
  make(): Promise<Store>;
}

const T = (s: number) => new Date(Date.parse('2025-05-01T10:00:00.000Z') + s * 1000).toISOString();
const hash = (s: string) => s.padEnd(64, '0');

async function user(s: Store, name: string, keyName?: string) {
  return s.users.create({ name, apiKeyHash: hash(`a${name}`), keyPrefix: `mn_${name}`, isAdmin: false, createdAt: T(0), keyName });
}

export function apiKeyContract(engine: ApiKeyEngineUnderTest): void {
  const withStore = async (fn: (s: Store) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('create stores the first key (named "default" unless given); findByKeyHash names the key', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben', 'laptop');
      const [annKey] = await s.users.keys(ann.id);
      expect(await s.users.keys(ann.id)).toEqual([{ id: annKey!.id, userId: ann.id, name: 'default', keyPrefix: 'mn_ann', createdAt: T(0), lastUsedAt: null, revokedAt: null }]);
      expect((await s.users.keys(ben.id)).map((k) => k.name)).toEqual(['laptop']);
      const found = await s.users.findByKeyHash(hash('aann'));
      expect(found).toMatchObject({ user: { id: ann.id, name: 'ann' }, apiKeyHash: hash('aann'), keyId: annKey!.id });
    }));

  it('addKey: a second named key authenticates too; a taken live name is a ConflictError; no live user is a NotFoundError', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      const ci = await s.users.addKey({ userId: ann.id, name: 'ci', keyHash: hash('ci'), keyPrefix: 'mn_ci', createdAt: T(5) });
      expect(ci).toMatchObject({ userId: ann.id, name: 'ci', keyPrefix: 'mn_ci', createdAt: T(5), lastUsedAt: null, revokedAt: null });
      expect(await s.users.findByKeyHash(hash('ci'))).toMatchObject({ user: { name: 'ann' }, keyId: ci.id });
      expect(await s.users.findByKeyHash(hash('aann'))).toMatchObject({ user: { name: 'ann' } });
      await expect(s.users.addKey({ userId: ann.id, name: 'ci', keyHash: hash('ci2'), keyPrefix: 'x', createdAt: T(6) })).rejects.toBeInstanceOf(ConflictError);
      // Another user may use the same name.
      await s.users.addKey({ userId: ben.id, name: 'ci', keyHash: hash('bci'), keyPrefix: 'x', createdAt: T(6) });
      await expect(s.users.addKey({ userId: 999_999, name: 'x', keyHash: hash('nouser'), keyPrefix: 'x', createdAt: T(6) })).rejects.toBeInstanceOf(NotFoundError);
      await s.users.revoke(ben.id, T(7));
      await expect(s.users.addKey({ userId: ben.id, name: 'y', keyHash: hash('revoked'), keyPrefix: 'x', createdAt: T(8) })).rejects.toBeInstanceOf(NotFoundError);
      // keys() without a user: every live user's keys, by user then id (ben is revoked).
      expect((await s.users.keys()).map((k) => [k.userId, k.name])).toEqual([[ann.id, 'default'], [ann.id, 'ci']]);
    }));

  it('revokeKey stops that key only; a second revoke, another user\'s key or an unknown id is false; the name can be reused', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      const ci = await s.users.addKey({ userId: ann.id, name: 'ci', keyHash: hash('ci'), keyPrefix: 'mn_ci', createdAt: T(5) });
      expect(await s.users.revokeKey(ben.id, ci.id, T(9))).toBe(false);
      expect(await s.users.revokeKey(ann.id, ci.id, T(10))).toBe(true);
      expect(await s.users.revokeKey(ann.id, ci.id, T(11))).toBe(false);
      expect(await s.users.revokeKey(ann.id, 987_654, T(11))).toBe(false);
      expect(await s.users.findByKeyHash(hash('ci'))).toBeNull();
      expect(await s.users.findByKeyHash(hash('aann'))).not.toBeNull();
      expect((await s.users.keys(ann.id)).find((k) => k.id === ci.id)).toMatchObject({ revokedAt: T(10) });
      const again = await s.users.addKey({ userId: ann.id, name: 'ci', keyHash: hash('ci-2'), keyPrefix: 'mn_ci2', createdAt: T(12) });
      expect(again.id).toBeGreaterThan(ci.id);
    }));

  it('rotateKey revokes the old key and stores a new one of the same name, at once; null for a revoked or foreign key', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      const [old] = await s.users.keys(ann.id);
      expect(await s.users.rotateKey(ben.id, old!.id, { keyHash: hash('nope'), keyPrefix: 'x', at: T(20) })).toBeNull();
      const r = await s.users.rotateKey(ann.id, old!.id, { keyHash: hash('rotated'), keyPrefix: 'mn_rot', at: T(20) });
      expect(r!.revoked).toMatchObject({ id: old!.id, name: 'default', revokedAt: T(20) });
      expect(r!.key).toMatchObject({ userId: ann.id, name: 'default', keyPrefix: 'mn_rot', createdAt: T(20), revokedAt: null });
      expect(await s.users.findByKeyHash(hash('aann'))).toBeNull();
      expect(await s.users.findByKeyHash(hash('rotated'))).toMatchObject({ user: { name: 'ann' }, keyId: r!.key.id });
      expect(await s.users.rotateKey(ann.id, old!.id, { keyHash: hash('twice'), keyPrefix: 'x', at: T(21) })).toBeNull();
      expect(await s.users.findByKeyHash(hash('twice'))).toBeNull();
      expect((await s.users.keys(ann.id)).map((k) => [k.name, k.revokedAt])).toEqual([['default', T(20)], ['default', null]]);
    }));

  it('recordKeyUse keeps the later time per key, in one call for several keys; unknown ids are ignored', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      const [a] = await s.users.keys(ann.id);
      const [b] = await s.users.keys(ben.id);
      await s.users.recordKeyUse([]);
      await s.users.recordKeyUse([{ keyId: a!.id, at: T(30) }, { keyId: b!.id, at: T(31) }, { keyId: 424_242, at: T(31) }]);
      await s.users.recordKeyUse([{ keyId: a!.id, at: T(25) }]);
      expect((await s.users.keys(ann.id))[0]!.lastUsedAt).toBe(T(30));
      expect((await s.users.keys(ben.id))[0]!.lastUsedAt).toBe(T(31));
      await s.users.recordKeyUse([{ keyId: a!.id, at: T(40) }]);
      expect((await s.users.keys(ann.id))[0]!.lastUsedAt).toBe(T(40));
    }));

  it('a revoked user\'s keys all stop; erasing the user erases their keys (counted)', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      await s.users.addKey({ userId: ann.id, name: 'ci', keyHash: hash('ci'), keyPrefix: 'mn_ci', createdAt: T(5) });
      expect(await s.users.revoke(ann.id, T(6))).toBe(true);
      expect(await s.users.findByKeyHash(hash('ci'))).toBeNull();
      expect(await s.users.findByKeyHash(hash('aann'))).toBeNull();
      expect(await s.users.userDataTables()).toContain('api_keys');
      expect(await s.users.erase(ann.id)).toMatchObject({ api_keys: 2, users: 1 });
      expect(await s.users.keys(ann.id)).toEqual([]);
      expect(await s.users.findByKeyHash(hash('aben'))).toMatchObject({ user: { name: 'ben' } });
      expect((await s.users.keys()).map((k) => k.userId)).toEqual([ben.id]);
    }));
}
