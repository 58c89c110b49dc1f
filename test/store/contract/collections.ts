/**
 * Collections with access control (issue 14, item 4): the CollectionStore rows and the
 * `excludeCollections` scope of every corpus search and listing. One suite run against every
 * engine (test/store/engines.test.ts).
 */
import { expect, it } from 'vitest';
import { ConflictError } from '../../../src/core/errors.ts';
import type { NewChunk, NewDocument } from '../../../src/core/store/corpus.ts';
import type { Store } from '../../../src/core/store/index.ts';

export interface CollectionsEngineUnderTest {
  name: string;
  make(): Promise<Store>;
  /** True when the engine answers searchVector itself (PostgreSQL + pgvector). */
  nativeVectorSearch?: boolean;
}

const AT = '2026-03-01T10:00:00.000Z';
const doc = (collection: string, name: string): NewDocument => ({
  collection, sourceUri: `/srv/${collection}/${name}.md`, title: `${name} title`, contentSha256: `sha-${collection}-${name}`, kind: 'text/markdown', bytes: 10,
});
const chunks = (texts: string[]): NewChunk[] => texts.map((text, ord) => ({ ord, text, headingPath: '', tokenCount: 3, contentSha256: `h-${text}-${ord}` }));
const user = (s: Store, name: string, isAdmin = false) =>
  s.users.create({ name, apiKeyHash: `hash-${name}`, keyPrefix: `mn_${name}`, isAdmin, createdAt: AT });

export function collectionsContract(engine: CollectionsEngineUnderTest): void {
  const withStore = async (fn: (s: Store) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('rows: create (conflict on a second create), get, list with grants by user name, visibility, grant/revoke', async () => {
    await withStore(async (s) => {
      const alice = await user(s, 'alice');
      const bob = await user(s, 'bob');
      expect(await s.collections.get('secret')).toBeNull();
      expect(await s.collections.create({ name: 'secret', visibility: 'private', createdBy: alice.id, createdAt: AT })).toMatchObject({ name: 'secret', grants: [] });
      await expect(s.collections.create({ name: 'secret', visibility: 'public', createdBy: null, createdAt: AT })).rejects.toBeInstanceOf(ConflictError);
      await s.collections.create({ name: 'handbook', visibility: 'public', createdBy: null, createdAt: AT });
      // A grant needs a row; a second grant replaces the first.
      expect(await s.collections.grant('nope', bob.id, false, AT)).toBe(false);
      expect(await s.collections.grant('secret', bob.id, false, AT)).toBe(true);
      expect(await s.collections.grant('secret', alice.id, true, AT)).toBe(true);
      expect(await s.collections.grant('secret', bob.id, true, AT)).toBe(true);
      const got = await s.collections.get('secret');
      expect(got).toEqual({
        name: 'secret', visibility: 'private', createdBy: alice.id, createdAt: AT,
        grants: [
          { userId: alice.id, userName: 'alice', canWrite: true, grantedAt: AT },
          { userId: bob.id, userName: 'bob', canWrite: true, grantedAt: AT },
        ],
        groupGrants: [],
      });
      expect((await s.collections.list()).map((c) => [c.name, c.visibility, c.grants.length])).toEqual([['handbook', 'public', 0], ['secret', 'private', 2]]);
      expect(await s.collections.revoke('secret', bob.id)).toBe(true);
      expect(await s.collections.revoke('secret', bob.id)).toBe(false);
      expect(await s.collections.setVisibility('handbook', 'private')).toBe(true);
      expect(await s.collections.setVisibility('nope', 'private')).toBe(false);
      expect((await s.collections.get('handbook'))?.visibility).toBe('private');
    });
  });

  it('accessOf: private collections without a grant are hidden; grants say whether they allow writing; a revoke shows at once', async () => {
    await withStore(async (s) => {
      const alice = await user(s, 'alice');
      const bob = await user(s, 'bob');
      expect(await s.collections.accessOf(bob.id)).toEqual({ hidden: [], grants: [] });
      await s.collections.create({ name: 'zeta', visibility: 'private', createdBy: alice.id, createdAt: AT });
      await s.collections.create({ name: 'alpha', visibility: 'private', createdBy: alice.id, createdAt: AT });
      await s.collections.create({ name: 'open', visibility: 'public', createdBy: null, createdAt: AT });
      await s.collections.grant('zeta', alice.id, true, AT);
      await s.collections.grant('open', bob.id, true, AT);
      expect(await s.collections.accessOf(bob.id)).toEqual({ hidden: ['alpha', 'zeta'], grants: [{ name: 'open', canWrite: true }] });
      expect(await s.collections.accessOf(alice.id)).toEqual({ hidden: ['alpha'], grants: [{ name: 'zeta', canWrite: true }] });
      await s.collections.grant('alpha', bob.id, false, AT);
      expect((await s.collections.accessOf(bob.id)).hidden).toEqual(['zeta']);
      await s.collections.revoke('alpha', bob.id);
      expect((await s.collections.accessOf(bob.id)).hidden).toEqual(['alpha', 'zeta']);
    });
  });

  it('erasing a user erases their grants; a collection they created stays (created_by cleared)', async () => {
    await withStore(async (s) => {
      const alice = await user(s, 'alice');
      const bob = await user(s, 'bob');
      await s.collections.create({ name: 'secret', visibility: 'private', createdBy: bob.id, createdAt: AT });
      await s.collections.grant('secret', bob.id, true, AT);
      await s.collections.grant('secret', alice.id, false, AT);
      expect(await s.users.userDataTables()).toContain('collection_grants');
      const counts = await s.users.erase(bob.id);
      expect(counts.collection_grants).toBe(1);
      const left = await s.collections.get('secret');
      expect(left).toMatchObject({ visibility: 'private', createdBy: null });
      expect(left?.grants.map((g) => g.userName)).toEqual(['alice']);
    });
  });

  it('groups: members hold the group\'s grants (write wins over read), leaving, revoking or deleting the group takes them away', async () => {
    await withStore(async (s) => {
      const alice = await user(s, 'alice');
      const bob = await user(s, 'bob');
      await s.collections.create({ name: 'secret', visibility: 'private', createdBy: null, createdAt: AT });
      await s.collections.create({ name: 'open', visibility: 'public', createdBy: null, createdAt: AT });
      expect(await s.collections.createGroup('support', AT)).toEqual({ name: 'support', createdAt: AT, members: [], grants: [] });
      await expect(s.collections.createGroup('support', AT)).rejects.toBeInstanceOf(ConflictError);
      await s.collections.createGroup('crew', AT);
      expect(await s.collections.addMember('nope', bob.id, AT)).toBe(false);
      expect(await s.collections.grantGroup('secret', 'nope', false, AT)).toBe(false);
      expect(await s.collections.grantGroup('nope', 'support', false, AT)).toBe(false);
      expect(await s.collections.addMember('support', bob.id, AT)).toBe(true);
      expect(await s.collections.addMember('support', bob.id, AT)).toBe(true);
      expect(await s.collections.addMember('support', alice.id, AT)).toBe(true);
      expect(await s.collections.accessOf(bob.id)).toEqual({ hidden: ['secret'], grants: [] });
      expect(await s.collections.grantGroup('secret', 'support', false, AT)).toBe(true);
      expect(await s.collections.grantGroup('open', 'crew', true, AT)).toBe(true);
      expect(await s.collections.accessOf(bob.id)).toEqual({ hidden: [], grants: [{ name: 'secret', canWrite: false }] });
      // A user grant and a group grant on one collection: one entry, write wins.
      await s.collections.grant('secret', bob.id, true, AT);
      expect(await s.collections.accessOf(bob.id)).toEqual({ hidden: [], grants: [{ name: 'secret', canWrite: true }] });
      await s.collections.revoke('secret', bob.id);
      await s.collections.grantGroup('secret', 'support', true, AT);
      expect((await s.collections.accessOf(alice.id)).grants).toEqual([{ name: 'secret', canWrite: true }]);
      expect((await s.collections.get('secret'))?.groupGrants).toEqual([{ group: 'support', canWrite: true, grantedAt: AT }]);
      expect(await s.collections.listGroups()).toEqual([
        { name: 'crew', createdAt: AT, members: [], grants: [{ collection: 'open', canWrite: true }] },
        {
          name: 'support', createdAt: AT,
          members: [{ userId: alice.id, userName: 'alice', addedAt: AT }, { userId: bob.id, userName: 'bob', addedAt: AT }],
          grants: [{ collection: 'secret', canWrite: true }],
        },
      ]);
      // Crew's grant on a public collection gives its members write access there only.
      await s.collections.addMember('crew', bob.id, AT);
      expect((await s.collections.accessOf(bob.id)).grants).toEqual([{ name: 'open', canWrite: true }, { name: 'secret', canWrite: true }]);

      expect(await s.collections.removeMember('support', bob.id)).toBe(true);
      expect(await s.collections.removeMember('support', bob.id)).toBe(false);
      expect((await s.collections.accessOf(bob.id)).hidden).toEqual(['secret']);
      expect(await s.collections.revokeGroup('secret', 'support')).toBe(true);
      expect(await s.collections.revokeGroup('secret', 'support')).toBe(false);
      expect((await s.collections.accessOf(alice.id)).hidden).toEqual(['secret']);
      await s.collections.grantGroup('secret', 'support', false, AT);
      expect(await s.collections.deleteGroup('support')).toBe(true);
      expect(await s.collections.deleteGroup('support')).toBe(false);
      expect((await s.collections.accessOf(alice.id)).hidden).toEqual(['secret']);
      expect((await s.collections.get('secret'))?.groupGrants).toEqual([]);
      expect((await s.collections.listGroups()).map((g) => g.name)).toEqual(['crew']);
    });
  });

  it('erasing a user erases their memberships; the group and its grants stay', async () => {
    await withStore(async (s) => {
      const alice = await user(s, 'alice');
      const bob = await user(s, 'bob');
      await s.collections.create({ name: 'secret', visibility: 'private', createdBy: null, createdAt: AT });
      await s.collections.createGroup('support', AT);
      await s.collections.addMember('support', alice.id, AT);
      await s.collections.addMember('support', bob.id, AT);
      await s.collections.grantGroup('secret', 'support', false, AT);
      expect(await s.users.userDataTables()).toContain('group_members');
      expect((await s.users.erase(bob.id)).group_members).toBe(1);
      expect(await s.collections.listGroups()).toEqual([
        { name: 'support', createdAt: AT, members: [{ userId: alice.id, userName: 'alice', addedAt: AT }], grants: [{ collection: 'secret', canWrite: false }] },
      ]);
    });
  });

  it('excludeCollections filters searchText, searchDocuments and listDocuments before the limit', async () => {
    await withStore(async (s) => {
      const model = 'test-model';
      const open = await s.corpus.replaceDocument(doc('open', 'a'), chunks(['quokka public notes', 'other words']), null, null);
      const secret = await s.corpus.replaceDocument(doc('secret', 'b'), chunks(['quokka private marker', 'quokka again private']), null, null);
      const third = await s.corpus.replaceDocument(doc('third', 'c'), chunks(['quokka third notes']), null, null);
      const ids = async (r: Promise<Array<{ chunkId: number }>>) => (await r).map((h) => h.chunkId);
      const docOf = new Map<number, number>();
      for (const m of await s.corpus.chunkMeta([...Array(20).keys()].map((i) => i + 1))) docOf.set(m.chunkId, m.documentId);
      const docs = (chunkIds: number[]) => new Set(chunkIds.map((c) => docOf.get(c)));

      // limit 1: the best hit overall may be private, the filtered search still returns a hit.
      const all = await ids(s.corpus.searchText('quokka', { limit: 10 }));
      expect(docs(all)).toEqual(new Set([open.documentId, secret.documentId, third.documentId]));
      const scoped = await ids(s.corpus.searchText('quokka', { limit: 10, excludeCollections: ['secret'] }));
      expect(docs(scoped)).toEqual(new Set([open.documentId, third.documentId]));
      expect(await ids(s.corpus.searchText('quokka', { limit: 1, excludeCollections: ['secret', 'third'] }))).toHaveLength(1);
      expect(docs(await ids(s.corpus.searchText('quokka', { limit: 1, excludeCollections: ['secret', 'third'] })))).toEqual(new Set([open.documentId]));
      expect(await ids(s.corpus.searchText('marker', { limit: 10, excludeCollections: ['secret'] }))).toEqual([]);
      // With a collection too: both filters apply.
      expect(await ids(s.corpus.searchText('quokka', { limit: 10, collection: 'secret', excludeCollections: ['secret'] }))).toEqual([]);
      expect(docs(await ids(s.corpus.searchText('quokka', { limit: 10, collection: 'third', excludeCollections: ['secret'] })))).toEqual(new Set([third.documentId]));
      // An empty list excludes nothing.
      expect(new Set(await ids(s.corpus.searchText('quokka', { limit: 10, excludeCollections: [] })))).toEqual(new Set(all));

      const docHits = async (opts: { limit: number; excludeCollections?: string[] }) => (await s.corpus.searchDocuments('quokka', opts)).map((d) => d.documentId);
      expect(new Set(await docHits({ limit: 10, excludeCollections: ['secret'] }))).toEqual(new Set([open.documentId, third.documentId]));
      expect(await docHits({ limit: 1, excludeCollections: ['secret', 'open'] })).toEqual([third.documentId]);

      const listed = (await s.corpus.listDocuments({ limit: 10, excludeCollections: ['secret'] })).map((d) => d.id);
      expect(listed).toEqual([third.documentId, open.documentId]);
      expect((await s.corpus.listDocuments({ limit: 10, q: 'marker', excludeCollections: ['secret'] })).map((d) => d.id)).toEqual([]);
      expect((await s.corpus.listDocuments({ limit: 10, q: 'marker' })).map((d) => d.id)).toEqual([secret.documentId]);
    });
  });

  it.runIf(engine.nativeVectorSearch === true)('excludeCollections filters searchVector before the limit (the private vectors are the nearest)', async () => {
    await withStore(async (s) => {
      const g = { dimension: 2, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 64, hnswEfSearch: 40 };
      await s.corpus.createGeneration({ ...g, modelId: 'm' }, 'active');
      const withVector = (text: string, v: [number, number]): NewChunk[] => [{ ...chunks([text])[0]!, vector: new Float32Array(v) }];
      const secret: number[] = [];
      for (let i = 0; i < 5; i++) secret.push((await s.corpus.replaceDocument(doc('secret', `s${i}`), withVector(`secret ${i}`, [1, 0.01 * i]), null, 'm')).vectorsAdded[0]![0]);
      const open: number[] = [];
      for (let i = 0; i < 3; i++) open.push((await s.corpus.replaceDocument(doc('open', `o${i}`), withVector(`open ${i}`, [0.6, 0.8]), null, 'm')).vectorsAdded[0]![0]);
      const q = new Float32Array([1, 0]);
      const near = (await s.corpus.searchVector('m', q, { limit: 2 })).map((h) => h.chunkId);
      expect(near.every((id) => secret.includes(id))).toBe(true);
      const allowed = (await s.corpus.searchVector('m', q, { limit: 2, excludeCollections: ['secret'] })).map((h) => h.chunkId);
      expect(allowed).toHaveLength(2);
      expect(allowed.every((id) => open.includes(id))).toBe(true);
    });
  });
}
