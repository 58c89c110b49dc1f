/**
 * The contract of the releases aggregate (issue 15), run against every engine from
 * test/store/engines.test.ts: creation and versions, the state machine (canary, promote, rollback,
 * stop) with one audit row per change, the initial release created once, release/arm on the
 * prediction log, and the per-arm and regression reads.
 */
import { expect, it } from 'vitest';
import { ConflictError, NotFoundError } from '../../../src/core/errors.ts';
import type { Store } from '../../../src/core/store/index.ts';
import type { PredictionRecord } from '../../../src/core/store/predictions.ts';
import type { NewRelease, ReleaseParts } from '../../../src/core/store/releases.ts';

export interface ReleaseEngineUnderTest {
  name: string;
  make(): Promise<Store>;
  makePair(): Promise<[Store, Store]>;
}

const T = (s: number) => new Date(Date.parse('2025-04-01T10:00:00.000Z') + s * 1000).toISOString();

export function partsFixture(over: Partial<ReleaseParts['retrieval']> = {}): ReleaseParts {
  return {
    prompt: { name: 'answer', version: '3', sha256: 'a'.repeat(64), text: '---\nname: answer\n---\n## system\n{{context}}\n## user\n{{question}}\n' },
    llm: { spec: 'extractive', model: null, max_tokens: 512, temperature: 0.2, top_p: 0.95, seed: 42, context_tokens: 4096 },
    embedding: { model: null, generation: null },
    retrieval: { mode: 'hybrid', top_k: 6, rrf_k: 60, bm25_weight: 1, dense_weight: 1, ...over },
    personalization: { weight: 0.3 },
  };
}

function release(name: string, at = T(0)): NewRelease {
  return { name, parts: partsFixture(), partsSha256: `sha-${name}`, createdBy: 'ops', createdAt: at };
}

const audit = (s: number, extra: { forced?: boolean; reason?: string } = {}) => ({ actor: 'ops', reason: extra.reason ?? null, forced: extra.forced ?? false, at: T(s) });

function row(userId: number, id: string, releaseName: string, arm: 'live' | 'candidate', s: number, status: PredictionRecord['status'] = 'ok'): PredictionRecord {
  return {
    id, userId, conversationId: `conv_${id}`, newConversation: true, turnIndex: 0, createdAt: T(s), endpoint: 'chat', request: {}, query: `q ${id}`,
    queryVector: null, history: [], collection: null, topK: 5,
    retrieved: [
      { chunk_id: 7, document_id: 1, content_sha256: 'x', score: 0.5, bm25_rank: 1, dense_rank: null, in_context: true },
      { chunk_id: 8, document_id: 1, content_sha256: 'y', score: 0.25, bm25_rank: null, dense_rank: 1, in_context: true },
    ],
    features: { precomputed: {}, on_demand: {} }, promptName: 'answer', promptSha256: 'p', renderedPrompt: [], modelBackend: 'extractive', modelId: 'e',
    sampling: null, answer: status === 'ok' ? 'a [2]' : null,
    citations: status === 'ok' ? [{ n: 2, document_id: 1, chunk_id: 8, source: '/d.md', title: 'D', score: 0.25, snippet: 's' }] : [],
    timings: { total_ms: 10 + s, first_token_ms: 2 }, promptTokens: 3, completionTokens: 4, status, errorCode: null, errorMessage: null,
    release: releaseName, arm,
  };
}

export function releaseStoreContract(engine: ReleaseEngineUnderTest): void {
  const withStore = async (fn: (s: Store) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };

  it('create: draft, numbered versions, parts kept verbatim, a taken name is a ConflictError, one create audit row each', () =>
    withStore(async (s) => {
      const a = await s.releases.create(release('a'));
      const b = await s.releases.create(release('b', T(1)));
      expect(a).toMatchObject({ name: 'a', version: 1, state: 'draft', share: null, createdBy: 'ops', createdAt: T(0), partsSha256: 'sha-a' });
      expect(a.parts).toEqual(partsFixture());
      expect(b.version).toBe(2);
      await expect(s.releases.create(release('a'))).rejects.toBeInstanceOf(ConflictError);
      expect((await s.releases.list()).map((r) => r.name)).toEqual(['a', 'b']);
      expect(await s.releases.get('nope')).toBeNull();
      const events = await s.releases.events(10);
      expect(events.map((e) => [e.action, e.to])).toEqual([['create', 'b'], ['create', 'a']]);
    }));

  it('ensureLive creates the initial release once and makes it live; a second call returns it', () =>
    withStore(async (s) => {
      const first = await s.releases.ensureLive(release('initial'));
      expect(first.created).toBe(true);
      expect(first.live).toMatchObject({ name: 'initial', state: 'live' });
      const again = await s.releases.ensureLive(release('other'));
      expect(again).toMatchObject({ created: false, live: { name: 'initial' } });
      expect(await s.releases.get('other')).toBeNull();
      expect((await s.releases.events(10)).map((e) => e.action)).toEqual(['initial']);
    }));

  it('two handles starting at once create one initial release', async () => {
    const [a, b] = await engine.makePair();
    try {
      const [x, y] = await Promise.all([a.releases.ensureLive(release('initial')), b.releases.ensureLive(release('initial'))]);
      expect([x.created, y.created].filter(Boolean)).toHaveLength(1);
      expect((await a.releases.list()).map((r) => [r.name, r.state])).toEqual([['initial', 'live']]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('canary → promote → rollback, every change one audit row with who, when, from, to, why, forced', () =>
    withStore(async (s) => {
      await s.releases.ensureLive(release('v1'));
      await s.releases.create(release('v2', T(1)));
      const mark0 = await s.releases.changeMark();
      const canary = await s.releases.apply({ kind: 'canary', name: 'v2', share: 10, experiment: 'exp-1' }, audit(2, { reason: 'try it' }));
      expect(canary).toMatchObject({ action: 'canary', from: null, to: 'v2', actor: 'ops', reason: 'try it', forced: false, at: T(2) });
      expect(await s.releases.changeMark()).toBeGreaterThan(mark0);
      expect(await s.releases.get('v2')).toMatchObject({ state: 'candidate', share: 10, experiment: 'exp-1', stateChangedAt: T(2) });
      // A share change keeps the experiment (users already in the candidate stay in).
      await s.releases.apply({ kind: 'canary', name: 'v2', share: 50, experiment: 'exp-2' }, audit(3));
      expect(await s.releases.get('v2')).toMatchObject({ share: 50, experiment: 'exp-1' });
      await expect(s.releases.apply({ kind: 'canary', name: 'v1', share: 5, experiment: 'e' }, audit(3))).rejects.toBeInstanceOf(ConflictError);
      await expect(s.releases.apply({ kind: 'canary', name: 'zz', share: 5, experiment: 'e' }, audit(3))).rejects.toBeInstanceOf(NotFoundError);

      const promoted = await s.releases.apply({ kind: 'promote' }, audit(4, { forced: true, reason: 'gate overridden' }));
      expect(promoted).toMatchObject({ action: 'promote', from: 'v1', to: 'v2', forced: true });
      expect((await s.releases.list()).map((r) => [r.name, r.state, r.share])).toEqual([['v1', 'previous', null], ['v2', 'live', null]]);
      await expect(s.releases.apply({ kind: 'promote' }, audit(5))).rejects.toBeInstanceOf(ConflictError);

      const back = await s.releases.apply({ kind: 'rollback' }, audit(6));
      expect(back).toMatchObject({ action: 'rollback', from: 'v2', to: 'v1' });
      expect((await s.releases.list()).map((r) => [r.name, r.state])).toEqual([['v1', 'live'], ['v2', 'retired']]);
      await expect(s.releases.apply({ kind: 'rollback' }, audit(7))).rejects.toBeInstanceOf(ConflictError);

      const events = await s.releases.events(20);
      expect(events.map((e) => e.action)).toEqual(['rollback', 'promote', 'canary', 'canary', 'create', 'initial']);
      expect(events[1]).toMatchObject({ forced: true, reason: 'gate overridden' });
    }));

  it('promote NAME skips the candidate; the old previous is retired; stop sends the candidate back to draft', () =>
    withStore(async (s) => {
      await s.releases.ensureLive(release('v1'));
      for (const [i, n] of ['v2', 'v3', 'v4'].entries()) await s.releases.create(release(n, T(i + 1)));
      await s.releases.apply({ kind: 'promote', name: 'v2' }, audit(5));
      await s.releases.apply({ kind: 'canary', name: 'v4', share: 20, experiment: 'x' }, audit(6));
      await s.releases.apply({ kind: 'promote', name: 'v3' }, audit(7));
      expect(Object.fromEntries((await s.releases.list()).map((r) => [r.name, r.state]))).toEqual({ v1: 'retired', v2: 'previous', v3: 'live', v4: 'candidate' });
      await s.releases.apply({ kind: 'stop' }, audit(8));
      expect((await s.releases.get('v4'))?.state).toBe('draft');
    }));

  it('the prediction log records release and arm; armSamples and regressionSamples read them back', () =>
    withStore(async (s) => {
      const u = await s.users.create({ name: 'ann', apiKeyHash: 'h-ann', keyPrefix: 'mn_x', isAdmin: false, createdAt: T(0) });
      await s.predictions.write(row(u.id, 'resp_1', 'v1', 'live', 1));
      await s.predictions.write(row(u.id, 'resp_2', 'v2', 'candidate', 2));
      await s.predictions.write(row(u.id, 'resp_3', 'v2', 'candidate', 3, 'error'));
      await s.predictions.write(row(u.id, 'resp_4', 'v3', 'live', 4));
      await s.predictions.addFeedback({ responseId: 'resp_1', userId: u.id, rating: 1, correction: null, createdAt: T(5) });
      await s.predictions.addFeedback({ responseId: 'resp_2', userId: u.id, rating: 1, correction: null, createdAt: T(6) });
      await s.predictions.addFeedback({ responseId: 'resp_2', userId: u.id, rating: -1, correction: 'see [1]', createdAt: T(7) });
      const samples = await s.releases.armSamples(['v1', 'v2'], T(0), 100);
      expect(samples.map((x) => [x.release, x.arm, x.status, x.rating, x.corrected])).toEqual([
        ['v2', 'candidate', 'error', null, false],
        ['v2', 'candidate', 'ok', -1, true],
        ['v1', 'live', 'ok', 1, false],
      ]);
      expect(samples[2]).toMatchObject({ totalMs: 11, firstTokenMs: 2, completionTokens: 4, citations: 1, retrieved: 2, topScore: 0.5, bm25Hits: 1 });
      expect(await s.releases.armSamples(['v1', 'v2'], T(2), 100)).toHaveLength(2);
      expect(await s.releases.armSamples([], T(0), 100)).toEqual([]);
      const reg = await s.releases.regressionSamples(100);
      expect(reg).toEqual([
        { responseId: 'resp_2', query: 'q resp_2', collection: null, release: 'v2', rating: -1, correction: 'see [1]', citedChunks: [8], contextChunks: [7, 8], createdAt: T(2) },
        { responseId: 'resp_1', query: 'q resp_1', collection: null, release: 'v1', rating: 1, correction: null, citedChunks: [8], contextChunks: [7, 8], createdAt: T(1) },
      ]);
    }));
}
