/**
 * A dead embedding worker (crash, OOM) does not take chat down: while it is respawned (with backoff)
 * answers come from BM25 alone, say so (`retrieval_mode: "bm25_fallback"`, a metric), and hybrid
 * retrieval comes back by itself. Real server, tiny BERT fixture, real worker threads killed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransformersEmbedder } from '../../src/core/embedder.ts';
import type { TestServer } from './http-helpers.ts';
import { count, ingestFixtures, postJson, startTestServer, tempDir, testEnv, waitFor } from './http-helpers.ts';

/** First respawn delay in this test, in ms: long enough to ask a question while the worker is down. */
const RESPAWN_MS = 1500;
const QUESTION = 'Which part number is the Halcyon X3 filter cartridge?';

describe('embedding worker crash', () => {
  let srv: TestServer;
  let key: string;
  let admin: string;
  let embedder: TransformersEmbedder;

  beforeAll(async () => {
    const env = testEnv(tempDir());
    await ingestFixtures(env);
    srv = await startTestServer(env);
    key = await srv.key('erin');
    admin = await srv.key('root', true);
    expect(srv.deps.embedder).toBeInstanceOf(TransformersEmbedder);
    embedder = srv.deps.embedder as TransformersEmbedder;
    embedder.respawnBaseMs = RESPAWN_MS;
  });
  afterAll(async () => {
    await srv?.stop();
  });

  const fallbackCount = async () => {
    const res = await fetch(`${srv.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
    const m = /^mneme_retrieval_fallback_total (\d+)/m.exec(await res.text());
    return Number(m?.[1] ?? NaN);
  };

  it('answers hybrid, then BM25-only while every worker is down, then hybrid again after the respawn', async () => {
    const before = await postJson(`${srv.url}/v1/chat`, key, { message: QUESTION });
    expect(before.status).toBe(200);
    expect(before.body.retrieval_mode).toBe('hybrid');
    expect(await fallbackCount()).toBe(0);

    for (let i = 0; i < embedder.workerCount; i++) await embedder.crashWorkerForTest(i);
    expect(embedder.liveWorkers).toBe(0);

    const down = await postJson(`${srv.url}/v1/chat`, key, { message: QUESTION });
    expect(down.status, JSON.stringify(down.body)).toBe(200);
    expect(down.body.retrieval_mode).toBe('bm25_fallback');
    expect(down.body.answer).toContain('BW-TS-30');
    expect(count(srv, 'responses', "id = ? AND status = 'ok'", down.body.id)).toBe(1);
    const completion = await postJson(`${srv.url}/v1/chat/completions`, key, { messages: [{ role: 'user', content: QUESTION }] });
    expect(completion.status).toBe(200);
    expect(completion.body.mneme.retrieval_mode).toBe('bm25_fallback');
    expect(await fallbackCount()).toBe(2);

    await waitFor(() => embedder.liveWorkers === embedder.workerCount, 30_000, 'workers respawned');
    const after = await postJson(`${srv.url}/v1/chat`, key, { message: QUESTION });
    expect(after.status).toBe(200);
    expect(after.body.retrieval_mode).toBe('hybrid');
    expect(await fallbackCount()).toBe(2);
  }, 60_000);
});
