/**
 * The conversations, admin and web routers over real HTTP (127.0.0.1:0) on a real SQLite file,
 * mounted the way the app mounts them: web pages before authentication, the rest after it.
 * Prediction-log rows are written with the real writer (src/chat/log.ts).
 */
import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Citation } from '../../../src/chat/citations.ts';
import { authenticate } from '../../../src/chat/http/auth.ts';
import { errorHandler } from '../../../src/chat/http/errors.ts';
import { adminRouter } from '../../../src/chat/http/routes/admin.ts';
import { conversationsRouter } from '../../../src/chat/http/routes/conversations.ts';
import { CONTENT_SECURITY_POLICY, IMMUTABLE_CACHE_CONTROL, webRouter } from '../../../src/chat/http/routes/web.ts';
import { writePredictionLog } from '../../../src/chat/log.ts';
import type { PredictionRecord } from '../../../src/chat/log.ts';
import { createUser } from '../../../src/chat/users.ts';
import Database from 'better-sqlite3';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { buildWeb, renderPage } from '../../../src/web/build.ts';

const NOW = Date.parse('2025-03-01T10:30:20.000Z');
const iso = (minutesBeforeNow: number) => new Date(NOW - minutesBeforeNow * 60_000).toISOString();

function citation(n: number, over: Partial<Citation> = {}): Citation {
  return { n, document_id: 1, chunk_id: n, source: '/docs/manual.md', title: 'Manual <v2>', score: 0.03, snippet: 'Flush for five minutes.', ...over };
}

let seq = 0;
/** Writes one turn with the real prediction-log writer. */
async function logTurn(store: SqliteStore, o: { userId: number; conv: string; isNew: boolean; query: string; answer?: string; status?: PredictionRecord['status']; createdAt: string; total?: number; topScore?: number | null; citations?: Citation[] }): Promise<string> {
  const id = `resp_${++seq}`;
  await writePredictionLog(store, {
    id,
    userId: o.userId,
    conversationId: o.conv,
    newConversation: o.isNew,
    turnIndex: 0,
    createdAt: o.createdAt,
    endpoint: 'chat',
    request: { message: o.query },
    query: o.query,
    queryVector: null,
    history: [],
    collection: null,
    topK: 6,
    retrieved:
      o.topScore === null
        ? []
        : [{ chunk_id: 1, document_id: 1, content_sha256: 'x', score: o.topScore ?? 0.03, bm25_rank: 1, dense_rank: 1, in_context: true }],
    features: { precomputed: {}, on_demand: {} },
    promptName: 'answer',
    promptSha256: 'a'.repeat(64),
    renderedPrompt: [],
    modelBackend: 'extractive',
    modelId: 'extractive-v1',
    sampling: null,
    answer: o.answer ?? `Answer to ${o.query} [1]`,
    citations: o.citations ?? [citation(1)],
    timings: { features_ms: 1, retrieve_ms: 10, generate_ms: (o.total ?? 100) - 11, total_ms: o.total ?? 100 },
    promptTokens: 10,
    completionTokens: 5,
    status: o.status ?? 'ok',
    errorCode: o.status === 'error' ? 'upstream_error' : null,
    errorMessage: null,
  });
  return id;
}

async function rate(store: SqliteStore, responseId: string, userId: number, rating: 1 | -1, createdAt: string, correction: string | null = null): Promise<void> {
  expect(await store.predictions.addFeedback({ responseId, userId, rating, correction, createdAt })).not.toBeNull();
}

describe('conversations, admin and web routers', () => {
  let dir: string;
  let store: SqliteStore;
  /** Raw handle on the same file, for set-up and probes. */
  let db: Database.Database;
  let server: http.Server;
  let url: string;
  const keys = { alice: '', bob: '', root: '' };
  const ids = { alice: 0, bob: 0 };
  const resp: Record<string, string> = {};

  const get = async (p: string, key: string | null = keys.alice) => {
    const r = await fetch(`${url}${p}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    const text = await r.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      // pages and assets
    }
    return { status: r.status, headers: r.headers, body };
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
    store = openSqliteStore(path.join(dir, 'mneme.db'));
    db = new Database(store.file);
    const a = await createUser(store, { name: 'alice' });
    const b = await createUser(store, { name: 'bob' });
    keys.alice = a.apiKey;
    keys.bob = b.apiKey;
    ids.alice = a.user.id;
    ids.bob = b.user.id;
    keys.root = (await createUser(store, { name: 'root', admin: true })).apiKey;

    // alice: conversation c1 (two turns + one failed attempt), conversation c2 (one turn, newer).
    resp.a1 = await logTurn(store, { userId: ids.alice, conv: 'conv_a1', isNew: true, query: 'How long to flush <b>?', createdAt: iso(20), total: 100 });
    resp.a2 = await logTurn(store, { userId: ids.alice, conv: 'conv_a1', isNew: false, query: 'And the cartridge?', createdAt: iso(19), total: 300, citations: [citation(1), citation(2, { title: 'Other' })] });
    resp.aErr = await logTurn(store, { userId: ids.alice, conv: 'conv_a1', isNew: false, query: 'failing one', status: 'error', createdAt: iso(19), total: 5000 });
    resp.a3 = await logTurn(store, { userId: ids.alice, conv: 'conv_a2', isNew: true, query: 'Vexmoor kale?', createdAt: iso(2), total: 200, topScore: null, citations: [] });
    resp.b1 = await logTurn(store, { userId: ids.bob, conv: 'conv_b1', isNew: true, query: 'Bob asks', createdAt: iso(1), total: 150 });
    // Ratings: a1 down then corrected (current: -1 + correction); a2 down then up (current: +1);
    // b1 up then down (current: -1).
    await rate(store, resp.a1, ids.alice, -1, iso(18));
    await rate(store, resp.a1, ids.alice, -1, iso(17), 'Five minutes, <i>9 litres</i>.');
    await rate(store, resp.a2, ids.alice, -1, iso(16));
    await rate(store, resp.a2, ids.alice, 1, iso(15));
    await rate(store, resp.b1, ids.bob, 1, iso(1));
    await rate(store, resp.b1, ids.bob, -1, iso(0.5));

    // A small corpus and an active index generation.
    db.exec(`INSERT INTO documents (id, collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at, deleted_at) VALUES
      (1, 'manuals', '/docs/manual.md', 'h1', 'Manual', 'text/markdown', 10, '2025-03-01T09:00:00.000Z', '2025-03-01T09:00:00.000Z', NULL),
      (2, 'manuals', '/docs/guide.md', 'h2', 'Guide', 'text/markdown', 10, '2025-03-01T09:00:00.000Z', '2025-03-01T09:00:00.000Z', NULL),
      (3, 'faq', '/docs/faq.jsonl', 'h3', 'FAQ', 'application/jsonl', 10, '2025-03-01T09:00:00.000Z', '2025-03-01T09:00:00.000Z', NULL),
      (4, 'faq', '/docs/old.txt', 'h4', 'Old', 'text/plain', 10, '2025-03-01T09:00:00.000Z', '2025-03-01T09:00:00.000Z', '2025-03-01T09:30:00.000Z');
      INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256) VALUES
      (1, 0, 'a', '', 1, 'c1'), (1, 1, 'b', '', 1, 'c2'), (2, 0, 'c', '', 1, 'c3'), (3, 0, 'd', '', 1, 'c4');
      INSERT INTO index_meta (model_id, dimension, pooling, normalized, max_tokens, space, hnsw_m, hnsw_ef_construction, hnsw_ef_search, file, status, created_at, activated_at, saved_corpus_version)
      VALUES ('tiny-bert', 32, 'mean', 1, 128, 'cosine', 16, 200, 50, 'index/1.hnsw', 'active', '2025-03-01T09:00:00.000Z', '2025-03-01T09:00:00.000Z', 1);
      INSERT INTO ingest_runs (started_at, finished_at, summary_json) VALUES ('2025-03-01T09:00:00.000Z', '2025-03-01T09:01:00.000Z', '{"documents_added":4}');
      UPDATE corpus_state SET last_ingest_at = '2025-03-01T09:01:00.000Z';`);
    const vec = Buffer.alloc(32 * 4);
    for (const chunkId of [1, 2, 3]) db.prepare("INSERT INTO embeddings (chunk_id, model_id, vector) VALUES (?, 'tiny-bert', ?)").run(chunkId, vec);

    // Pages: a hand-made build output.
    const web = path.join(dir, 'web');
    fs.mkdirSync(path.join(web, 'assets'), { recursive: true });
    fs.writeFileSync(path.join(web, 'chat.html'), '<!doctype html><title>chat</title>');
    fs.writeFileSync(path.join(web, 'admin.html'), '<!doctype html><title>admin</title>');
    fs.writeFileSync(path.join(web, 'assets', 'chat-ABC123.js'), 'console.log(1);');

    const app = express();
    app.use(webRouter({ assetsDir: web }));
    app.use(authenticate(store));
    app.use(conversationsRouter({ store }));
    app.use(
      adminRouter({ store, now: () => NOW, queueDepth: () => 3, queueActive: () => 1, model: { backend: 'extractive', modelId: 'extractive-v1', status: () => ({ state: 'ready' }) }, vectors: { vectors: () => 3 } }),
    );
    app.use(errorHandler());
    server = await new Promise<http.Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    db?.close();
    await store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('GET /v1/conversations', () => {
    it("lists only the caller's conversations, newest activity first, with message counts", async () => {
      // updated_at is the wall-clock time the log was written; pin it so the order is defined.
      db.prepare("UPDATE conversations SET updated_at = '2025-03-01T10:11:21.000Z' WHERE id = 'conv_a1'").run();
      db.prepare("UPDATE conversations SET updated_at = '2025-03-01T10:28:21.000Z' WHERE id = 'conv_a2'").run();
      const r = await get('/v1/conversations');
      expect(r.status).toBe(200);
      expect(r.headers.get('cache-control')).toBe('no-store');
      expect(r.body.conversations.map((c: any) => [c.id, c.title, c.messages])).toEqual([
        ['conv_a2', 'Vexmoor kale?', 2],
        ['conv_a1', 'How long to flush <b>?', 4],
      ]);
      expect(r.body.next_before).toBeNull();
      const bob = await get('/v1/conversations', keys.bob);
      expect(bob.body.conversations.map((c: any) => c.id)).toEqual(['conv_b1']);
    });

    it('pages with limit and before, also through conversations updated in the same millisecond', async () => {
      const stamp = '2025-03-01T10:29:00.000Z';
      const u = db.prepare('UPDATE conversations SET updated_at = ? WHERE id = ?');
      const saved = db.prepare("SELECT id, updated_at FROM conversations WHERE user_id = ?").all(ids.alice) as Array<{ id: string; updated_at: string }>;
      try {
        // Distinct times: the newest first.
        u.run('2025-03-01T10:28:00.000Z', 'conv_a1');
        u.run(stamp, 'conv_a2');
        const first = await get('/v1/conversations?limit=1');
        expect(first.body.conversations.map((c: any) => c.id)).toEqual(['conv_a2']);
        expect(first.body.next_before).toBe(`${stamp}|conv_a2`);
        const second = await get(`/v1/conversations?limit=1&before=${encodeURIComponent(first.body.next_before)}`);
        expect(second.body.conversations.map((c: any) => c.id)).toEqual(['conv_a1']);
        // A plain datetime works too.
        const plain = await get(`/v1/conversations?before=${encodeURIComponent(stamp)}`);
        expect(plain.body.conversations.map((c: any) => c.id)).toEqual(['conv_a1']);
        // A tie: both pages together hold each conversation exactly once.
        u.run(stamp, 'conv_a1');
        const p1 = await get('/v1/conversations?limit=1');
        const p2 = await get(`/v1/conversations?limit=1&before=${encodeURIComponent(p1.body.next_before)}`);
        expect([...p1.body.conversations, ...p2.body.conversations].map((c: any) => c.id)).toEqual(['conv_a2', 'conv_a1']);
      } finally {
        for (const r of saved) u.run(r.updated_at, r.id);
      }
    });

    it('rejects bad parameters with 400 and no key with 401', async () => {
      for (const q of ['limit=0', 'limit=201', 'limit=abc', 'before=yesterday', `before=${encodeURIComponent('2025-03-01T10:00:00Z|')}`]) {
        const r = await get(`/v1/conversations?${q}`);
        expect(r.status, q).toBe(400);
        expect(r.body.error.code).toBe('invalid_request');
      }
      expect((await get('/v1/conversations', null)).status).toBe(401);
    });
  });

  describe('GET /v1/conversations/:id/messages', () => {
    it('returns the transcript with citations, model and the current rating of each answer', async () => {
      const r = await get('/v1/conversations/conv_a1/messages');
      expect(r.status).toBe(200);
      expect(r.body.conversation.id).toBe('conv_a1');
      const m = r.body.messages;
      // The failed attempt is in the log only, not in the transcript.
      expect(m.map((x: any) => [x.role, x.content])).toEqual([
        ['user', 'How long to flush <b>?'],
        ['assistant', 'Answer to How long to flush <b>? [1]'],
        ['user', 'And the cartridge?'],
        ['assistant', 'Answer to And the cartridge? [1]'],
      ]);
      expect(m[1]).toMatchObject({ response_id: resp.a1, rating: -1, correction: 'Five minutes, <i>9 litres</i>.', model: { backend: 'extractive', id: 'extractive-v1' } });
      expect(m[1].citations).toEqual([citation(1)]);
      expect(m[3]).toMatchObject({ rating: 1, correction: null });
      expect(m[3].citations.map((c: Citation) => c.title)).toEqual(['Manual <v2>', 'Other']);
      expect(m[0]).toMatchObject({ citations: [], model: null, rating: null });
    });

    it("answers 404 for another user's conversation exactly like an unknown id", async () => {
      const other = await get('/v1/conversations/conv_b1/messages');
      const unknown = await get('/v1/conversations/conv_nope/messages');
      expect(other.status).toBe(404);
      expect(unknown.status).toBe(404);
      expect(other.body.error.code).toBe(unknown.body.error.code);
      expect((await get(`/v1/conversations/${'x'.repeat(300)}/messages`)).status).toBe(404);
    });
  });

  describe('admin endpoints', () => {
    it('need an admin key: 401 without a key, 403 for a user key', async () => {
      for (const p of ['overview', 'timeseries', 'thumbs-down', 'corpus']) {
        expect((await get(`/v1/admin/${p}`, null)).status, p).toBe(401);
        const user = await get(`/v1/admin/${p}`, keys.alice);
        expect(user.status, p).toBe(403);
        expect(user.body.error.code).toBe('forbidden');
        const admin = await get(`/v1/admin/${p}`, keys.root);
        expect(admin.status, p).toBe(200);
        expect(admin.headers.get('cache-control')).toBe('no-store');
      }
    });

    it('overview: live queue and model, recent rate, totals', async () => {
      const r = await get('/v1/admin/overview', keys.root);
      expect(r.body).toMatchObject({
        now: new Date(NOW).toISOString(),
        model: { backend: 'extractive', id: 'extractive-v1', state: 'ready' },
        queue: { depth: 3, active: 1 },
        recent: { minutes: 5, requests: 2, errors: 0 },
        totals: { users: 3, conversations: 3, responses: 5, errors: 1, feedback: 6, thumbs_down: 4 },
      });
    });

    it('timeseries: per-minute buckets from the prediction log and feedback', async () => {
      const r = await get('/v1/admin/timeseries?minutes=30', keys.root);
      expect(r.status).toBe(200);
      const body = r.body;
      expect(body.bucket_minutes).toBe(1);
      expect(body.buckets).toHaveLength(30);
      expect(body.to).toBe('2025-03-01T10:31:00.000Z');
      expect(body.from).toBe('2025-03-01T10:01:00.000Z');
      const byT = new Map(body.buckets.map((b: any) => [b.t, b]));
      const b19 = byT.get('2025-03-01T10:11:00.000Z') as any; // a2 (ok, 300 ms) + the error
      expect([b19.requests, b19.errors, b19.latency_ms.total.p50]).toEqual([2, 1, 300]);
      expect(body.summary).toMatchObject({ requests: 5, errors: 1, feedback: 6, thumbs_down: 4, answers: 4, rated_answers: 3, feedback_rate: 0.75, no_hits: 1 });
      expect(body.summary.latency_ms.total).toEqual({ p50: 150, p99: 300 });
      expect(body.summary.thumbs_down_share).toBeCloseTo(4 / 6, 4);
      expect(body.summary.top_score.p50).toBe(0.03);
      expect(body.buckets.reduce((n: number, b: any) => n + b.requests, 0)).toBe(5);

      const wide = await get('/v1/admin/timeseries?minutes=1440', keys.root);
      expect(wide.body.bucket_minutes).toBe(15);
      expect(wide.body.buckets).toHaveLength(96);
    });

    it('timeseries: rejects bad windows', async () => {
      for (const q of ['minutes=0', 'minutes=10081', 'minutes=x', 'minutes=10080&bucket_minutes=1', 'bucket_minutes=0']) {
        const r = await get(`/v1/admin/timeseries?${q}`, keys.root);
        expect(r.status, q).toBe(400);
      }
    });

    it('thumbs-down: answers whose latest rating is down, newest first, with question, correction and citations', async () => {
      const r = await get('/v1/admin/thumbs-down', keys.root);
      expect(r.body.items.map((i: any) => [i.response_id, i.user, i.question, i.correction])).toEqual([
        [resp.b1, 'bob', 'Bob asks', null],
        [resp.a1, 'alice', 'How long to flush <b>?', 'Five minutes, <i>9 litres</i>.'],
      ]);
      expect(r.body.items[1].citations).toEqual([citation(1)]);
      expect(r.body.items[1]).toMatchObject({ model: { backend: 'extractive', id: 'extractive-v1' }, answer_truncated: false });
      const one = await get('/v1/admin/thumbs-down?limit=1', keys.root);
      expect(one.body.items).toHaveLength(1);
      expect((await get('/v1/admin/thumbs-down?limit=0', keys.root)).status).toBe(400);
    });

    it('corpus: documents, chunks, collections, embedding model, index generation, last ingestion', async () => {
      const r = await get('/v1/admin/corpus', keys.root);
      expect(r.body).toMatchObject({
        documents: 3,
        deleted_documents: 1,
        chunks: 4,
        collections: [
          { name: 'faq', documents: 1, chunks: 1 },
          { name: 'manuals', documents: 2, chunks: 3 },
        ],
        embedding: { generation: 1, model_id: 'tiny-bert', dimension: 32, normalized: true, embedded_chunks: 3, vectors: 3, status: 'active' },
        building: null,
        last_ingestion: { at: '2025-03-01T09:01:00.000Z', run: { finished_at: '2025-03-01T09:01:00.000Z', summary: { documents_added: 4 } } },
      });
      // Chunks and embeddings were added after the generation saved its file at version 1.
      expect(r.body.embedding.file_lags_corpus).toBe(true);
    });
  });

  describe('web router', () => {
    it('serves the pages publicly with the CSP and no-cache, assets as immutable', async () => {
      for (const p of ['/', '/admin']) {
        const r = await get(p, null);
        expect(r.status, p).toBe(200);
        expect(r.headers.get('content-type')).toMatch(/^text\/html/);
        expect(r.headers.get('cache-control')).toBe('no-cache');
        expect(r.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
        expect(r.headers.get('x-content-type-options')).toBe('nosniff');
        expect(r.headers.get('etag')).toBeTruthy();
      }
      const asset = await get('/assets/chat-ABC123.js', null);
      expect(asset.status).toBe(200);
      expect(asset.headers.get('cache-control')).toBe(IMMUTABLE_CACHE_CONTROL);
      expect(asset.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
      const missing = await get('/assets/chat-OLD.js', null);
      expect(missing.status).toBe(404);
      expect(missing.headers.get('cache-control')).toBe('no-store');
      // Only the exact page paths are public.
      expect((await get('/admin/', null)).status).toBe(401);
      expect((await get('/chat.html', null)).status).toBe(401);
      expect((await get('/assets/../chat.html', null)).status).not.toBe(200);
    });

    it('the CSP allows no inline script or style and nothing from other origins', () => {
      expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
      expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
      expect(CONTENT_SECURITY_POLICY).not.toMatch(/unsafe-inline|unsafe-eval|\*|https?:/);
      expect(CONTENT_SECURITY_POLICY).toContain("frame-ancestors 'none'");
    });
  });
});

describe('web build', () => {
  it('renderPage substitutes asset URLs, adds modulepreload links and rejects unknown assets', () => {
    const html = '<head><script type="module" src="{{asset:chat.ts}}"></script></head>';
    expect(renderPage(html, { 'chat.ts': '/assets/chat-X.js' }, ['/assets/chunk-Y.js'])).toBe(
      '<head><script type="module" src="/assets/chat-X.js"></script><link rel="modulepreload" href="/assets/chunk-Y.js">\n</head>',
    );
    expect(() => renderPage('{{asset:nope.js}}', {})).toThrow(/unknown asset "nope.js"/);
  });

  it('bundles both pages into hashed, small assets that the pages reference', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-')), 'web');
    const r = await buildWeb({ outDir: out });
    for (const page of ['chat.html', 'admin.html']) {
      const html = fs.readFileSync(path.join(out, page), 'utf8');
      expect(html).not.toContain('{{asset:');
      const refs = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1] as string);
      expect(refs.length).toBeGreaterThanOrEqual(3);
      for (const ref of refs) {
        expect(ref).toMatch(/-[A-Za-z0-9]{8,}\.(js|css|svg)$/);
        expect(fs.existsSync(path.join(out, ref.replace('/assets/', 'assets/'))), ref).toBe(true);
      }
      // No inline script or style: the CSP would block them.
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
      expect(html).not.toMatch(/<style|style="/);
      // "Small pages": the whole first load stays well under 50 KB gzipped.
      expect(r.pageGzipBytes[page]).toBeLessThan(50_000);
    }
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(Object.keys(manifest.assets)).toEqual(expect.arrayContaining(['chat.ts', 'admin.ts', 'style.css', 'favicon.svg']));
    // Building again replaces the output (no stale hashed files pile up).
    await buildWeb({ outDir: out });
    expect(fs.readdirSync(path.join(out, 'assets')).length).toBe(Object.keys(manifest.assets).length);
  });
});
