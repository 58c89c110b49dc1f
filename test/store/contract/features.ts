/**
 * The contract of the feature-store and export aggregates (store.features, store.exports): one suite
 * run against every engine (test/store/engines.test.ts). Log rows are written through the store's
 * own writers (users, conversations, predictions, feedback, corpus), features by the real
 * materializer, exports by the real export run; only the store interface is used to look.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ConflictError } from '../../../src/core/errors.ts';
import type { FeatureHistoryKey, FeatureValue } from '../../../src/core/store/features.ts';
import type { LoggedResponse, SelectionStats } from '../../../src/core/store/exports.ts';
import type { Store } from '../../../src/core/store/index.ts';
import type { PredictionRecord } from '../../../src/core/store/predictions.ts';
import type { UserRecord } from '../../../src/core/store/users.ts';
import { FEATURE_DEFINITIONS_VERSION } from '../../../src/features/definitions.ts';
import { materializeFeatures } from '../../../src/features/materialize.ts';
import { FeatureStore } from '../../../src/features/store.ts';
import { exportsContainingUser } from '../../../src/export/manifests.ts';
import { runExport } from '../../../src/export/run.ts';
import { promptHashOfJson } from '../../../src/export/format.ts';
import { manifestPathFor } from '../../../src/export/split.ts';

export interface FeatureEngineUnderTest {
  name: string;
  /** A fresh, empty, migrated store. */
  make(): Promise<Store>;
}

const T0 = Date.parse('2025-03-01T10:00:00.000Z');
/** The time `s` seconds after T0, in the stored form. */
const T = (s: number) => new Date(T0 + s * 1000).toISOString();
const NOW = () => new Date(T0 + 86_400_000);

/** Writes log rows through the store's writers, one conversation per user. */
class Log {
  private readonly convs = new Map<number, { id: string; turns: number }>();
  private n = 0;
  constructor(readonly s: Store) {}

  async user(name: string, createdAt = T(0)): Promise<UserRecord> {
    return this.s.users.create({ name, apiKeyHash: `hash-${name}-${Math.random()}`, keyPrefix: 'mn_test', isAdmin: false, createdAt });
  }

  /** A live document of `collection` (its id is what citations name). */
  async doc(collection: string): Promise<number> {
    const name = `doc-${++this.n}.md`;
    const r = await this.s.corpus.replaceDocument(
      { collection, sourceUri: `/docs/${collection}/${name}`, contentSha256: `sha-${name}`, title: name, kind: 'text/markdown', bytes: 10 },
      [{ ord: 0, text: `text of ${name}`, headingPath: name, tokenCount: 3, contentSha256: `c-${name}` }],
      null,
      null,
    );
    return r.documentId;
  }

  async respond(
    u: UserRecord,
    o: { at: number; query?: string; vector?: number[]; collection?: string; docs?: number[]; status?: PredictionRecord['status']; prompt?: string; model?: string },
  ): Promise<string> {
    let conv = this.convs.get(u.id);
    if (!conv) {
      conv = { id: `conv_${u.id}_${++this.n}`, turns: 0 };
      this.convs.set(u.id, conv);
      await this.s.conversations.create({ id: conv.id, userId: u.id, title: null, createdAt: T(o.at) });
    }
    const id = `resp_${u.id}_${++this.n}`;
    const status = o.status ?? 'ok';
    const query = o.query ?? `question ${this.n}`;
    const outcome = await this.s.predictions.write({
      id, userId: u.id, userCreatedAt: u.createdAt, conversationId: conv.id, newConversation: false, turnIndex: conv.turns++, createdAt: T(o.at),
      endpoint: 'chat', request: { message: query }, query, queryVector: o.vector ? Float32Array.from(o.vector) : null, history: [],
      collection: o.collection ?? null, topK: 5, retrieved: [], features: { precomputed: {}, on_demand: {} },
      promptName: 'answer', promptSha256: 'abcdef0123456789', renderedPrompt: [{ role: 'user', content: o.prompt ?? query }],
      modelBackend: 'extractive', modelId: o.model ?? 'e1', sampling: null, answer: status === 'ok' ? `answer to ${query}` : null,
      citations: (o.docs ?? []).map((d, i) => ({ n: i + 1, document_id: d, chunk_id: d, source: `/d/${d}`, title: 't', score: 1, snippet: 's' })),
      timings: {}, promptTokens: null, completionTokens: null, status, errorCode: status === 'error' ? 'upstream_error' : null, errorMessage: null,
    });
    if (!outcome.written) throw new Error(`log row ${id} not written`);
    return id;
  }

  async rate(u: UserRecord, responseId: string, rating: 1 | -1, at: number, correction: string | null = null): Promise<void> {
    if (!(await this.s.predictions.addFeedback({ responseId, userId: u.id, rating, correction, createdAt: T(at) }))) throw new Error(`feedback on ${responseId} refused`);
  }
}

/** Every history row of the users, as `user feature eventTime → value`. */
async function allHistory(s: Store, userIds: readonly number[]): Promise<Map<string, FeatureValue>> {
  const keysOf = new Map<number, readonly FeatureHistoryKey[]>();
  const values = await s.features.readHistory(userIds, (userId, keys) => {
    keysOf.set(userId, keys);
    return keys.map((_, i) => i);
  });
  const out = new Map<string, FeatureValue>();
  for (const [userId, keys] of keysOf) keys.forEach(([f, t], i) => out.set(`${userId} ${f} ${t}`, values.get(userId)?.get(i) ?? '(missing)'));
  return out;
}

async function drain<T>(it: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const emptyStats = (): SelectionStats => ({ matched: 0, excludedByStatus: { error: 0, cancelled: 0 } });

/** A small log: three users, two collections, vectors, changed ratings and a correction. */
async function seed(log: Log): Promise<{ ann: UserRecord; ben: UserRecord; cat: UserRecord; ids: string[] }> {
  const [ann, ben, cat] = [await log.user('ann'), await log.user('ben'), await log.user('cat')];
  const [d1, d2] = [await log.doc('alpha'), await log.doc('beta')];
  const ids = [
    await log.respond(ann, { at: 10, vector: [1, 0, 0.5], collection: 'alpha', docs: [d1], prompt: 'what is x' }),
    await log.respond(ben, { at: 20, vector: [0, 1, 0.25], docs: [d2], prompt: 'what is x' }),
    await log.respond(ann, { at: 30, vector: [0.5, 0.5, 0.125], docs: [d1, d2], prompt: 'what is x' }),
    await log.respond(cat, { at: 40, status: 'error', prompt: 'what is y' }),
    await log.respond(ben, { at: 50, vector: [0.1, 0.2, 0.3], collection: 'beta', prompt: 'what is x' }),
  ];
  await log.rate(ann, ids[0]!, 1, 60);
  await log.rate(ben, ids[1]!, -1, 70);
  await log.rate(ann, ids[2]!, -1, 80, 'a better answer');
  await log.rate(ann, ids[0]!, -1, 90); // changes ann's first rating
  await log.rate(ben, ids[4]!, 1, 100);
  return { ann, ben, cat, ids };
}

export function featureExportContract(engine: FeatureEngineUnderTest): void {
  const withStore = async (fn: (s: Store, log: Log) => Promise<void>) => {
    const s = await engine.make();
    try {
      await fn(s, new Log(s));
    } finally {
      await s.close();
    }
  };

  it('materialization: incremental runs in small batches give exactly the rows of one full recompute', () =>
    withStore(async (s, log) => {
      const { ann, ben, cat } = await seed(log);
      const users = [ann.id, ben.id, cat.id];
      const first = await materializeFeatures(s, { batchRows: 2, now: NOW });
      expect(first).toMatchObject({ responses: 5, feedback: 5, rebuilt: true });
      // More log after the first run, consumed incrementally.
      const late = await log.respond(cat, { at: 200, vector: [1, 1, 1], collection: 'alpha' });
      await log.rate(cat, late, 1, 210);
      await log.rate(ben, (await drain(s.exports.selectResponses({ filters: {}, snapshotSeq: 1e9 }, emptyStats())))[1]!.id, 1, 220);
      expect(await materializeFeatures(s, { batchRows: 3, now: NOW })).toMatchObject({ responses: 1, feedback: 2, rebuilt: false });
      expect(await materializeFeatures(s, { now: NOW })).toMatchObject({ responses: 0, feedback: 0 });
      const wm = await s.features.watermarks();
      expect(wm.definitionsVersion).toBe(FEATURE_DEFINITIONS_VERSION);
      const incremental = await allHistory(s, users);
      const online = await Promise.all(users.map((u) => s.features.onlineRecords(u)));
      expect(incremental.size).toBeGreaterThan(10);
      expect(online[0]!.map((r) => r.feature)).toEqual([...online[0]!.map((r) => r.feature)].sort());
      expect((await s.features.onlineValues(ann.id)).messages_total).toBe(2);
      expect((await s.features.onlineValues(ann.id)).top_collections).toEqual(['alpha', 'beta']);

      expect(await materializeFeatures(s, { rebuild: true, batchRows: 1000, now: NOW })).toMatchObject({ responses: 6, feedback: 7, rebuilt: true });
      expect(await allHistory(s, users)).toEqual(incremental);
      expect(await Promise.all(users.map((u) => s.features.onlineRecords(u)))).toEqual(online);
      expect(await s.features.watermarks()).toEqual(wm);
    }));

  it('concurrent materializations never double-count: the loser of each commit reads again', () =>
    withStore(async (s, log) => {
      const { ann, ben, cat } = await seed(log);
      for (let i = 0; i < 12; i++) await log.respond([ann, ben, cat][i % 3]!, { at: 300 + i, vector: [i, 1, 0] });
      const runs = await Promise.all([1, 2, 3].map(() => materializeFeatures(s, { batchRows: 2, now: NOW })));
      // Every row consumed exactly once across the runs.
      expect(runs.reduce((n, r) => n + r.responses, 0)).toBe(17);
      expect(runs.reduce((n, r) => n + r.feedback, 0)).toBe(5);
      const users = [ann.id, ben.id, cat.id];
      const concurrent = await allHistory(s, users);
      const online = await Promise.all(users.map((u) => s.features.onlineValues(u)));
      expect(online.map((o) => o.messages_total)).toEqual([6, 6, 5]);
      await materializeFeatures(s, { rebuild: true, now: NOW });
      expect(await allHistory(s, users)).toEqual(concurrent);
      expect(await Promise.all(users.map((u) => s.features.onlineValues(u)))).toEqual(online);
    }));

  it('commitBatch: a batch read before another run committed is refused and writes nothing; state round-trips exactly', () =>
    withStore(async (s, log) => {
      const ann = await log.user('ann');
      await log.respond(ann, { at: 10 });
      const opts = { batchRows: 10, definitionsVersion: FEATURE_DEFINITIONS_VERSION, rebuild: false };
      const a = await s.features.readBatch(opts);
      const b = await s.features.readBatch(opts);
      expect(a.token).toBe(b.token);
      expect(a.reset).toBe(true);
      expect(a.responses).toHaveLength(1);
      const sum = Float64Array.from([1 / 3, Math.PI * 1e-300, -0, 2 ** 53 + 2, -1e308]);
      const write = (token: number, v: string) => ({
        token, reset: a.reset, definitionsVersion: FEATURE_DEFINITIONS_VERSION, lastResponseSeq: a.responses[0]!.seq, lastFeedbackId: null, createdAt: T(100),
        history: [
          { userId: ann.id, feature: 'f', eventTime: T(10), valueJson: '"first"' },
          { userId: ann.id, feature: 'f', eventTime: T(10), valueJson: v }, // same key later in log order: wins
        ],
        states: [{ userId: ann.id, state: { stateJson: '{"n":1}', interestSum: sum } }],
        online: [{ userId: ann.id, feature: 'f', eventTime: T(10), valueJson: v }],
      });
      expect(await s.features.commitBatch(write(a.token, '"a"'))).toBe(true);
      expect(await s.features.commitBatch(write(b.token, '"b"'))).toBe(false);
      expect(await s.features.onlineValues(ann.id)).toEqual({ f: 'a' });
      expect(await s.features.valuesAsOf(ann.id, T(10))).toEqual({ f: 'a' });
      expect((await s.features.watermarks()).responsesSeq).toBe(a.responses[0]!.seq);
      // The stored state comes back bit for bit with the user's next row.
      await log.respond(ann, { at: 20 });
      const next = await s.features.readBatch(opts);
      expect(next.reset).toBe(false);
      expect(next.token).toBe(a.token + 1);
      expect(next.responses.map((r) => r.createdAt)).toEqual([T(20)]);
      const state = next.users.get(ann.id)?.state;
      expect(state?.stateJson).toBe('{"n":1}');
      expect(Buffer.from(state!.interestSum!.buffer).equals(Buffer.from(sum.buffer))).toBe(true);
      expect(Object.is(state!.interestSum![2], -0)).toBe(true);
      expect(next.users.get(ann.id)?.online).toEqual(new Map([['f', '"a"']]));
      // A reset moves the token too: the batch read before it is refused.
      await s.features.reset(FEATURE_DEFINITIONS_VERSION);
      expect(await s.features.commitBatch({ ...write(next.token, '"c"'), reset: false })).toBe(false);
      expect(await s.features.onlineValues(ann.id)).toEqual({});
      expect(await s.features.watermarks()).toEqual({ responsesSeq: 0, feedbackId: 0, definitionsVersion: FEATURE_DEFINITIONS_VERSION });
    }));

  it('point-in-time reads: a value is visible at its event time, not a millisecond before; the join agrees', () =>
    withStore(async (s, log) => {
      const ann = await log.user('ann');
      await log.respond(ann, { at: 10, vector: [1, 0] });
      await log.respond(ann, { at: 20, vector: [0, 1] });
      await materializeFeatures(s, { now: NOW });
      const at = (ms: number) => new Date(T0 + ms).toISOString();
      expect(await s.features.valuesAsOf(ann.id, at(9_999))).toEqual({});
      expect((await s.features.valuesAsOf(ann.id, at(10_000))).messages_total).toBe(1);
      expect((await s.features.valuesAsOf(ann.id, at(19_999))).messages_total).toBe(1);
      const atBoundary = await s.features.valuesAsOf(ann.id, at(20_000));
      expect(atBoundary.messages_total).toBe(2);
      expect(atBoundary.last_seen_at).toBe(T(20));
      expect(atBoundary).toEqual(await s.features.onlineValues(ann.id));
      const fs_ = new FeatureStore({ store: s });
      const joined = await fs_.pointInTimeJoin([
        { userId: ann.id, time: at(20_000) },
        { userId: ann.id, time: at(9_999) },
        { userId: ann.id, time: at(10_000) },
      ]);
      expect(joined[0]).toEqual(atBoundary);
      expect(joined[1]).toEqual({});
      expect(joined[2]).toEqual(await s.features.valuesAsOf(ann.id, at(10_000)));
      expect(await fs_.pointInTimeJoin([{ userId: ann.id, time: at(15_000) }], { features: ['messages_total'] })).toEqual([{ messages_total: 1 }]);
    }));

  it('erasure: nothing of the user is left in the feature tables or the export; their hash and manifests remain findable', () =>
    withStore(async (s, log) => {
      const { ann, ben } = await seed(log);
      await materializeFeatures(s, { now: NOW });
      const annHash = await s.exports.userHash(ann);
      await s.exports.recordRun({ manifestPath: '/x/a.manifest.json', format: 'sft', examples: 2, createdAt: T(300), userHashes: [annHash] });
      expect(Object.keys(await s.features.onlineValues(ann.id)).length).toBeGreaterThan(0);
      const counts = await s.users.erase(ann.id);
      expect(counts.feature_history).toBeGreaterThan(0);
      expect(await s.features.onlineValues(ann.id)).toEqual({});
      expect(await s.features.valuesAsOf(ann.id, T(1e6))).toEqual({});
      expect((await s.features.readHistory([ann.id], (_, keys) => keys.map((_k, i) => i))).get(ann.id)).toEqual(new Map());
      expect(await s.features.eraseUser(ann.id)).toEqual({ history: 0, online: 0, state: 0 });
      const rows = await drain(s.exports.selectResponses({ filters: { includeErrors: true }, snapshotSeq: (await s.exports.logSnapshot()).snapshotSeq }, emptyStats()));
      expect(rows.map((r) => r.userId).filter((u) => u === ann.id)).toEqual([]);
      expect(await s.exports.userHash(ann)).toBe(annHash);
      expect(await s.exports.manifestsContainingUser(ann)).toEqual(['/x/a.manifest.json']);
      // Ben keeps everything; store.features.eraseUser removes his features alone.
      const benOnline = Object.keys(await s.features.onlineValues(ben.id)).length;
      const erased = await s.features.eraseUser(ben.id);
      expect(erased.online).toBe(benOnline);
      expect(erased.state).toBe(1);
      expect(erased.history).toBeGreaterThanOrEqual(benOnline);
      expect(await s.features.onlineValues(ben.id)).toEqual({});
    }));

  it('export selection: snapshot, filters, current rating, status counts, any page size', () =>
    withStore(async (s, log) => {
      const { ann, ben, cat, ids } = await seed(log);
      const snap = await s.exports.logSnapshot();
      await log.respond(ann, { at: 500 }); // after the snapshot: not exported
      const select = async (filters: Parameters<Store['exports']['selectResponses']>[0]['filters'], pageRows?: number) => {
        const stats = emptyStats();
        const rows = await drain(s.exports.selectResponses({ filters, snapshotSeq: snap.snapshotSeq, pageRows }, stats));
        return { rows, stats };
      };
      const all = await select({});
      expect(all.rows.map((r) => r.id)).toEqual([ids[0], ids[1], ids[2], ids[4]]);
      expect(all.stats).toEqual({ matched: 5, excludedByStatus: { error: 1, cancelled: 0 } });
      expect((await select({}, 1)).rows).toEqual(all.rows);
      const first = all.rows[0]!;
      expect(first).toMatchObject<Partial<LoggedResponse>>({ userId: ann.id, userCreatedAt: ann.createdAt, turnIndex: 0, createdAt: T(10), status: 'ok', collection: 'alpha', rating: -1, correction: null, modelBackend: 'extractive', modelId: 'e1' });
      expect(JSON.parse(first.renderedPromptJson)).toEqual([{ role: 'user', content: 'what is x' }]);
      expect(all.rows[2]).toMatchObject({ rating: -1, correction: 'a better answer' });
      expect((await select({ includeErrors: true })).rows.map((r) => r.userId)).toContain(cat.id);
      expect((await select({ minRating: 1 })).rows.map((r) => r.id)).toEqual([ids[2], ids[4]]); // corrected counts +1
      expect((await select({ minRating: 0 })).rows.map((r) => r.id)).toEqual([ids[2], ids[4]]);
      expect((await select({ since: T(20), until: T(50) })).rows.map((r) => r.id)).toEqual([ids[1], ids[2]]);
      expect((await select({ collection: 'beta' })).rows.map((r) => r.id)).toEqual([ids[4]]);
      expect((await select({ model: 'extractive:e1' })).rows).toHaveLength(4);
      expect((await select({ model: 'other' })).rows).toHaveLength(0);
      expect((await select({ prompt: 'ABCDEF01' })).rows).toHaveLength(4);
      expect((await select({ prompt: 'answer' })).rows).toHaveLength(4);
      expect((await select({ prompt: 'abcdef02' })).rows).toHaveLength(0);
      expect(ben.id).not.toBe(ann.id);
    }));

  it('preference plan: pairs each rated-down answer with a rated-up one to the same prompt; one plan at a time', () =>
    withStore(async (s, log) => {
      const { ids } = await seed(log);
      const { snapshotSeq } = await s.exports.logSnapshot();
      const sel = await s.exports.planPreference({ filters: {}, snapshotSeq }, promptHashOfJson);
      try {
        await expect(s.exports.planPreference({ filters: {}, snapshotSeq }, promptHashOfJson)).rejects.toBeInstanceOf(ConflictError);
        // Rated: ids0 -1 (changed), ids1 -1, ids2 -1 (corrected), ids4 +1 — all the prompt "what is x".
        expect(sel.plan).toEqual({ rated: 4, ratings: { up: 1, down: 3 }, excludedByStatus: { error: 0, cancelled: 0 }, plannedRatingPairs: 3 });
        const rows = await drain(sel.rows({ pageRows: 2 }));
        expect(rows.map((r) => [r.down.id, r.down.rating, r.up?.id, r.up?.rating])).toEqual([
          [ids[0], -1, ids[4], 1],
          [ids[1], -1, ids[4], 1],
          [ids[2], -1, ids[4], 1],
        ]);
        expect(rows[2]!.down.correction).toBe('a better answer');
      } finally {
        await sel.close();
      }
      const again = await s.exports.planPreference({ filters: { since: T(25) }, snapshotSeq }, promptHashOfJson);
      expect(again.plan).toMatchObject({ rated: 2, plannedRatingPairs: 1 });
      await again.close();
    }));

  it('pseudonymous hashes are stable per database and distinct per user; export runs name their manifests', () =>
    withStore(async (s, log) => {
      const { ann, ben, cat } = await seed(log);
      const key = await s.exports.userHashKey();
      expect(key.byteLength).toBe(32);
      expect(Buffer.from(await s.exports.userHashKey()).equals(Buffer.from(key))).toBe(true);
      const hashes = [await s.exports.userHash(ann), await s.exports.userHash(ben), await s.exports.userHash(cat)];
      expect(new Set(hashes).size).toBe(3);
      expect(await s.exports.userHash(ann)).toBe(hashes[0]);
      expect(await s.exports.userHash({ id: ann.id, createdAt: T(1) })).not.toBe(hashes[0]);

      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-export-contract-'));
      try {
        const out = path.join(dir, 'train.jsonl');
        // Every seeded row, as before the export's default exclusions (extractive, rated down uncorrected).
        const result = await runExport({ store: s, format: 'sft', out, now: NOW, includeExtractive: true, filters: { minRating: -1 } });
        expect(result.written).toBe(true);
        const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { user: string });
        expect(new Set(lines.map((l) => l.user))).toEqual(new Set([hashes[0], hashes[1]]));
        const manifest = manifestPathFor(out);
        expect((await exportsContainingUser(s, ann)).manifests).toEqual([manifest]);
        expect((await exportsContainingUser(s, cat)).manifests).toEqual([]);
        // Recorded runs: most recent first, each path once; a forgotten run is gone.
        const run = (p: string, users: string[]) => s.exports.recordRun({ manifestPath: p, format: 'sft', examples: 1, createdAt: T(400), userHashes: users });
        await run('/x/b.manifest.json', [hashes[1]!, hashes[1]!]);
        await run(manifest, [hashes[0]!]);
        const failed = await run('/x/c.manifest.json', [hashes[0]!]);
        await s.exports.forgetRun(failed);
        expect(await s.exports.manifestsContainingUser(ann)).toEqual([manifest]);
        expect(await s.exports.manifestsContainingUser(ben)).toEqual(['/x/b.manifest.json', manifest]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }));
}
