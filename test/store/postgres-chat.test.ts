/**
 * PostgreSQL engine, chat-side aggregates (users, conversations, predictions, monitoring): what the
 * shared contract (engines.test.ts) cannot say — records and logged JSON read back identical to the
 * SQLite engine's, NUL in request content, erasure of a table added later and erasure racing writes
 * from another replica, and the prediction log / feedback numbered in commit order across replicas.
 * Needs MNEME_TEST_DATABASE_URL (see postgres-env.ts): skipped with the reason printed when unset,
 * a failure when CI is set.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/core/store/index.ts';
import { openPostgresStore } from '../../src/core/store/postgres/index.ts';
import type { PredictionRecord } from '../../src/core/store/predictions.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import type { UserRecord } from '../../src/core/store/users.ts';
import { tempDir } from '../helpers/cli.ts';
import { engineRunsRequired, findPostgresTestServer } from './postgres-env.ts';

const postgres = await findPostgresTestServer();
const dirs: string[] = [];
afterAll(async () => {
  await postgres.server?.dropCreatedDatabases();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const T = (s: number) => new Date(Date.parse('2025-03-01T10:00:00.000Z') + s * 1000).toISOString();

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function turn(u: UserRecord, o: { id: string; conv: string; isNew: boolean; query: string; at: string; request?: unknown; status?: PredictionRecord['status'] }): PredictionRecord {
  const status = o.status ?? 'ok';
  return {
    id: o.id, userId: u.id, userCreatedAt: u.createdAt, conversationId: o.conv, newConversation: o.isNew, turnIndex: 0, createdAt: o.at,
    endpoint: 'chat', request: o.request ?? { message: o.query }, query: o.query, queryVector: new Float32Array([0.5, -0.25, 1e-7]), history: [],
    collection: null, topK: 5,
    retrieved: [{ chunk_id: 7, document_id: 3, content_sha256: 'x', score: 0.1 + 0.2, bm25_rank: 1, dense_rank: null, in_context: true }],
    features: { precomputed: { z: 1, a: [1.5e-9, 'ü'] }, on_demand: {} }, promptName: 'answer', promptSha256: 'p', renderedPrompt: [{ role: 'user', content: o.query }],
    modelBackend: 'extractive', modelId: 'e1', sampling: { maxTokens: 64, temperature: 0.7, topP: 0.95, seed: 7, stop: ['\n\n'] }, answer: status === 'ok' ? `answer to ${o.query} [1]` : null,
    citations: [{ n: 1, document_id: 3, chunk_id: 7, source: '/d.md', title: 'Ünïcode 📚', score: 0.30000000000000004, snippet: 's "q" \\ \n' }],
    timings: { total_ms: 6.25, features_ms: 1, retrieve_ms: null, generate_ms: 3, first_token_ms: 1 }, promptTokens: 1, completionTokens: 2,
    status, errorCode: status === 'error' ? 'upstream_error' : null, errorMessage: status === 'error' ? 'upstream said no' : null,
  };
}

/** The same users, turns and feedback on any engine; returns the users. */
async function populate(s: Store): Promise<{ ann: UserRecord; ben: UserRecord }> {
  const ann = await s.users.create({ name: 'ann', apiKeyHash: 'hash-ann', keyPrefix: 'mn_ann', isAdmin: true, createdAt: T(0) });
  const ben = await s.users.create({ name: 'ben', apiKeyHash: 'hash-ben', keyPrefix: 'mn_ben', isAdmin: false, createdAt: T(1) });
  // Key order, nesting, numbers and escapes that a re-encoding JSON type would change.
  const request = { z: 1, a: { y: [3, 2, 1], b: 'x' }, message: 'first', n: 1e21, f: 0.1, deep: [[[{ k: 'v' }]]] };
  await s.predictions.write(turn(ann, { id: 'resp_B', conv: 'conv_b', isNew: true, query: 'first question', at: T(10), request }));
  await s.predictions.write(turn(ann, { id: 'resp_a', conv: 'conv_b', isNew: false, query: 'failed', at: T(20), status: 'error' }));
  await s.predictions.write(turn(ann, { id: 'resp_c', conv: 'conv_b', isNew: false, query: 'second', at: T(30) }));
  await s.predictions.write(turn(ben, { id: 'resp_d', conv: 'Conv_B', isNew: true, query: 'bens', at: T(40) }));
  await s.conversations.create({ id: 'conv_a', userId: ann.id, title: 'tie', createdAt: T(5) });
  await s.conversations.touch('conv_a', T(50));
  await s.conversations.create({ id: 'conv_Z', userId: ann.id, title: 'tie too', createdAt: T(5) });
  await s.conversations.touch('conv_Z', T(50));
  await s.predictions.addFeedback({ responseId: 'resp_B', userId: ann.id, rating: 1, correction: null, createdAt: T(60) });
  await s.predictions.addFeedback({ responseId: 'resp_B', userId: ann.id, rating: -1, correction: 'better: ü', createdAt: T(61) });
  await s.predictions.addFeedback({ responseId: 'resp_d', userId: ben.id, rating: -1, correction: null, createdAt: T(62) });
  return { ann, ben };
}

/** Everything the chat-side interfaces read back, with wall-clock stamps (assistant turns, touches by a write) blanked. */
async function readBack(s: Store, ann: UserRecord, ben: UserRecord): Promise<unknown> {
  const wall = (iso: string) => (iso.startsWith('2025-03-01') ? iso : 'wall-clock');
  const transcript = await s.conversations.transcript(ann.id, 'conv_b', 100);
  const pages = await s.conversations.listPage(ann.id, { limit: 10, before: { updatedAt: T(50), id: 'conv_a' } });
  return {
    users: await s.users.list(),
    cred: await s.users.findByKeyHash('hash-ben'),
    transcript: transcript && { conversation: { ...transcript.conversation, updatedAt: wall(transcript.conversation.updatedAt) }, messages: transcript.messages.map((m) => ({ ...m, createdAt: wall(m.createdAt) })) },
    history: await s.conversations.history(ann.id, 'conv_b', 10),
    tiePage: (await s.conversations.listPage(ann.id, { limit: 10 })).filter((c) => c.updatedAt === T(50)),
    afterCursor: pages.map((c) => ({ ...c, updatedAt: wall(c.updatedAt) })),
    last: await s.conversations.lastUserMessageAt(ben.id),
    owned: [await s.predictions.isOwnedBy('resp_d', ben.id), await s.predictions.isOwnedBy('resp_d', ann.id)],
    overview: await s.monitoring.overview(T(25)),
    samples: await s.monitoring.timeseriesSamples(T(0), T(100), 10),
    thumbsDown: await s.monitoring.thumbsDown(10),
    health: await s.monitoring.health(),
  };
}

const LOG_COLUMNS = ['request_json', 'history_json', 'retrieved_json', 'features_json', 'rendered_prompt_json', 'sampling_json', 'citations_json', 'timings_json'];

if (!postgres.server) {
  if (engineRunsRequired()) {
    it('PostgreSQL chat-store tests run in CI (MNEME_TEST_DATABASE_URL must point at a reachable server)', () => {
      throw new Error(`CI is set but the PostgreSQL engine cannot be tested: ${postgres.reason}`);
    });
  } else {
    console.warn(`[postgres chat stores] skipping: ${postgres.reason}`);
    describe.skip(`PostgreSQL chat stores (skipped: ${postgres.reason})`, () => {
      it('needs a PostgreSQL server', () => undefined);
    });
  }
} else {
  const server = postgres.server;

  describe('PostgreSQL chat stores', () => {
    it('read back exactly what the SQLite engine reads back: records, byte-wise id order, logged JSON text and query vectors', async () => {
      const dir = tempDir('mneme-pg-chat-');
      dirs.push(dir);
      const file = path.join(dir, 'mneme.sqlite');
      const url = await server.createDatabase();
      const lite = openSqliteStore(file);
      const pgs = await openPostgresStore(url);
      try {
        const a = await populate(lite);
        const b = await populate(pgs);
        expect(b.ann.id).toBe(a.ann.id);
        const fromPg = await readBack(pgs, b.ann, b.ben);
        expect(fromPg).toEqual(await readBack(lite, a.ann, a.ben));
        // Byte order of ids ('conv_Z' < 'conv_a'), whatever the database's collation.
        expect((fromPg as { tiePage: Array<{ id: string }> }).tiePage.map((c) => c.id)).toEqual(['conv_a', 'conv_Z']);
        const cols = LOG_COLUMNS.join(', ');
        const raw = new Database(file, { readonly: true });
        const liteRows = raw.prepare(`SELECT id, ${cols}, query_vector FROM responses ORDER BY seq`).all() as Array<Record<string, unknown>>;
        raw.close();
        const pgRows = await withClient(url, async (c) =>
          (await c.query(`SELECT id, ${LOG_COLUMNS.map((k) => `${k}::text AS ${k}`).join(', ')}, query_vector FROM responses ORDER BY seq`)).rows as Array<Record<string, unknown>>,
        );
        expect(pgRows).toEqual(liteRows);
        expect(pgRows).toHaveLength(4);
      } finally {
        lite.close();
        await pgs.close();
      }
    });

    it('NUL in a question, an answer and a request never fails the write: text keeps U+FFFD, JSON keeps the \\u0000 escape', async () => {
      const url = await server.createDatabase();
      const s = await openPostgresStore(url);
      try {
        const ann = await s.users.create({ name: 'ann', apiKeyHash: 'h', keyPrefix: 'p', isAdmin: false, createdAt: T(0) });
        const r = turn(ann, { id: 'r1', conv: 'c1', isNew: true, query: 'a\u0000b', at: T(1), request: { message: 'a\u0000b' } });
        expect(await s.predictions.write({ ...r, answer: 'x\u0000' })).toEqual({ written: true });
        const fb = await s.predictions.addFeedback({ responseId: 'r1', userId: ann.id, rating: -1, correction: '\u0000fix', createdAt: T(2) });
        expect(fb?.correction).toBe('\uFFFDfix');
        const t = await s.conversations.transcript(ann.id, 'c1', 10);
        expect(t?.conversation.title).toBe('a\uFFFDb');
        expect(t?.messages.map((m) => [m.content, m.correction])).toEqual([['a\uFFFDb', null], ['x\uFFFD', '\uFFFDfix']]);
        const json = await withClient(url, async (c) => (await c.query<{ j: string }>('SELECT request_json::text AS j FROM responses')).rows[0]?.j);
        expect(json).toBe(JSON.stringify({ message: 'a\u0000b' }));
      } finally {
        await s.close();
      }
    });

    it('erase covers a table with user_id added after this build (information_schema), and only that user\'s rows', async () => {
      const url = await server.createDatabase();
      const s = await openPostgresStore(url);
      try {
        const ann = await s.users.create({ name: 'ann', apiKeyHash: 'h1', keyPrefix: 'p', isAdmin: false, createdAt: T(0) });
        const ben = await s.users.create({ name: 'ben', apiKeyHash: 'h2', keyPrefix: 'p', isAdmin: false, createdAt: T(0) });
        await withClient(url, async (c) => {
          await c.query('CREATE TABLE later_notes (id serial PRIMARY KEY, user_id bigint NOT NULL, note text)');
          await c.query('CREATE VIEW later_view AS SELECT user_id FROM later_notes');
          await c.query("INSERT INTO later_notes (user_id, note) VALUES ($1, 'a1'), ($1, 'a2'), ($2, 'b')", [ann.id, ben.id]);
        });
        expect(await s.users.userDataTables()).toContain('later_notes');
        expect(await s.users.userDataTables()).not.toContain('later_view');
        await s.predictions.write(turn(ann, { id: 'r1', conv: 'c1', isNew: true, query: 'q', at: T(1) }));
        const counts = await s.users.erase(ann.id);
        expect(counts).toMatchObject({ later_notes: 2, users: 1, responses: 1, messages: 2, conversations: 1, feedback: 0 });
        const left = await withClient(url, async (c) => (await c.query<{ user_id: string }>('SELECT user_id FROM later_notes')).rows.map((r) => Number(r.user_id)));
        expect(left).toEqual([ben.id]);
        expect(await s.users.erase(ann.id)).toMatchObject({ users: 0, later_notes: 0 });
      } finally {
        await s.close();
      }
    });

    it('erase on one replica while another writes the user\'s log: every write is erased or dropped, nothing of the user survives', async () => {
      const url = await server.createDatabase();
      const [a, b] = await Promise.all([openPostgresStore(url), openPostgresStore(url)]);
      try {
        const ann = await a.users.create({ name: 'ann', apiKeyHash: 'h1', keyPrefix: 'p', isAdmin: false, createdAt: T(0) });
        const ben = await a.users.create({ name: 'ben', apiKeyHash: 'h2', keyPrefix: 'p', isAdmin: false, createdAt: T(0) });
        await a.predictions.write(turn(ann, { id: 'r0', conv: 'c0', isNew: true, query: 'q', at: T(1) }));
        const writes = Array.from({ length: 40 }, (_, i) => a.predictions.write(turn(ann, { id: `r${i + 1}`, conv: `c${i + 1}`, isNew: true, query: `q${i}`, at: T(2 + i) })));
        const erased = b.users.erase(ann.id);
        const outcomes = await Promise.all(writes);
        await erased;
        await b.predictions.write(turn(ben, { id: 'rb', conv: 'cb', isNew: true, query: 'ben', at: T(90) }));
        const late = await a.predictions.write(turn(ann, { id: 'late', conv: 'c0', isNew: false, query: 'late', at: T(99) }));
        expect(late).toEqual({ written: false, reason: 'user_erased' });
        expect(outcomes.every((o) => o.written || o.reason === 'user_erased')).toBe(true);
        for (const t of await a.users.userDataTables()) {
          const n = await withClient(url, async (c) => (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t} WHERE user_id = $1`, [ann.id])).rows[0]?.n);
          expect(n, t).toBe(0);
        }
        expect(await a.predictions.isOwnedBy('rb', ben.id)).toBe(true);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    it('two replicas logging at once: a reader following responses.seq and feedback.id misses no row', async () => {
      const url = await server.createDatabase();
      const [a, b] = await Promise.all([openPostgresStore(url), openPostgresStore(url)]);
      const reader = new pg.Client({ connectionString: url });
      await reader.connect();
      try {
        const ann = await a.users.create({ name: 'ann', apiKeyHash: 'h1', keyPrefix: 'p', isAdmin: false, createdAt: T(0) });
        const seenSeq = new Set<number>();
        const seenFeedback = new Set<number>();
        let lastSeq = 0;
        let lastFeedback = 0;
        let writing = true;
        const follow = (async () => {
          for (;;) {
            const final = !writing;
            for (const r of (await reader.query<{ seq: string }>('SELECT seq FROM responses WHERE seq > $1 ORDER BY seq', [lastSeq])).rows) {
              seenSeq.add(Number(r.seq));
              lastSeq = Number(r.seq);
            }
            for (const r of (await reader.query<{ id: string }>('SELECT id FROM feedback WHERE id > $1 ORDER BY id', [lastFeedback])).rows) {
              seenFeedback.add(Number(r.id));
              lastFeedback = Number(r.id);
            }
            if (final) return;
            await new Promise((r) => setImmediate(r));
          }
        })();
        const log = (s: Store, who: string) =>
          Promise.all(Array.from({ length: 4 }, async (_, w) => {
            for (let i = 0; i < 10; i++) {
              const id = `${who}-${w}-${i}`;
              await s.predictions.write(turn(ann, { id, conv: `c-${id}`, isNew: true, query: id, at: T(i) }));
              await s.predictions.addFeedback({ responseId: id, userId: ann.id, rating: 1, correction: null, createdAt: T(i) });
            }
          }));
        await Promise.all([log(a, 'a'), log(b, 'b')]);
        writing = false;
        await follow;
        const all = await reader.query<{ seq: string }>('SELECT seq FROM responses');
        const allFeedback = await reader.query<{ id: string }>('SELECT id FROM feedback');
        expect(all.rows).toHaveLength(80);
        expect(all.rows.map((r) => Number(r.seq)).filter((x) => !seenSeq.has(x))).toEqual([]);
        expect(allFeedback.rows.map((r) => Number(r.id)).filter((x) => !seenFeedback.has(x))).toEqual([]);
      } finally {
        await reader.end();
        await Promise.all([a.close(), b.close()]);
      }
    });
  });
}
