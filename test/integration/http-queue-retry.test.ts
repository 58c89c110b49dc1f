/**
 * `503 queue_full` tells clients when to come back from what generations actually take: the
 * measured mean (EWMA) or, before any finished, the age of the oldest one running, times the
 * requests ahead per generation slot. Real server, real OpenAI-compatible upstream that is slow.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RETRY_AFTER_MAX_SECONDS, RETRY_AFTER_MIN_SECONDS, retryAfterFor } from '../../src/chat/queue.ts';
import { generationConcurrency } from '../../src/chat/http/wiring.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { ingestFixtures, postJson, startFakeLlm, startTestServer, tempDir, testEnv, waitFor } from './http-helpers.ts';

/** How long each generation takes in this test, in ms. */
const GENERATION_MS = 4000;

describe('queue_full Retry-After', () => {
  let llm: FakeLlm;
  let srv: TestServer;
  let key: string;

  beforeAll(async () => {
    llm = await startFakeLlm({ kind: 'answer', text: 'Slow [1].', firstByteDelayMs: GENERATION_MS });
    const env = testEnv(tempDir(), { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake-llm', MNEME_QUEUE_MAX: '1', MNEME_EMBED_MODEL: 'none' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
    key = await srv.key('quinn');
  });
  afterAll(async () => {
    await srv?.stop();
    await llm?.close();
  });

  const chat = (i: number) => postJson(`${srv.url}/v1/chat`, key, { message: `What is OrbiSync? (${i})` });

  /** Fills every slot and the queue, waits `afterMs`, then returns the refused request's Retry-After. */
  async function refusedRetryAfter(afterMs: number): Promise<{ retryAfter: number; all: Promise<unknown> }> {
    const concurrency = generationConcurrency('openai');
    const upstreamBefore = llm.requests.length;
    const running = Array.from({ length: concurrency + 1 }, (_, i) => chat(i));
    await waitFor(() => llm.requests.length - upstreamBefore === concurrency, 5000, 'every slot busy');
    await new Promise((r) => setTimeout(r, afterMs));
    const refused = await chat(99);
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('queue_full');
    return { retryAfter: Number(refused.headers.get('retry-after')), all: Promise.all(running) };
  }

  it('before any generation finished: at least the age of the running ones × requests ahead per slot', async () => {
    const { retryAfter, all } = await refusedRetryAfter(3000);
    // 5 ahead on 4 slots, running for ≥ 3 s each: ≥ ceil(1.25 × 3) = 4 (it used to say 2).
    expect(retryAfter).toBeGreaterThanOrEqual(4);
    expect(retryAfter).toBeLessThanOrEqual(RETRY_AFTER_MAX_SECONDS);
    await all;
  }, 30_000);

  it('once generations were measured: the mean generation time × requests ahead per slot', async () => {
    const { retryAfter, all } = await refusedRetryAfter(0);
    // Mean ≈ 4 s, 5 ahead on 4 slots: ceil(1.25 × 4) = 5 (6 with the HTTP overhead measured in).
    expect(retryAfter).toBeGreaterThanOrEqual(5);
    expect(retryAfter).toBeLessThanOrEqual(7);
    await all;
  }, 30_000);

  it('retryAfterFor clamps to 1..120 s', () => {
    expect(retryAfterFor(5000, 2, 1)).toBe(10);
    expect(retryAfterFor(10, 1, 64)).toBe(RETRY_AFTER_MIN_SECONDS);
    expect(retryAfterFor(60_000, 100, 1)).toBe(RETRY_AFTER_MAX_SECONDS);
  });
});
