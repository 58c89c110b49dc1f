/**
 * The contract of the chat-side aggregates (users, conversations, predictions, monitoring): one suite
 * run against every engine (test/store/engines.test.ts), through the store interface only.
 */
import { expect, it } from 'vitest';
import { ConflictError } from '../../../src/core/errors.ts';
import type { Store } from '../../../src/core/store/index.ts';
import type { PredictionRecord } from '../../../src/core/store/predictions.ts';
import type { UserRecord } from '../../../src/core/store/users.ts';

export interface ChatEngineUnderTest {
  name: string;
  /** A fresh, empty, migrated store. */
  make(): Promise<Store>;
}

const T = (s: number) => new Date(Date.parse('2025-03-01T10:00:00.000Z') + s * 1000).toISOString();

let n = 0;
async function user(store: Store, name: string, createdAt = T(0)): Promise<UserRecord> {
  return store.users.create({ name, apiKeyHash: `hash-${name}-${++n}`, keyPrefix: 'mn_abcdefg', isAdmin: false, createdAt });
}

function turn(u: UserRecord, o: { id: string; conv: string; isNew: boolean; query: string; at: string; status?: PredictionRecord['status'] }): PredictionRecord {
  const status = o.status ?? 'ok';
  return {
    id: o.id, userId: u.id, userCreatedAt: u.createdAt, conversationId: o.conv, newConversation: o.isNew, turnIndex: 0, createdAt: o.at,
    endpoint: 'chat', request: { message: o.query }, query: o.query, queryVector: new Float32Array([0.5, 0.25]), history: [], collection: null, topK: 5,
    retrieved: [{ chunk_id: 1, document_id: 1, content_sha256: 'x', score: 0.5, bm25_rank: 1, dense_rank: null, in_context: true }],
    features: { precomputed: {}, on_demand: {} }, promptName: 'answer', promptSha256: 'p', renderedPrompt: [], modelBackend: 'extractive', modelId: 'e1',
    sampling: null, answer: status === 'ok' ? `answer to ${o.query} [1]` : null,
    citations: [{ n: 1, document_id: 1, chunk_id: 1, source: '/d.md', title: 'D', score: 0.5, snippet: 's' }],
    timings: { features_ms: 1, retrieve_ms: 2, generate_ms: 3, first_token_ms: 1, total_ms: 6 }, promptTokens: 1, completionTokens: 2,
    status, errorCode: status === 'error' ? 'upstream_error' : null, errorMessage: null,
  };
}

export function chatStoreContract(engine: ChatEngineUnderTest): void {
  const withStore = async (fn: (s: Store) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('users: create, find by key hash and name, list live ones, revoke; a taken name is a ConflictError', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      const benHash = `hash-ben-${n}`;
      await expect(user(s, 'ann')).rejects.toBeInstanceOf(ConflictError);
      const found = await s.users.findByKeyHash(benHash);
      expect(found?.apiKeyHash).toBe(benHash);
      expect(found?.user).toMatchObject({ id: ben.id, name: 'ben', revokedAt: null });
      expect(await s.users.findByKeyHash('nope')).toBeNull();
      expect((await s.users.list()).map((u) => u.name)).toEqual(['ann', 'ben']);
      expect(await s.users.revoke(ann.id, T(5))).toBe(true);
      expect((await s.users.list()).map((u) => u.name)).toEqual(['ben']);
      expect(await s.users.findByName('ann')).toMatchObject({ revokedAt: T(5) });
    }));

  it('predictions and conversations: one write per turn, transcript only for ok turns, history, pages, feedback ownership', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      expect(await s.predictions.write(turn(ann, { id: 'r1', conv: 'c1', isNew: true, query: 'first question', at: T(10) }))).toEqual({ written: true });
      await s.predictions.write(turn(ann, { id: 'r2', conv: 'c1', isNew: false, query: 'failed one', at: T(20), status: 'error' }));
      await s.predictions.write(turn(ann, { id: 'r3', conv: 'c1', isNew: false, query: 'second', at: T(30) }));
      await s.predictions.write(turn(ben, { id: 'r4', conv: 'c2', isNew: true, query: 'bens', at: T(40) }));
      const h = await s.conversations.history(ann.id, 'c1', 3);
      expect(h).toEqual({ turnIndex: 2, history: [{ role: 'assistant', content: 'answer to first question [1]' }, { role: 'user', content: 'second' }, { role: 'assistant', content: 'answer to second [1]' }] });
      expect(await s.conversations.history(ben.id, 'c1', 3)).toBeNull();
      expect(await s.conversations.lastUserMessageAt(ann.id)).toBe(T(30));
      expect(await s.predictions.isOwnedBy('r1', ann.id)).toBe(true);
      expect(await s.predictions.isOwnedBy('r1', ben.id)).toBe(false);
      expect(await s.predictions.addFeedback({ responseId: 'r1', userId: ben.id, rating: 1, correction: null, createdAt: T(50) })).toBeNull();
      const fb = await s.predictions.addFeedback({ responseId: 'r1', userId: ann.id, rating: -1, correction: 'fix', createdAt: T(50) });
      expect(fb).toMatchObject({ id: expect.any(Number), responseId: 'r1', rating: -1, correction: 'fix' });
      const t = await s.conversations.transcript(ann.id, 'c1', 100);
      expect(t?.conversation).toMatchObject({ id: 'c1', title: 'first question', createdAt: T(10) });
      expect(t?.messages.map((m) => [m.role, m.content, m.rating])).toEqual([
        ['user', 'first question', null], ['assistant', 'answer to first question [1]', -1], ['user', 'second', null], ['assistant', 'answer to second [1]', null],
      ]);
      expect(t?.messages[1]).toMatchObject({ responseId: 'r1', correction: 'fix', model: { backend: 'extractive', id: 'e1' }, citations: [expect.objectContaining({ n: 1, title: 'D' })] });
      expect(await s.conversations.transcript(ben.id, 'c1', 100)).toBeNull();
      // A turn's write stamps updatedAt with the wall clock: make c3 newer than that.
      const inAnHour = Date.now() + 3_600_000;
      const future = (seconds: number) => new Date(inAnHour + seconds * 1000).toISOString();
      await s.conversations.create({ id: 'c3', userId: ann.id, title: 'later', createdAt: future(0) });
      const page1 = await s.conversations.listPage(ann.id, { limit: 1 });
      expect(page1.map((c) => c.id)).toEqual(['c3']);
      const page2 = await s.conversations.listPage(ann.id, { limit: 5, before: { updatedAt: page1[0]!.updatedAt, id: page1[0]!.id } });
      expect(page2.map((c) => [c.id, c.messages])).toEqual([['c1', 4]]);
      expect(await s.conversations.appendMessage({ conversationId: 'c3', userId: ann.id, role: 'user', content: 'hi', responseId: null, createdAt: future(10) })).toEqual(expect.any(Number));
      expect((await s.conversations.listPage(ann.id, { limit: 5 }))[0]).toMatchObject({ id: 'c3', updatedAt: future(10), messages: 1 });
    }));

  it('monitoring: overview totals, timeseries samples, thumbs-down, health counts', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      await s.predictions.write(turn(ann, { id: 'r1', conv: 'c1', isNew: true, query: 'q1', at: T(10) }));
      await s.predictions.write(turn(ann, { id: 'r2', conv: 'c1', isNew: false, query: 'q2', at: T(20), status: 'error' }));
      await s.predictions.addFeedback({ responseId: 'r1', userId: ann.id, rating: -1, correction: 'better', createdAt: T(30) });
      const o = await s.monitoring.overview(T(15));
      expect(o.recent).toEqual({ requests: 1, errors: 1 });
      expect(o.totals).toEqual({ users: 1, conversations: 1, responses: 2, errors: 1, feedback: 1, thumbsDown: 1, lastResponseAt: T(20), lastFeedbackAt: T(30) });
      const ts = await s.monitoring.timeseriesSamples(T(0), T(100), 10);
      expect(ts.responses.map((r) => [r.createdAt, r.status, r.totalMs, r.topScore, r.retrieved])).toEqual([[T(20), 'error', 6, 0.5, 1], [T(10), 'ok', 6, 0.5, 1]]);
      expect(ts).toMatchObject({ feedback: [{ createdAt: T(30), rating: -1 }], answers: 1, ratedAnswers: 1 });
      expect((await s.monitoring.timeseriesSamples(T(0), T(100), 1)).responses).toHaveLength(1);
      expect(await s.monitoring.thumbsDown(5)).toEqual([expect.objectContaining({ responseId: 'r1', userName: 'ann', query: 'q1', correction: 'better', ratedAt: T(30) })]);
      expect(await s.monitoring.health()).toEqual({ documents: 0, chunks: 0, activeGeneration: null });
      expect(await s.monitoring.corpus()).toMatchObject({ documents: 0, chunks: 0, collections: [], generations: [], lastRun: null });
    }));

  it('erase removes every row of the user and only theirs; a later write for the erased user is dropped, as is one for a reused id', () =>
    withStore(async (s) => {
      const ann = await user(s, 'ann');
      const ben = await user(s, 'ben');
      await s.predictions.write(turn(ann, { id: 'r1', conv: 'c1', isNew: true, query: 'q1', at: T(10) }));
      await s.predictions.write(turn(ben, { id: 'r2', conv: 'c2', isNew: true, query: 'q2', at: T(10) }));
      await s.predictions.addFeedback({ responseId: 'r1', userId: ann.id, rating: 1, correction: null, createdAt: T(20) });
      const erased = await s.users.erase(ann.id);
      expect(erased).toMatchObject({ users: 1, responses: 1, messages: 2, conversations: 1, feedback: 1 });
      expect(await s.users.findByName('ann')).toBeNull();
      expect(await s.conversations.listPage(ann.id, { limit: 10 })).toEqual([]);
      expect(await s.predictions.isOwnedBy('r2', ben.id)).toBe(true);
      expect(await s.predictions.write(turn(ann, { id: 'r3', conv: 'c1', isNew: false, query: 'late', at: T(30) }))).toEqual({ written: false, reason: 'user_erased' });
      // A user created later may get the same id: the stale write is still not theirs.
      const stale = turn({ ...ann, createdAt: 'an-earlier-user' }, { id: 'r4', conv: 'c9', isNew: true, query: 'stale', at: T(40) });
      await user(s, 'cat', T(35));
      expect(await s.predictions.write(stale)).toEqual({ written: false, reason: 'user_erased' });
      expect(await s.predictions.isOwnedBy('r4', stale.userId)).toBe(false);
      expect((await s.monitoring.overview(T(0))).totals).toMatchObject({ users: 2, responses: 1, conversations: 1 });
    }));
}
