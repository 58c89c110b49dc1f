/**
 * The chat HTTP API end to end on the extractive model: a real server on 127.0.0.1:0, real SQLite,
 * the fixture corpus ingested with the real pipeline (tiny BERT), the official `openai` client.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobToVector } from '../../src/core/store/sqlite/codec.ts';
import type { TestServer } from './http-helpers.ts';
import { authHeaders, count, ingestFixtures, parseSse, postJson, startTestServer, tempDir, testEnv } from './http-helpers.ts';

interface ChatBody {
  id: string;
  conversation_id: string;
  answer: string;
  citations: Array<{ n: number; document_id: number; chunk_id: number; chunk_ids?: number[]; source: string; score: number; relevance?: string; page?: number | null; snippet: string }>;
  model: { backend: string; id: string };
  prompt: { name: string; sha256: string };
  timings: { features_ms: number; retrieve_ms: number; generate_ms: number; first_token_ms: number | null; total_ms: number };
}

describe('chat HTTP API (extractive model)', () => {
  let srv: TestServer;
  let alice: string;
  let bob: string;
  let admin: string;

  beforeAll(async () => {
    const env = testEnv(tempDir(), { MNEME_BODY_LIMIT_BYTES: '4096', MNEME_MAX_MESSAGE_CHARS: '500' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
    alice = await srv.key('alice');
    bob = await srv.key('bob');
    admin = await srv.key('root', true);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  const chat = (key: string | null, body: unknown) => postJson(`${srv.url}/v1/chat`, key, body);

  it('answers in JSON with citations that map to retrieved chunks, and logs one row', async () => {
    const before = count(srv, 'responses');
    const r = await chat(alice, { message: 'Which part number is the Halcyon X3 filter cartridge?' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const b = r.body as ChatBody;
    expect(b.id).toMatch(/^resp_/);
    expect(b.conversation_id).toMatch(/^conv_/);
    expect(b.model).toEqual({ backend: 'extractive', id: expect.any(String) });
    expect(b.prompt.name).toBe('answer');
    expect(b.prompt.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b.answer).toContain('BW-TS-30');
    expect(b.citations.length).toBeGreaterThan(0);
    for (const k of ['features_ms', 'retrieve_ms', 'generate_ms', 'total_ms'] as const) expect(b.timings[k]).toBeGreaterThanOrEqual(0);
    expect(b.timings.total_ms).toBeGreaterThanOrEqual(b.timings.retrieve_ms);
    // The extractive answerer streams its text too: the first piece arrives within generation.
    expect(b.timings.first_token_ms).toBeGreaterThanOrEqual(0);
    expect(b.timings.first_token_ms).toBeLessThanOrEqual(b.timings.generate_ms);

    expect(count(srv, 'responses')).toBe(before + 1);
    const row = srv.db.prepare('SELECT * FROM responses WHERE id = ?').get(b.id) as Record<string, any>;
    expect(row.status).toBe('ok');
    expect(row.endpoint).toBe('chat');
    expect(row.prompt_sha256).toBe(b.prompt.sha256);
    const retrieved = JSON.parse(row.retrieved_json) as Array<{ chunk_id: number; document_id: number; content_sha256: string; in_context: boolean }>;
    const inContext = retrieved.filter((c) => c.in_context);
    // Citations are numbered 1..k in order of first citation; each names in-context retrieved chunks.
    expect(b.citations.map((c) => c.n)).toEqual(b.citations.map((_, i) => i + 1));
    for (const c of b.citations) {
      const chunk = inContext.find((r) => r.chunk_id === c.chunk_id);
      expect(chunk, `citation [${c.n}]`).toBeDefined();
      for (const id of c.chunk_ids ?? []) expect(inContext.some((r) => r.chunk_id === id)).toBe(true);
      expect(['high', 'medium', 'low']).toContain(c.relevance);
      expect(c.chunk_id).toBe(chunk!.chunk_id);
      expect(c.document_id).toBe(chunk!.document_id);
      const text = srv.db.prepare('SELECT text FROM chunks WHERE id = ?').pluck().get(c.chunk_id) as string;
      expect(text.replace(/\s+/g, ' ')).toContain(c.snippet.replace(/…/g, '').replace(/\s+/g, ' ').trim().slice(0, 40));
      expect(c.source).toMatch(/halcyon-x3-manual\.md$/);
    }
    expect(JSON.parse(row.citations_json)).toEqual(b.citations);
    const rendered = JSON.parse(row.rendered_prompt_json) as Array<{ role: string; content: string }>;
    expect(rendered.map((m) => m.role)).toEqual(['system', 'user']);
    expect(rendered[1]!.content).toContain('Which part number is the Halcyon X3 filter cartridge?');
    // The query vector is the tiny BERT's 32-d embedding.
    expect(blobToVector(row.query_vector as Buffer).length).toBe(32);
    const features = JSON.parse(row.features_json);
    expect(features).toHaveProperty('precomputed');
    expect(features.on_demand.turn_index).toBe(0);
    const msgs = srv.db.prepare('SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id').all(b.conversation_id);
    expect(msgs).toEqual([
      { role: 'user', content: 'Which part number is the Halcyon X3 filter cartridge?' },
      { role: 'assistant', content: b.answer },
    ]);
  });

  it('streams SSE token events then one done event with the same shape', async () => {
    const res = await fetch(`${srv.url}/v1/chat`, {
      method: 'POST',
      headers: authHeaders(alice),
      body: JSON.stringify({ message: 'What does kestrelctl do?', stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseSse(await res.text());
    const tokens = events.filter((e) => e.event === 'token');
    const done = events.filter((e) => e.event === 'done');
    expect(tokens.length).toBeGreaterThan(0);
    expect(done).toHaveLength(1);
    expect(events[events.length - 1]!.event).toBe('done');
    const body = JSON.parse(done[0]!.data) as ChatBody;
    expect(body.answer.length).toBeGreaterThan(0);
    expect(body.citations.length).toBeGreaterThan(0);
    expect(Object.keys(body)).toEqual(expect.arrayContaining(['id', 'conversation_id', 'answer', 'citations', 'model', 'prompt', 'timings']));
    const streamed = tokens.map((t) => (JSON.parse(t.data) as { text: string }).text).join('');
    expect(streamed.length).toBeGreaterThan(0);
    const row = srv.db.prepare('SELECT status, answer FROM responses WHERE id = ?').get(body.id) as { status: string; answer: string };
    expect(row).toEqual({ status: 'ok', answer: body.answer });
  });

  it('gives follow-ups the conversation history (asserted on the logged prompt)', async () => {
    const first = await chat(alice, { message: 'How long should I flush a new BW-TS-30 cartridge?' });
    expect(first.status).toBe(200);
    const conv = (first.body as ChatBody).conversation_id;
    const second = await chat(alice, { message: 'And what colour does the status ring blink meanwhile?', conversation_id: conv });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect((second.body as ChatBody).conversation_id).toBe(conv);
    const row = srv.db.prepare('SELECT turn_index, history_json, rendered_prompt_json, features_json FROM responses WHERE id = ?').get((second.body as ChatBody).id) as Record<string, string | number>;
    expect(row.turn_index).toBe(1);
    const history = JSON.parse(row.history_json as string) as Array<{ role: string; content: string }>;
    expect(history.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(history[0]!.content).toBe('How long should I flush a new BW-TS-30 cartridge?');
    const user = (JSON.parse(row.rendered_prompt_json as string) as Array<{ content: string }>)[1]!.content;
    expect(user).toContain('Conversation so far:');
    expect(user).toContain('User: How long should I flush a new BW-TS-30 cartridge?');
    expect(user).toContain('Assistant: ');
    expect(JSON.parse(row.features_json as string).on_demand.is_follow_up).toBe(1);

    // A new conversation has no history block.
    const fresh = srv.db.prepare('SELECT rendered_prompt_json FROM responses WHERE id = ?').pluck().get((first.body as ChatBody).id) as string;
    expect(fresh).not.toContain('Conversation so far');
  });

  it('bounds the history to the last 6 messages', async () => {
    let conv: string | undefined;
    for (let i = 0; i < 5; i++) {
      const r = await chat(alice, { message: `Question number ${i} about the Tidewater ferry`, ...(conv ? { conversation_id: conv } : {}) });
      expect(r.status).toBe(200);
      conv = (r.body as ChatBody).conversation_id;
    }
    const history = JSON.parse(
      srv.db.prepare('SELECT history_json FROM responses WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1').pluck().get(conv) as string,
    ) as Array<{ role: string; content: string }>;
    expect(history).toHaveLength(6);
    expect(history[0]!.content).toBe('Question number 1 about the Tidewater ferry');
  });

  it('works with the official openai client, non-streaming and streaming', async () => {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: alice, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: 'mneme',
      messages: [
        { role: 'system', content: 'ignored by the server' },
        { role: 'user', content: 'Where is the Halcyon X3 serial number printed?' },
      ],
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^resp_/);
    const text = completion.choices[0]?.message.content ?? '';
    expect(text).toContain('silver label');
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
    const citations = (completion as unknown as { citations: Array<{ chunk_id: number }> }).citations;
    expect(citations.length).toBeGreaterThan(0);
    const row = srv.db.prepare('SELECT endpoint, status, answer FROM responses WHERE id = ?').get(completion.id) as Record<string, string>;
    expect(row).toEqual({ endpoint: 'chat.completions', status: 'ok', answer: text });

    const stream = await client.chat.completions.create({
      model: 'mneme',
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: 'user', content: 'Tell me about the Halcyon X3.' },
        { role: 'assistant', content: 'It is an under-sink water purifier.' },
        { role: 'user', content: 'What is the filter cartridge part number?' },
      ],
    });
    let streamed = '';
    let finish: string | null | undefined;
    let finalCitations: unknown;
    let usage: unknown;
    let id = '';
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      id = chunk.id;
      streamed += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.choices[0]?.finish_reason) {
        finish = chunk.choices[0].finish_reason;
        finalCitations = (chunk as unknown as { citations: unknown }).citations;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(streamed).toContain('BW-TS-30');
    expect(finish).toBe('stop');
    expect(Array.isArray(finalCitations) && finalCitations.length > 0).toBe(true);
    expect(usage).toMatchObject({ total_tokens: expect.any(Number) });
    const logged = srv.db.prepare('SELECT history_json, status FROM responses WHERE id = ?').get(id) as { history_json: string; status: string };
    expect(logged.status).toBe('ok');
    expect(JSON.parse(logged.history_json)).toEqual([
      { role: 'user', content: 'Tell me about the Halcyon X3.' },
      { role: 'assistant', content: 'It is an under-sink water purifier.' },
    ]);
  });

  it('openai client surfaces 400 for a transcript that does not end with a user message', async () => {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: alice, maxRetries: 0 });
    await expect(
      client.chat.completions.create({ model: 'x', messages: [{ role: 'assistant', content: 'hi' }] }),
    ).rejects.toMatchObject({ status: 400 });
  });

  describe('validation and limits', () => {
    it('400 for malformed JSON, wrong types, empty message and unknown fields; never a stack', async () => {
      const bad = await chat(alice, '{"message": ');
      expect(bad.status).toBe(400);
      expect(bad.body).toEqual({ error: { code: 'invalid_json', message: expect.any(String) } });
      const wrongType = await chat(alice, { message: 42 });
      expect(wrongType.status).toBe(400);
      expect(wrongType.body.error.code).toBe('invalid_request');
      expect(wrongType.body.error.message).toMatch(/^message:/);
      const topK = await chat(alice, { message: 'hi', top_k: 500 });
      expect(topK.status).toBe(400);
      expect(topK.body.error.message).toMatch(/^top_k:/);
      const stream = await chat(alice, { message: 'hi', stream: 'yes' });
      expect(stream.status).toBe(400);
      const empty = await chat(alice, { message: '   ' });
      expect(empty.status).toBe(400);
      const unknown = await chat(alice, { message: 'hi', temperature: 2 });
      expect(unknown.status).toBe(400);
      const array = await chat(alice, [1, 2]);
      expect(array.status).toBe(400);
      const noType = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: { authorization: `Bearer ${alice}` }, body: 'message=hi' });
      expect(noType.status).toBe(400);
      for (const r of [bad, wrongType, topK, empty, unknown]) expect(JSON.stringify(r.body)).not.toMatch(/at .*\.ts:\d+/);
    });

    it('413 for a body over the limit and a message over the character limit', async () => {
      const huge = await chat(alice, { message: 'x'.repeat(10_000) });
      expect(huge.status).toBe(413);
      expect(huge.body.error.code).toBe('payload_too_large');
      const long = await chat(alice, { message: 'y'.repeat(501) });
      expect(long.status).toBe(413);
      expect(long.body.error.message).toMatch(/500/);
    });

    it('404 for an unknown conversation and for another user\'s conversation', async () => {
      const unknown = await chat(alice, { message: 'hi', conversation_id: 'conv_nope' });
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('not_found');
      const mine = await chat(alice, { message: 'What is OrbiSync?' });
      const theirs = await chat(bob, { message: 'hi', conversation_id: mine.body.conversation_id });
      expect(theirs.status).toBe(404);
      expect(theirs.body.error.message).toBe(`no conversation ${mine.body.conversation_id}`);
    });

    it('404 for unknown routes (after auth)', async () => {
      const r = await fetch(`${srv.url}/v1/nothing`, { headers: authHeaders(alice) });
      expect(r.status).toBe(404);
    });
  });

  describe('auth', () => {
    it('401 without a key, with a malformed or unknown key, on every authenticated route', async () => {
      for (const [method, path] of [
        ['POST', '/v1/chat'],
        ['POST', '/v1/chat/completions'],
        ['POST', '/v1/feedback'],
        ['GET', '/v1/me/features'],
        ['DELETE', '/v1/me'],
        ['GET', '/metrics'],
      ] as const) {
        for (const auth of [undefined, 'Bearer', 'Basic abc', 'Bearer mn_not-a-real-key']) {
          const r = await fetch(`${srv.url}${path}`, { method, headers: auth ? { authorization: auth, 'content-type': 'application/json' } : {}, body: method === 'POST' ? '{}' : null });
          expect(r.status, `${method} ${path} ${auth}`).toBe(401);
          expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
          expect(await r.json()).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
        }
      }
    });

    it('/metrics: 403 for a non-admin key, Prometheus text for an admin', async () => {
      const denied = await fetch(`${srv.url}/metrics`, { headers: authHeaders(alice) });
      expect(denied.status).toBe(403);
      expect((await denied.json()).error.code).toBe('forbidden');
      const ok = await fetch(`${srv.url}/metrics`, { headers: authHeaders(admin) });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await ok.text();
      expect(text).toMatch(/^mneme_http_requests_total\{method="POST",route="\/v1\/chat",status="200"\} \d+$/m);
      expect(text).toMatch(/^mneme_http_requests_total\{method="GET",route="\/metrics",status="403"\} 1$/m);
      // prom-client renders `le` first; either position is valid exposition format.
      expect(text).toMatch(/^mneme_http_request_duration_seconds_bucket\{(le="\+Inf",)?method="POST",route="\/v1\/chat",status="200"(,le="\+Inf")?\} \d+$/m);
      expect(text).toMatch(/^mneme_http_request_duration_seconds_bucket\{[^}]*le="\+Inf"[^}]*\} \d+$/m);
      expect(text).toMatch(/^mneme_retrieve_duration_seconds_count \d+$/m);
      expect(text).toMatch(/^mneme_generate_duration_seconds_count \d+$/m);
      expect(text).toMatch(/^mneme_tokens_total\{kind="completion"\} \d+$/m);
      expect(text).toMatch(/^mneme_generation_queue_depth 0$/m);
      expect(text).toMatch(/^mneme_model_state\{backend="extractive",model="[^"]+",state="ready"\} 1$/m);
      expect(text).toMatch(/^mneme_answers_total\{endpoint="chat",status="ok"\} \d+$/m);
    });
  });

  it('/healthz needs no key; an admin key adds model, embedder, index and counts', async () => {
    const anon = await fetch(`${srv.url}/healthz`);
    expect(anon.status).toBe(200);
    expect(await anon.json()).toEqual({ status: 'ok', model: { state: 'ready' }, index_lag: expect.any(Number) });
    const r = await fetch(`${srv.url}/healthz`, { headers: { authorization: `Bearer ${admin}` } });
    expect(r.status).toBe(200);
    const b = await r.json();
    expect(b).toMatchObject({
      status: 'ok',
      model: { backend: 'extractive', state: 'ready' },
      embedder: { dimension: 32 },
      retrieval: 'hybrid',
      index: { generation: 1, vectors: b.chunks },
      documents: 5,
    });
    expect(b.chunks).toBeGreaterThan(5);
  });

  describe('feedback', () => {
    it('stores a rating with an optional correction; 404 for another user\'s or an unknown response', async () => {
      const a = await chat(alice, { message: 'Where does the Tidewater ferry leave from?' });
      const ok = await postJson(`${srv.url}/v1/feedback`, alice, { response_id: a.body.id, rating: -1, correction: 'It leaves from pier 4.' });
      expect(ok.status).toBe(201);
      expect(ok.body).toMatchObject({ response_id: a.body.id, rating: -1, correction: 'It leaves from pier 4.' });
      const row = srv.db.prepare('SELECT user_id, rating, correction FROM feedback WHERE id = ?').get(ok.body.id) as Record<string, unknown>;
      expect(row).toMatchObject({ rating: -1, correction: 'It leaves from pier 4.' });
      const foreign = await postJson(`${srv.url}/v1/feedback`, bob, { response_id: a.body.id, rating: 1 });
      expect(foreign.status).toBe(404);
      const unknown = await postJson(`${srv.url}/v1/feedback`, alice, { response_id: 'resp_nope', rating: 1 });
      expect(unknown.status).toBe(404);
      const badRating = await postJson(`${srv.url}/v1/feedback`, alice, { response_id: a.body.id, rating: 5 });
      expect(badRating.status).toBe(400);
      expect(badRating.body.error.message).toMatch(/^rating:/);
    });
  });

  it('GET /v1/me/features returns the user name and online features', async () => {
    const r = await fetch(`${srv.url}/v1/me/features`, { headers: authHeaders(alice) });
    expect(r.status).toBe(200);
    const b = await r.json();
    expect(b).toMatchObject({ user: 'alice', admin: false, features: expect.any(Object) });
  });
});
