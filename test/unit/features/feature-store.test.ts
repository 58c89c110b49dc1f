/**
 * The user feature store end to end on real SQLite files: materialization from the real
 * prediction-log writer, point-in-time reads, incremental == full recompute, erasure, scheduler.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type Database from 'better-sqlite3';
import { ValidationError } from '../../../src/core/errors.ts';
import { WATERMARK_FEEDBACK, WATERMARK_RESPONSES, WATERMARK_VERSION } from '../../../src/core/store/sqlite/features.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import {
  ACTIVE_DAYS_WINDOW_DAYS,
  DAY_MS,
  FEATURE_DEFINITIONS,
  INTEREST_HALF_LIFE_DAYS,
  PRECOMPUTED_FEATURES,
} from '../../../src/features/definitions.ts';
import { FeatureMaterializer, materializeFeatures, resetFeatureStore, startFeatureScheduler } from '../../../src/features/materialize.ts';
import type { MaterializeSummary } from '../../../src/features/materialize.ts';
import { formatPersonalizationBlock } from '../../../src/features/personalize.ts';
import { FeatureStore } from '../../../src/features/store.ts';

const T0 = Date.parse('2025-03-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const words = (n: number, w = 'word') => Array.from({ length: n }, (_, i) => `${w}${i}`).join(' ');

type Db = Database.Database;
const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A store on a fresh data dir, and its connection's raw handle for setting up and probing tables. */
function tempDb(): { store: SqliteStore; db: Db; dir: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
  dirs.push(dir);
  const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
  stores.push(store);
  return { store, db: store.connection.db, dir };
}

/** Writes log rows through the product's own writers (store.users, store.predictions); documents by SQL. */
class LogBuilder {
  private readonly conversations = new Map<number, { id: string; turns: number }>();
  private docSeq = 0;
  readonly db: Db;
  constructor(readonly store: SqliteStore) {
    this.db = store.connection.db;
  }

  async user(name: string): Promise<number> {
    const key = randomUUID();
    return (await this.store.users.create({ name, apiKeyHash: key.replace(/-/g, '').padEnd(64, '0'), keyPrefix: key.slice(0, 8), isAdmin: false, createdAt: iso(T0) })).id;
  }

  doc(collection: string, title = `doc ${++this.docSeq}`): number {
    const now = iso(T0);
    const res = this.db
      .prepare('INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(collection, `/docs/${collection}/${title}-${this.docSeq}.md`, 'sha', title, 'text/markdown', 10, now, now);
    return Number(res.lastInsertRowid);
  }

  async respond(
    userId: number,
    o: { at: number; query?: string; vector?: number[] | null; collection?: string | null; docs?: number[]; answer?: string; status?: 'ok' | 'error' | 'cancelled'; newConversation?: boolean },
  ): Promise<string> {
    let conv = this.conversations.get(userId);
    const newConversation = !conv || o.newConversation === true;
    if (newConversation) {
      conv = { id: `conv_${randomUUID()}`, turns: 0 };
      this.conversations.set(userId, conv);
    }
    const id = `resp_${randomUUID()}`;
    const docs = o.docs ?? [];
    const outcome = await this.store.predictions.write({
      id,
      userId,
      conversationId: conv!.id,
      newConversation,
      turnIndex: conv!.turns++,
      createdAt: iso(o.at),
      endpoint: 'chat',
      request: { message: o.query ?? 'q' },
      query: o.query ?? 'what is the question',
      queryVector: o.vector ? Float32Array.from(o.vector) : null,
      history: [],
      collection: o.collection ?? null,
      topK: 5,
      retrieved: [],
      features: { precomputed: {}, on_demand: {} },
      promptName: 'answer',
      promptSha256: 'x',
      renderedPrompt: [],
      modelBackend: 'extractive',
      modelId: 'extractive',
      sampling: null,
      answer: o.answer ?? 'An answer [1].',
      citations: docs.map((d, i) => ({ n: i + 1, document_id: d, chunk_id: d * 100 + i, source: `/docs/${d}`, title: `t${d}`, score: 1, snippet: 's' })),
      timings: {},
      promptTokens: null,
      completionTokens: null,
      status: o.status ?? 'ok',
      errorCode: null,
      errorMessage: null,
    });
    if (!outcome.written) throw new Error(`log row not written: ${outcome.reason}`);
    return id;
  }

  async rate(responseId: string, userId: number, rating: 1 | -1, at: number, correction: string | null = null): Promise<void> {
    const row = await this.store.predictions.addFeedback({ responseId, userId, rating, correction, createdAt: iso(at) });
    if (!row) throw new Error(`feedback on ${responseId} not written`);
  }
}

/** Everything the pipeline produces, in a comparable form (history without created_at: when it ran). */
function dumpFeatures(db: Db) {
  return {
    online: db.prepare('SELECT user_id, feature, event_time, value_json FROM feature_online ORDER BY user_id, feature').all(),
    history: db.prepare('SELECT user_id, feature, event_time, value_json FROM feature_history ORDER BY user_id, feature, event_time').all(),
    state: db.prepare('SELECT user_id, state_json, interest_sum FROM feature_user_state ORDER BY user_id').all(),
  };
}

/** A copy of the database with fresh features: the full recompute to compare against. */
async function fullRecomputeCopy(db: Db, dir: string, name: string, mutate?: (copy: Db) => void): Promise<{ store: SqliteStore; db: Db }> {
  const file = path.join(dir, `${name}.sqlite`);
  db.exec(`VACUUM INTO '${file}'`);
  const copy = openSqliteStore(file);
  stores.push(copy);
  mutate?.(copy.connection.db);
  await resetFeatureStore(copy);
  await materializeFeatures(copy, { batchRows: 1_000_000 });
  return { store: copy, db: copy.connection.db };
}

/** Runs `f` over `items` one after another (the log must be written in order). */
async function seq<T, R>(items: readonly T[], f: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const [i, item] of items.entries()) out.push(await f(item, i));
  return out;
}

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Appends a random slice of log: several users, collections, vectors (two dimensions, to exercise a
 * model switch), same-millisecond and slightly out-of-order timestamps, re-ratings and corrections.
 */
async function randomLog(
  log: LogBuilder,
  rand: () => number,
  users: number[],
  docs: number[],
  clock: { ms: number },
  responses: number,
  feedback: number,
  ids: Array<{ id: string; user: number }>,
  outOfOrder = true,
): Promise<void> {
  const pick = <T,>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  for (let i = 0; i < responses; i++) {
    const r = rand();
    clock.ms += r < 0.1 ? 0 : r < 0.8 ? Math.floor(rand() * 3 * 3600_000) : Math.floor(rand() * 9 * DAY_MS);
    const user = pick(users);
    const dim = rand() < 0.9 ? 4 : 3;
    // Slightly out-of-order created_at (a concurrent request finishing first), never before T0.
    const at = outOfOrder && rand() < 0.05 ? Math.max(T0, clock.ms - 60_000) : clock.ms;
    const id = await log.respond(user, {
      at,
      query: words(1 + Math.floor(rand() * 12), 'q'),
      vector: rand() < 0.7 ? Array.from({ length: dim }, () => Math.round((rand() * 2 - 1) * 1000) / 1000) : null,
      collection: rand() < 0.3 ? pick(['docs', 'faq', 'ops']) : null,
      docs: Array.from({ length: Math.floor(rand() * 3) }, () => pick(docs)),
      answer: words(5 + Math.floor(rand() * 200)),
      status: rand() < 0.9 ? 'ok' : 'error',
      newConversation: rand() < 0.2,
    });
    ids.push({ id, user });
  }
  for (let i = 0; i < feedback && ids.length > 0; i++) {
    clock.ms += Math.floor(rand() * 3600_000);
    const target = pick(ids);
    await log.rate(target.id, target.user, rand() < 0.6 ? 1 : -1, clock.ms, rand() < 0.2 ? words(1 + Math.floor(rand() * 120), 'c') : null);
  }
}

describe('feature definitions', () => {
  it('declares every feature of the issue with a type, description, source and freshness', async () => {
    const names = FEATURE_DEFINITIONS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const required of [
      'messages_total', 'messages_7d', 'active_days_30d', 'last_seen_at', 'top_collections', 'engaged_documents',
      'disliked_documents', 'helpful_rate', 'avg_question_tokens', 'preferred_answer_length', 'interest_vector',
      'turn_index', 'seconds_since_previous_message', 'question_tokens', 'is_follow_up',
    ]) {
      expect(names).toContain(required);
    }
    for (const f of FEATURE_DEFINITIONS) {
      expect(f.description.length).toBeGreaterThan(10);
      expect(f.freshness.length).toBeGreaterThan(10);
      expect(['responses', 'feedback', 'request']).toContain(f.source);
    }
  });
});

describe('materializeFeatures', () => {
  it('computes every precomputed feature from a built log', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const ann = await log.user('ann');
    const docA = log.doc('docs');
    const docB = log.doc('faq');
    const docC = log.doc('faq');
    const day = (d: number, h = 12) => T0 + d * DAY_MS + h * 3600_000;
    const r1 = await log.respond(ann, { at: day(0), query: 'How do I reset it?', docs: [docA, docB], answer: words(30) });
    const r2 = await log.respond(ann, { at: day(0, 13), query: 'And the E-417 error', collection: 'faq', docs: [docB], answer: words(300) });
    const r3 = await log.respond(ann, { at: day(5), query: 'What about kestrelctl?', docs: [docC, docB], answer: words(50) });
    await log.respond(ann, { at: day(9), query: 'thanks', status: 'error' });
    await log.rate(r1, ann, 1, day(9, 14));
    await log.rate(r2, ann, -1, day(9, 15));
    await log.rate(r3, ann, 1, day(9, 16));

    const summary = await materializeFeatures(store);
    expect(summary).toMatchObject({ responses: 4, feedback: 3, users: 1 });
    const f = (await new FeatureStore({ store }).getOnlineFeatures(ann));
    expect(Object.keys(f).sort()).toEqual(PRECOMPUTED_FEATURES.map((d) => d.name).sort());
    expect(f.messages_total).toBe(4);
    // As of the last message (day 9 12:00): window (day 2 12:00, day 9 12:00] holds day 5 and day 9.
    expect(f.messages_7d).toBe(2);
    expect(f.active_days_30d).toBe(3);
    expect(f.last_seen_at).toBe(iso(day(9)));
    // faq: r1 (docB), r2 (filter + docB, once), r3 → 3; docs: r1 → 1.
    expect(f.top_collections).toEqual(['faq', 'docs']);
    // Tokens: "How do I reset it ?" 6, "And the E - 417 error" 6, "What about kestrelctl ?" 4, "thanks" 1.
    expect(f.avg_question_tokens).toBe(4.25);
    expect(f.interest_vector).toBeNull();
    expect(f.ratings_total).toBe(3);
    expect(f.helpful_rate).toBe(0.6667);
    // docB: +1 (r1) −1 (r2) +1 (r3) = +1; docA +1; docC +1 → ties by id.
    expect(f.engaged_documents).toEqual([docA, docB, docC]);
    expect(f.disliked_documents).toEqual([]);
    // Up-rated answers of 30 and 50 words → lower median 30.
    expect(f.preferred_answer_length).toBe(30);

    // Nothing new: a second run reads nothing and writes nothing.
    const again = await materializeFeatures(store);
    expect(again).toMatchObject({ responses: 0, feedback: 0, users: 0, historyRows: 0 });
  });

  it('learns preferred_answer_length from ratings and corrections; the latest rating per answer wins', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const bo = await log.user('bo');
    const at = (m: number) => T0 + m * 60_000;
    const short = await seq([20, 30, 40], (n, i) => log.respond(bo, { at: at(i), answer: `${words(n)} [1]` }));
    const long = await seq([300, 320], (n, i) => log.respond(bo, { at: at(10 + i), answer: words(n) }));
    for (const [i, r] of short.entries()) await log.rate(r, bo, 1, at(20 + i));
    for (const [i, r] of long.entries()) await log.rate(r, bo, -1, at(30 + i));
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    let f = (await fstore.getOnlineFeatures(bo));
    // Thumbs-down on the long answers says "not this", the short up-rated ones set the length.
    expect(f.preferred_answer_length).toBe(30);
    expect(f.helpful_rate).toBe(0.6);
    expect(formatPersonalizationBlock(f)).toContain('Preferred answer length: short (about 30 words).');

    // A correction of 60 words weighs 2: votes {20:1, 30:1, 40:1, 60:2} → weighted lower median 40.
    await log.rate(long[0]!, bo, -1, at(40), words(60, 'fix'));
    await materializeFeatures(store);
    f = (await fstore.getOnlineFeatures(bo));
    expect(f.preferred_answer_length).toBe(40);

    // Re-rating the 20-word answer down removes its vote: {30:1, 40:1, 60:2} → 40; helpful 2/5.
    await log.rate(short[0]!, bo, -1, at(50));
    await materializeFeatures(store);
    f = (await fstore.getOnlineFeatures(bo));
    expect(f.preferred_answer_length).toBe(40);
    expect(f.helpful_rate).toBe(0.4);
    expect(f.ratings_total).toBe(5);

    // Without any length signal the feature is null.
    const cy = await log.user('cy');
    await log.rate(await log.respond(cy, { at: at(60), answer: words(80) }), cy, -1, at(61));
    await materializeFeatures(store);
    expect((await fstore.getOnlineFeatures(cy)).preferred_answer_length).toBeNull();
  });

  it('derives engaged and disliked documents from citations and the current ratings', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('dee');
    const [d1, d2, d3] = [log.doc('c'), log.doc('c'), log.doc('c')];
    const at = (m: number) => T0 + m * 60_000;
    const a = await log.respond(u, { at: at(0), docs: [d1, d2] });
    const b = await log.respond(u, { at: at(1), docs: [d2, d3, d3] });
    const c = await log.respond(u, { at: at(2), docs: [d1] });
    await log.rate(a, u, 1, at(10));
    await log.rate(b, u, -1, at(11));
    await log.rate(c, u, 1, at(12));
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    let f = (await fstore.getOnlineFeatures(u));
    // d1: +2, d2: +1 −1 = 0 (neither list), d3: −1 (cited twice by one answer counts once).
    expect(f.engaged_documents).toEqual([d1]);
    expect(f.disliked_documents).toEqual([d3]);
    const before = iso(at(12));

    // Feedback changes (append-only): the user flips answer a to down.
    await log.rate(a, u, -1, at(20));
    await materializeFeatures(store);
    f = (await fstore.getOnlineFeatures(u));
    expect(f.engaged_documents).toEqual([]);
    expect(f.disliked_documents).toEqual([d2, d3]);
    expect(f.helpful_rate).toBe(0.3333);
    // The history still answers for the earlier time.
    expect((await fstore.getFeaturesAsOf(u, before)).engaged_documents).toEqual([d1]);
  });

  it('keeps a decayed mean of query vectors (half-life INTEREST_HALF_LIFE_DAYS) and resets on a model switch', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('eve');
    expect(INTEREST_HALF_LIFE_DAYS).toBe(14);
    await log.respond(u, { at: T0, vector: null });
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    expect((await fstore.getOnlineFeatures(u)).interest_vector).toBeNull();

    await log.respond(u, { at: T0 + DAY_MS, vector: [1, 0] });
    await log.respond(u, { at: T0 + 15 * DAY_MS, vector: [0, 1] });
    await materializeFeatures(store);
    // The first vector is one half-life older: weights 0.5 and 1 → (0.5, 1) / 1.5.
    expect((await fstore.getOnlineFeatures(u)).interest_vector).toEqual([0.3333, 0.6667]);
    // A response without a vector leaves it unchanged (and writes no new history row for it).
    await log.respond(u, { at: T0 + 16 * DAY_MS, vector: null });
    await materializeFeatures(store);
    expect((await fstore.getOnlineFeatures(u)).interest_vector).toEqual([0.3333, 0.6667]);
    const rows = db.prepare("SELECT count(*) FROM feature_history WHERE user_id = ? AND feature = 'interest_vector'").pluck().get(u);
    expect(rows).toBe(3);

    // Three equal-time vectors: the plain mean.
    await log.respond(u, { at: T0 + 17 * DAY_MS, vector: [1, 1, 1] });
    await log.respond(u, { at: T0 + 17 * DAY_MS, vector: [0, 0, 3] });
    await materializeFeatures(store);
    expect((await fstore.getOnlineFeatures(u)).interest_vector).toEqual([0.5, 0.5, 2]);
  });

  it('computes windowed features as of each event time, so the history is exact', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('fay');
    const times = [0, 1, 1.5, 8, 40].map((d) => T0 + d * DAY_MS);
    for (const t of times) await log.respond(u, { at: t });
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    const asOf = (t: number) => fstore.getFeaturesAsOf(u, iso(t));
    expect(await asOf(times[2]!)).toMatchObject({ messages_7d: 3, active_days_30d: 2, messages_total: 3 });
    // Day 8: (day 1, day 8] → day 1.5 and day 8; 30 days: 4 messages on 3 distinct UTC days (1 and 1.5 share one).
    expect(await asOf(times[3]!)).toMatchObject({ messages_7d: 2, active_days_30d: 3 });
    expect(await asOf(times[4]!)).toMatchObject({ messages_7d: 1, active_days_30d: 1, messages_total: 5 });
    expect(ACTIVE_DAYS_WINDOW_DAYS).toBe(30);
    // Online = as of the latest event, whatever "now" is (documented choice).
    expect((await fstore.getOnlineFeatures(u))).toMatchObject({ messages_7d: 1, active_days_30d: 1, last_seen_at: iso(times[4]!) });
  });

  it('writes history only for values that changed', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('gus');
    await log.respond(u, { at: T0, query: 'one two' });
    await log.respond(u, { at: T0 + 1000, query: 'three four' });
    const s = await materializeFeatures(store);
    const changed = db.prepare('SELECT feature FROM feature_history WHERE user_id = ? AND event_time = ? ORDER BY feature').pluck().all(u, iso(T0 + 1000));
    // Same avg tokens, same top collections (none), same (null) interest vector, same active days.
    expect(changed).toEqual(['last_seen_at', 'messages_7d', 'messages_total']);
    expect(s.historyRows).toBe(7 + 3);
  });

  it('incremental runs interleaved with new rows equal one full recompute, feature by feature', async () => {
    const { store, db, dir } = tempDb();
    const log = new LogBuilder(store);
    const rand = mulberry32(42);
    const users = await seq(['u1', 'u2', 'u3', 'u4', 'u5', 'u6'], (n) => log.user(n));
    const docs = ['docs', 'docs', 'faq', 'faq', 'ops', 'misc'].map((c) => log.doc(c));
    const clock = { ms: T0 };
    const ids: Array<{ id: string; user: number }> = [];
    let historyRows = 0;
    for (let round = 0; round < 12; round++) {
      await randomLog(log, rand, users, docs, clock, 10 + Math.floor(rand() * 40), Math.floor(rand() * 30), ids);
      const s = await materializeFeatures(store, { batchRows: 1 + Math.floor(rand() * 25) });
      historyRows += s.historyRows;
    }
    expect(ids.length).toBeGreaterThan(200);
    const full = (await fullRecomputeCopy(db, dir, 'full')).db;
    const incremental = dumpFeatures(db);
    const recomputed = dumpFeatures(full);
    expect(incremental.online.length).toBe(users.length * PRECOMPUTED_FEATURES.length);
    expect(incremental.history.length).toBeGreaterThan(500);
    expect(incremental.online).toEqual(recomputed.online);
    expect(incremental.history).toEqual(recomputed.history);
    expect(incremental.state).toEqual(recomputed.state);
    // And the online table is exactly the latest history row per (user, feature).
    const latest = db
      .prepare('SELECT user_id, feature, max(event_time) AS event_time, value_json FROM feature_history GROUP BY user_id, feature ORDER BY user_id, feature')
      .all();
    expect(incremental.online).toEqual(latest);
    expect(historyRows).toBeGreaterThanOrEqual(incremental.history.length);
  });

  it('a batch that fails is rolled back with its watermarks: nothing double-counted or lost', async () => {
    const { store, db, dir } = tempDb();
    const log = new LogBuilder(store);
    const rand = mulberry32(7);
    const users = await seq(['a1', 'a2', 'a3'], (n) => log.user(n));
    const docs = [log.doc('x'), log.doc('y')];
    const ids: Array<{ id: string; user: number }> = [];
    await randomLog(log, rand, users, docs, { ms: T0 }, 120, 60, ids);
    // Fail the pipeline once it reaches the middle of the log (a crash mid-run, after some committed batches).
    const middle = db.prepare('SELECT created_at FROM responses ORDER BY seq LIMIT 1 OFFSET 60').pluck().get() as string;
    db.exec(`CREATE TEMP TRIGGER boom BEFORE INSERT ON feature_history WHEN new.feature = 'messages_total' AND new.event_time >= '${middle}' BEGIN SELECT RAISE(ABORT, 'simulated crash'); END`);
    await expect(materializeFeatures(store, { batchRows: 7 })).rejects.toThrow(/simulated crash/);
    const wm = db.prepare('SELECT value FROM watermarks WHERE name = ?').pluck();
    const seqAtCrash = wm.get(WATERMARK_RESPONSES) as number;
    expect(seqAtCrash).toBeGreaterThan(0);
    expect(seqAtCrash).toBeLessThan(db.prepare('SELECT max(seq) FROM responses').pluck().get() as number);
    db.exec('DROP TRIGGER boom');
    await materializeFeatures(store, { batchRows: 7 });
    expect(wm.get(WATERMARK_RESPONSES)).toBe(db.prepare('SELECT max(seq) FROM responses').pluck().get());
    expect(wm.get(WATERMARK_FEEDBACK)).toBe(db.prepare('SELECT max(id) FROM feedback').pluck().get());
    expect(dumpFeatures(db)).toEqual(dumpFeatures((await fullRecomputeCopy(db, dir, 'full')).db));
  });

  it('rebuilds from the whole log when asked or when the definitions version changed', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('hal');
    await log.respond(u, { at: T0 });
    await materializeFeatures(store);
    const before = dumpFeatures(db);
    const rebuilt = await materializeFeatures(store, { rebuild: true });
    expect(rebuilt).toMatchObject({ rebuilt: true, responses: 1 });
    expect(dumpFeatures(db)).toEqual(before);
    db.prepare('UPDATE watermarks SET value = -1 WHERE name = ?').run(WATERMARK_VERSION);
    expect(await materializeFeatures(store)).toMatchObject({ rebuilt: true, responses: 1 });
    expect(await materializeFeatures(store)).toMatchObject({ rebuilt: false, responses: 0 });
    expect(dumpFeatures(db)).toEqual(before);
  });

  it('stamps history rows with the pipeline clock and rejects bad options', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    await log.respond(await log.user('ivy'), { at: T0 });
    const cacheBefore = db.pragma('cache_size', { simple: true });
    await materializeFeatures(store, { now: () => new Date('2030-01-01T00:00:00.000Z') });
    // The bigger page cache of a run is put back (the connection may be a server's).
    expect(db.pragma('cache_size', { simple: true })).toBe(cacheBefore);
    expect(db.prepare('SELECT DISTINCT created_at FROM feature_history').pluck().all()).toEqual(['2030-01-01T00:00:00.000Z']);
    await expect(materializeFeatures(store, { batchRows: 0 })).rejects.toThrow(ValidationError);
  });
});

describe('concurrent materializers', () => {
  it('a batch read before another run committed is refused (stale) and nothing is double-counted', async () => {
    const { store, db, dir } = tempDb();
    const other = openSqliteStore(path.join(dir, 'mneme.sqlite'));
    stores.push(other);
    const log = new LogBuilder(store);
    const users = await seq(['c1', 'c2'], (n) => log.user(n));
    await randomLog(log, mulberry32(21), users, [log.doc('d')], { ms: T0 }, 30, 10, []);
    const a = new FeatureMaterializer(store, { batchRows: 4 });
    const b = new FeatureMaterializer(other, { batchRows: 4 });
    // Both read the same batch; the first commit wins, the second is refused and writes nothing.
    const [ra, rb] = await Promise.all([a.runBatch(), b.runBatch()]);
    expect(ra).toMatchObject({ responses: 4, rebuilt: true });
    expect(rb).toMatchObject({ stale: true, responses: 0 });
    expect(db.prepare('SELECT value FROM watermarks WHERE name = ?').pluck().get(WATERMARK_RESPONSES)).toBeGreaterThan(0);
    // Two whole runs at once, on two connections: the result is exactly one full recompute.
    await Promise.all([materializeFeatures(store, { batchRows: 3 }), materializeFeatures(other, { batchRows: 5 })]);
    expect(dumpFeatures(db)).toEqual(dumpFeatures((await fullRecomputeCopy(db, dir, 'full')).db));
  });
});

describe('FeatureStore point-in-time reads', () => {
  it('never returns a value recorded after t, and includes one recorded exactly at t', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('jo');
    const t1 = T0 + 1000;
    const t2 = T0 + 2000;
    await log.respond(u, { at: t1, query: 'a' });
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    const atT1 = (await fstore.getFeaturesAsOf(u, iso(t1)));
    expect(atT1.messages_total).toBe(1);
    // Values recorded later (a new message at t2) must not leak into reads for t1.
    await log.respond(u, { at: t2, query: 'b c d' });
    const fb = await log.respond(u, { at: t2 + 10, query: 'e' });
    await log.rate(fb, u, 1, t2 + 20);
    await materializeFeatures(store);
    expect((await fstore.getFeaturesAsOf(u, iso(t1)))).toEqual(atT1);
    expect((await fstore.getFeaturesAsOf(u, iso(t2 - 1)))).toEqual(atT1);
    expect((await fstore.getFeaturesAsOf(u, iso(t2))).messages_total).toBe(2);
    expect((await fstore.getFeaturesAsOf(u, iso(t1 - 1)))).toEqual({});
    // Feedback features appear only from the rating's own time.
    expect((await fstore.getFeaturesAsOf(u, iso(t2 + 19))).helpful_rate).toBeUndefined();
    expect((await fstore.getFeaturesAsOf(u, iso(t2 + 20))).helpful_rate).toBe(1);
    // Offsets and dates are accepted and normalized; garbage is a ValidationError.
    expect((await fstore.getFeaturesAsOf(u, '2025-03-01T01:00:01+01:00')).messages_total).toBe(1);
    expect((await fstore.getFeaturesAsOf(u, '2025-03-01'))).toEqual({});
    await expect(fstore.getFeaturesAsOf(u, 'yesterday')).rejects.toThrow(ValidationError);
    await expect(fstore.getFeaturesAsOf(u, '2025-03-01T00:00:00')).rejects.toThrow(ValidationError);
    await expect(fstore.getFeaturesAsOf(0, iso(t1))).rejects.toThrow(ValidationError);
  });

  it('as-of values equal what a full recompute over only the rows available at t produces', async () => {
    const { store, db, dir } = tempDb();
    const log = new LogBuilder(store);
    const rand = mulberry32(99);
    const users = await seq(['k1', 'k2', 'k3'], (n) => log.user(n));
    const docs = [log.doc('docs'), log.doc('faq'), log.doc('ops')];
    const clock = { ms: T0 };
    const ids: Array<{ id: string; user: number }> = [];
    // Monotonic times (no out-of-order rows) so "rows available at t" is simply created_at <= t.
    for (let i = 0; i < 4; i++) await randomLog(log, mulberry32(i), users, docs, clock, 40, 20, ids, false);
    await materializeFeatures(store, { batchRows: 13 });
    const fstore = new FeatureStore({ store });
    const times = db.prepare('SELECT created_at FROM responses UNION SELECT created_at FROM feedback ORDER BY 1').pluck().all() as string[];
    for (let k = 0; k < 4; k++) {
      const t = times[Math.floor(rand() * times.length)]!;
      const cut = await fullRecomputeCopy(db, dir, `cut${k}`, (copy) => {
        copy.prepare('DELETE FROM feedback WHERE created_at > ?').run(t);
        copy.prepare('DELETE FROM responses WHERE created_at > ?').run(t);
      });
      const cutStore = new FeatureStore({ store: cut.store });
      for (const u of users) expect(await fstore.getFeaturesAsOf(u, t)).toEqual(await cutStore.getOnlineFeatures(u));
    }
  });

  it('pointInTimeJoin equals getFeaturesAsOf row by row and never uses a later event', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const rand = mulberry32(5);
    const users = await seq(['p1', 'p2', 'p3', 'p4'], (n) => log.user(n));
    const docs = [log.doc('docs'), log.doc('faq')];
    const ids: Array<{ id: string; user: number }> = [];
    await randomLog(log, rand, users, docs, { ms: T0 }, 150, 80, ids);
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    const eventTimes = db.prepare('SELECT DISTINCT event_time FROM feature_history').pluck().all() as string[];
    const rows: Array<{ userId: number; time: string }> = [];
    for (let i = 0; i < 600; i++) {
      const base = Date.parse(eventTimes[Math.floor(rand() * eventTimes.length)]!);
      // Exactly on an event time, just before, just after, or anywhere (including before everything).
      const delta = [0, -1, 1, Math.floor((rand() - 0.5) * 30 * DAY_MS)][Math.floor(rand() * 4)]!;
      rows.push({ userId: users[Math.floor(rand() * users.length)]! + (i % 97 === 0 ? 1000 : 0), time: iso(base + delta) });
    }
    const joined = (await fstore.pointInTimeJoin(rows));
    expect(joined).toHaveLength(rows.length);
    const history = db.prepare('SELECT feature, event_time, value_json FROM feature_history WHERE user_id = ?');
    for (const [i, r] of rows.entries()) {
      expect(joined[i]).toEqual(await fstore.getFeaturesAsOf(r.userId, r.time));
      // Brute force: the latest row at or before t, per feature.
      const expected: Record<string, unknown> = {};
      const best: Record<string, string> = {};
      for (const h of history.all(r.userId) as Array<{ feature: string; event_time: string; value_json: string }>) {
        if (h.event_time <= r.time && (best[h.feature] === undefined || h.event_time > best[h.feature]!)) {
          best[h.feature] = h.event_time;
          expected[h.feature] = JSON.parse(h.value_json);
        }
      }
      expect(joined[i]).toEqual(expected);
    }
    // A sparse sample (values read by key lookups rather than a scan) and a feature subset agree too.
    const few = [rows[1]!, rows[2]!, rows[3]!];
    expect(await fstore.pointInTimeJoin(few)).toEqual(await seq(few, (r) => fstore.getFeaturesAsOf(r.userId, r.time)));
    const subset = (await fstore.pointInTimeJoin(rows, { features: ['messages_total', 'helpful_rate', 'no_such_feature'] }));
    subset.forEach((r, i) => {
      const { messages_total, helpful_rate } = joined[i]!;
      expect(r).toEqual({ ...(messages_total === undefined ? {} : { messages_total }), ...(helpful_rate === undefined ? {} : { helpful_rate }) });
    });
    expect(joined.some((r) => Object.keys(r).length === 0)).toBe(true);
    expect(joined.some((r) => Object.keys(r).length === PRECOMPUTED_FEATURES.length)).toBe(true);
    await expect(fstore.pointInTimeJoin([{ userId: users[0]!, time: iso(T0) }, { userId: users[0]!, time: 'nope' }])).rejects.toThrow(/row 1/);
  });
});

describe('erasure', () => {
  it('eraseUser removes every feature row of the user and leaves other users alone', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const rand = mulberry32(3);
    const users = await seq(['x1', 'x2', 'x3'], (n) => log.user(n));
    await randomLog(log, rand, users, [log.doc('d')], { ms: T0 }, 90, 40, []);
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    const [gone, ...kept] = users as [number, ...number[]];
    const countsOf = (u: number) =>
      ['feature_history', 'feature_online', 'feature_user_state'].map((t) => db.prepare(`SELECT count(*) FROM ${t} WHERE user_id = ?`).pluck().get(u) as number);
    const keptBefore = kept.map(countsOf);
    const keptValues = await seq(kept, (u) => fstore.getOnlineFeatures(u));
    const erased = (await fstore.eraseUser(gone));
    expect(erased.history).toBeGreaterThan(0);
    expect(erased.online).toBe(PRECOMPUTED_FEATURES.length);
    expect(erased.state).toBe(1);
    expect(countsOf(gone)).toEqual([0, 0, 0]);
    expect((await fstore.getOnlineFeatures(gone))).toEqual({});
    expect((await fstore.getFeaturesAsOf(gone, iso(T0 + 1000 * DAY_MS)))).toEqual({});
    expect(kept.map(countsOf)).toEqual(keptBefore);
    expect(await seq(kept, (u) => fstore.getOnlineFeatures(u))).toEqual(keptValues);
  });

  it('erasing a user account leaves nothing of them anywhere, and materialization does not bring them back', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const users = await seq(['y1', 'y2'], (n) => log.user(n));
    await randomLog(log, mulberry32(11), users, [log.doc('d')], { ms: T0 }, 60, 30, []);
    await materializeFeatures(store);
    const fstore = new FeatureStore({ store });
    await store.users.erase(users[0]!);
    await materializeFeatures(store);
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%user_id%' AND sql NOT LIKE 'CREATE VIRTUAL%'").pluck().all() as string[];
    expect(tables).toEqual(expect.arrayContaining(['feature_history', 'feature_online', 'feature_user_state', 'responses', 'feedback']));
    for (const t of tables) expect(db.prepare(`SELECT count(*) FROM "${t}" WHERE user_id = ?`).pluck().get(users[0]), t).toBe(0);
    expect((await fstore.getOnlineFeatures(users[1]!)).messages_total).toBeGreaterThan(0);
  });
});

describe('startFeatureScheduler', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('materializes on its interval, never overlapping, and stops', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('zed');
    await log.respond(u, { at: T0 });
    const runs: MaterializeSummary[] = [];
    const errors: unknown[] = [];
    const scheduler = startFeatureScheduler(store, 0.05, (e) => errors.push(e), { onRun: (s) => runs.push(s), batchRows: 1 });
    for (let i = 0; i < 100 && runs.length === 0; i++) await sleep(10);
    expect(runs[0]).toMatchObject({ responses: 1 });
    await log.respond(u, { at: T0 + 1000 });
    await log.respond(u, { at: T0 + 2000 });
    for (let i = 0; i < 100 && runs.length < 2; i++) await sleep(10);
    expect(runs[1]).toMatchObject({ responses: 2 });
    expect((await new FeatureStore({ store }).getOnlineFeatures(u)).messages_total).toBe(3);
    scheduler.stop();
    await log.respond(u, { at: T0 + 3000 });
    await sleep(200);
    expect(runs).toHaveLength(2);
    expect((await new FeatureStore({ store }).getOnlineFeatures(u)).messages_total).toBe(3);
    expect(errors).toEqual([]);
  });

  it('reports failures to onError and keeps going; interval 0 disables it', async () => {
    const { store, db } = tempDb();
    const log = new LogBuilder(store);
    const u = await log.user('ace');
    await log.respond(u, { at: T0 });
    const disabled = startFeatureScheduler(store, 0, () => {});
    await sleep(50);
    expect(db.prepare('SELECT count(*) FROM feature_online').pluck().get()).toBe(0);
    disabled.stop();
    expect(() => startFeatureScheduler(store, -1, () => {})).toThrow(ValidationError);

    db.exec("CREATE TEMP TRIGGER boom BEFORE INSERT ON feature_history BEGIN SELECT RAISE(ABORT, 'disk on fire'); END");
    const errors: unknown[] = [];
    const runs: MaterializeSummary[] = [];
    const s = startFeatureScheduler(store, 0.05, (e) => errors.push(e), { onRun: (r) => runs.push(r) });
    for (let i = 0; i < 100 && errors.length === 0; i++) await sleep(10);
    expect(String(errors[0])).toMatch(/disk on fire/);
    db.exec('DROP TRIGGER boom');
    for (let i = 0; i < 100 && runs.length === 0; i++) await sleep(10);
    s.stop();
    expect(runs[0]).toMatchObject({ responses: 1 });
  });
});
