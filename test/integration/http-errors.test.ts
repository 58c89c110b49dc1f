/**
 * Failure paths through a real OpenAI-compatible LLM server (a small one in this test that errors,
 * hangs, breaks off or streams slowly), used through MNEME_LLM=openai:URL exactly as in production.
 * Every answer attempt must still write its one prediction-log row.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generationConcurrency } from '../../src/chat/http/wiring.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { authHeaders, count, ingestFixtures, parseSse, postJson, startFakeLlm, startTestServer, tempDir, testEnv, waitFor } from './http-helpers.ts';

/** The backend's deadline in these tests, in ms (the hang test waits for it). */
const LLM_TIMEOUT_MS = 1500;

interface Row {
  status: string;
  error_code: string | null;
  error_message: string | null;
  answer: string | null;
  model_backend: string;
  rendered_prompt_json: string;
  retrieved_json: string;
}

describe('chat HTTP failure paths (OpenAI-compatible upstream)', () => {
  let llm: FakeLlm;
  let srv: TestServer;
  let key: string;
  let dataDir: string;

  beforeAll(async () => {
    llm = await startFakeLlm();
    dataDir = tempDir();
    const env = testEnv(dataDir, {
      MNEME_LLM: `openai:${llm.url}`,
      MNEME_LLM_MODEL: 'fake-llm',
      MNEME_LLM_TIMEOUT_MS: String(LLM_TIMEOUT_MS),
      MNEME_QUEUE_MAX: '1',
    });
    await ingestFixtures(env);
    srv = await startTestServer(env);
    key = await srv.key('carol');
  });
  afterAll(async () => {
    await srv?.stop();
    await llm?.close();
  });

  const lastRow = () => srv.db.prepare('SELECT * FROM responses ORDER BY seq DESC LIMIT 1').get() as Row;
  const chat = (body: unknown) => postJson(`${srv.url}/v1/chat`, key, body);

  it('answers through the upstream model and names it', async () => {
    llm.behaviour = { kind: 'answer', text: 'The cartridge is BW-TS-30 [1].' };
    const r = await chat({ message: 'Which part number is the Halcyon X3 filter cartridge?' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.model).toEqual({ backend: 'openai', id: 'fake-llm' });
    expect(r.body.answer).toBe('The cartridge is BW-TS-30 [1].');
    expect(r.body.citations).toHaveLength(1);
    // The upstream received exactly the rendered prompt that was logged.
    const sent = llm.requests[llm.requests.length - 1]!.messages;
    expect(JSON.parse(lastRow().rendered_prompt_json)).toEqual(sent);
  });

  it('upstream 500 → 502 and an error row', async () => {
    llm.behaviour = { kind: 'status', status: 500, message: 'out of memory' };
    const before = count(srv, 'responses');
    const r = await chat({ message: 'What does kestrelctl do?' });
    expect(r.status).toBe(502);
    expect(r.body.error.code).toBe('upstream_error');
    // The upstream's own text is for the logs, not for the client.
    expect(r.body.error.message).not.toMatch(/out of memory|HTTP 500|127\.0\.0\.1/);
    expect(count(srv, 'responses')).toBe(before + 1);
    const row = lastRow();
    expect(row).toMatchObject({ status: 'error', error_code: 'upstream_error', answer: null });
    expect(row.error_message).toMatch(/HTTP 500.*out of memory/);
    // What was retrieved and sent is still logged: the failure is reproducible.
    expect(JSON.parse(row.retrieved_json).length).toBeGreaterThan(0);
    expect(JSON.parse(row.rendered_prompt_json)).toHaveLength(2);
  });

  it('upstream down (connection dropped) → 502 and an error row', async () => {
    llm.behaviour = { kind: 'destroy' };
    const r = await chat({ message: 'What does kestrelctl do?' });
    expect(r.status).toBe(502);
    expect(lastRow()).toMatchObject({ status: 'error', error_code: 'upstream_error' });
  });

  it('upstream timeout → 504 and an error row', async () => {
    llm.behaviour = { kind: 'hang' };
    const t0 = Date.now();
    const r = await chat({ message: 'When does the Tidewater ferry leave?' });
    expect(r.status).toBe(504);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(LLM_TIMEOUT_MS - 50);
    expect(r.body.error.code).toBe('upstream_timeout');
    expect(lastRow()).toMatchObject({ status: 'error', error_code: 'upstream_timeout' });
  });

  it('stream: error before the first token is a plain HTTP error; after it, an SSE error event', async () => {
    llm.behaviour = { kind: 'status', status: 500, message: 'boom' };
    const early = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: authHeaders(key), body: JSON.stringify({ message: 'OrbiSync?', stream: true }) });
    expect(early.status).toBe(502);
    expect((await early.json()).error.code).toBe('upstream_error');

    llm.behaviour = { kind: 'answer', text: 'one two three four five six', breakAfterWords: 2, tokenDelayMs: 50 };
    const mid = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: authHeaders(key), body: JSON.stringify({ message: 'OrbiSync?', stream: true }) });
    expect(mid.status).toBe(200);
    const events = parseSse(await mid.text());
    expect(events.filter((e) => e.event === 'token').map((e) => JSON.parse(e.data).text).join('')).toBe('one two ');
    const last = events[events.length - 1]!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data)).toMatchObject({ code: 'upstream_error', status: 502 });
    expect(events.some((e) => e.event === 'done')).toBe(false);
    // The partial answer is kept in the error row.
    expect(lastRow()).toMatchObject({ status: 'error', error_code: 'upstream_error', answer: 'one two ' });
  });

  it('queue full → 503 with Retry-After; every attempt is logged', async () => {
    llm.behaviour = { kind: 'answer', text: 'Slow answer [1].', firstByteDelayMs: 600 };
    const before = count(srv, 'responses');
    // `concurrency` generations run, MNEME_QUEUE_MAX=1 waits, the rest are refused at once.
    const concurrency = generationConcurrency('openai');
    const n = concurrency + 1 + 2;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => chat({ message: `Vexmoor lunar gardening question ${i}` })));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([...Array<number>(concurrency + 1).fill(200), 503, 503]);
    for (const r of results.filter((x) => x.status === 503)) {
      expect(r.body.error.code).toBe('queue_full');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    expect(count(srv, 'responses')).toBe(before + n);
    expect(count(srv, 'responses', "error_code = 'queue_full'")).toBe(2);
  });

  it('client disconnect mid-stream cancels the generation and still writes a cancelled row', async () => {
    llm.behaviour = { kind: 'answer', text: 'word '.repeat(40), tokenDelayMs: 100 };
    const abortedBefore = llm.aborted;
    const before = count(srv, 'responses');
    const controller = new AbortController();
    const res = await fetch(`${srv.url}/v1/chat`, {
      method: 'POST',
      headers: authHeaders(key),
      body: JSON.stringify({ message: 'Tell me about the Halcyon X3', stream: true }),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('event: token');
    controller.abort();
    await waitFor(() => count(srv, 'responses') === before + 1, 5000, 'the cancelled row');
    const row = lastRow();
    expect(row.status).toBe('cancelled');
    expect(row.error_code).toBe('cancelled');
    // Partial text is kept, and it is shorter than the full answer (generation really stopped).
    expect(row.answer?.startsWith('word')).toBe(true);
    expect(row.answer!.length).toBeLessThan('word '.repeat(40).length);
    await waitFor(() => llm.aborted > abortedBefore, 3000, 'the upstream request to be aborted');
    expect(srv.deps.inflight.size()).toBe(0);
  });

  it('client disconnect before the answer (non-streaming) also logs a cancelled row', async () => {
    llm.behaviour = { kind: 'answer', text: 'late', firstByteDelayMs: 1000 };
    const before = count(srv, 'responses');
    const controller = new AbortController();
    const pending = fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: authHeaders(key), body: JSON.stringify({ message: 'OrbiSync sync conflicts' }), signal: controller.signal });
    await waitFor(() => srv.deps.inflight.size() === 1, 3000, 'the request to start');
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => count(srv, 'responses') === before + 1, 5000, 'the cancelled row');
    expect(lastRow().status).toBe('cancelled');
  });

  it('openai client: upstream failure surfaces as an APIError with status 502', async () => {
    const { default: OpenAI } = await import('openai');
    llm.behaviour = { kind: 'status', status: 500, message: 'nope' };
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: key, maxRetries: 0 });
    await expect(client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi there' }] })).rejects.toMatchObject({ status: 502 });
  });
});

describe('rate limit', () => {
  let srv: TestServer;
  beforeAll(async () => {
    const env = testEnv(tempDir(), { MNEME_RATE_LIMIT_PER_MIN: '3', MNEME_EMBED_MODEL: 'none' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('429 with Retry-After once a key has used its burst; other keys are unaffected', async () => {
    const k1 = await srv.key('dave');
    const k2 = await srv.key('erin');
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof postJson>> | null = null;
    for (let i = 0; i < 4; i++) {
      const r = await postJson(`${srv.url}/v1/chat`, k1, { message: 'What is OrbiSync?' });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(limited!.body.error.code).toBe('rate_limited');
    // 3/min refills one token every 20 s.
    const retry = Number(limited!.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(20);
    expect((await postJson(`${srv.url}/v1/chat`, k2, { message: 'What is OrbiSync?' })).status).toBe(200);
    // BM25-only instance (MNEME_EMBED_MODEL=none) is healthy and says so.
    const admin = await srv.key('root', true);
    const h = await (await fetch(`${srv.url}/healthz`, { headers: { authorization: `Bearer ${admin}` } })).json();
    expect(h).toMatchObject({ status: 'ok', embedder: null, retrieval: 'bm25', index: null });
  });
});
