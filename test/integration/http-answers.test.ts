/**
 * Answers a user can trust (issue 13) over real HTTP: abstention (extractive and an OpenAI-compatible
 * backend), uncited answers flagged, the prediction-log columns, GET /v1/models, and unknown
 * collections.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { ingestCommand } from '../../src/commands/ingest.ts';
import { buildPdf } from '../helpers/pdf.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { authHeaders, bufferIo, ingestFixtures, postJson, startFakeLlm, startTestServer, tempDir, testEnv } from './http-helpers.ts';

type Row = Record<string, any>;

describe('answers a user can trust (extractive backend)', () => {
  let srv: TestServer;
  let key: string;

  beforeAll(async () => {
    const env = testEnv(tempDir());
    await ingestFixtures(env);
    srv = await startTestServer(env);
    key = await srv.key('dana');
  });
  afterAll(async () => {
    await srv?.stop();
  });

  const row = (id: string) => srv.db.prepare('SELECT * FROM responses WHERE id = ?').get(id) as Row;

  it('abstains on an off-topic question: says so, lists the closest sources, logs finish_reason no_evidence', async () => {
    const r = await postJson(`${srv.url}/v1/chat`, key, { message: 'What is the capital of France?' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.finish_reason).toBe('no_evidence');
    expect(r.body.answer).toContain('the documents do not cover this question');
    expect(r.body.answer).toContain('Closest sources in the documents:');
    expect(r.body.citations).toEqual([]);
    expect(r.body.closest_sources.length).toBeGreaterThan(0);
    for (const s of r.body.closest_sources) expect(s.source.startsWith('/')).toBe(false);
    expect(r.body.flags).toEqual([]);
    const logged = row(r.body.id);
    expect(logged.finish_reason).toBe('no_evidence');
    expect(JSON.parse(logged.flags_json)).toEqual([]);
    expect(JSON.parse(logged.evidence_json)).toMatchObject({ abstain: true, reason: 'low_coverage', terms: ['capital', 'france'], absent: ['capital', 'france'] });
  });

  it('answers an on-topic question with citations, finish_reason stop and no flags', async () => {
    const r = await postJson(`${srv.url}/v1/chat`, key, { message: 'Which part number is the Halcyon X3 filter cartridge?' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ finish_reason: 'stop', flags: [], closest_sources: [] });
    expect(r.body.citations.map((c: { n: number }) => c.n)).toEqual(r.body.citations.map((_: unknown, i: number) => i + 1));
    expect(r.body.citations[0]).toMatchObject({ relevance: expect.stringMatching(/^(high|medium|low)$/), page: null });
    const logged = row(r.body.id);
    expect(logged.finish_reason).toBe('stop');
    expect(JSON.parse(logged.evidence_json)).toMatchObject({ abstain: false, coverage: 1 });
  });

  it('streams the abstention too (the done event carries it)', async () => {
    const res = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: authHeaders(key), body: JSON.stringify({ message: 'Who wrote Pride and Prejudice?', stream: true }) });
    const text = await res.text();
    expect(text).toContain('Closest sources in the documents:');
    expect(text).toMatch(/"finish_reason":"no_evidence"/);
  });

  it('lists the answering model in OpenAI shape (authenticated), one model by id, 404 for others', async () => {
    const list = await fetch(`${srv.url}/v1/models`, { headers: authHeaders(key) });
    expect(list.status).toBe(200);
    const body = (await list.json()) as { object: string; data: Array<Record<string, unknown>> };
    expect(body).toEqual({ object: 'list', data: [{ id: 'extractive-v1', object: 'model', created: expect.any(Number), owned_by: 'mneme', mneme: { backend: 'extractive' } }] });
    const one = await fetch(`${srv.url}/v1/models/extractive-v1`, { headers: authHeaders(key) });
    expect(await one.json()).toEqual(body.data[0]);
    const missing = await fetch(`${srv.url}/v1/models/gpt-4o`, { headers: authHeaders(key) });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('model_not_found');
    expect((await fetch(`${srv.url}/v1/models`)).status).toBe(401);
    // The official client lists and retrieves models.
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: key, maxRetries: 0 });
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(['extractive-v1']);
    expect((await client.models.retrieve('extractive-v1')).owned_by).toBe('mneme');
  });

  it('an unknown collection is 404 collection_not_found with the readable collections, on both chat endpoints', async () => {
    for (const [url, body] of [
      [`${srv.url}/v1/chat`, { message: 'What is OrbiSync?', collection: 'nope' }],
      [`${srv.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'What is OrbiSync?' }], collection: 'nope' }],
    ] as const) {
      const before = srv.db.prepare('SELECT count(*) FROM responses').pluck().get();
      const r = await postJson(url, key, body);
      expect(r.status).toBe(404);
      expect(r.body).toEqual({ error: { code: 'collection_not_found', message: 'no collection "nope"', collections: [{ name: 'default', documents: 5 }] } });
      expect(srv.db.prepare('SELECT count(*) FROM responses').pluck().get()).toBe(before);
    }
    const ok = await postJson(`${srv.url}/v1/chat`, key, { message: 'What is OrbiSync?', collection: 'default' });
    expect(ok.status).toBe(200);
  });
});

describe('answers a user can trust (OpenAI-compatible backend)', () => {
  let llm: FakeLlm;
  let srv: TestServer;
  let key: string;

  beforeAll(async () => {
    llm = await startFakeLlm();
    const env = testEnv(tempDir(), { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake-llm' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
    key = await srv.key('erin');
  });
  afterAll(async () => {
    await srv?.stop();
    await llm?.close();
  });

  const row = (id: string) => srv.db.prepare('SELECT * FROM responses WHERE id = ?').get(id) as Row;

  it('tells the model when retrieval found little support, and logs a model abstention as no_evidence', async () => {
    llm.behaviour = { kind: 'answer', text: 'The documents do not cover this.' };
    const r = await postJson(`${srv.url}/v1/chat`, key, { message: 'What is the capital of France?' });
    expect(r.status).toBe(200);
    const prompt = llm.requests.at(-1)?.messages.map((m) => m.content).join('\n') ?? '';
    expect(prompt).toContain('Note from retrieval: Retrieval found little support for this question');
    expect(prompt).toContain('say plainly, in one sentence, that the documents do not cover it');
    expect(r.body).toMatchObject({ finish_reason: 'no_evidence', flags: [] });
    expect(r.body.answer).toMatch(/^The documents do not cover this\.\n\nClosest sources in the documents:\n- /);
    expect(row(r.body.id).finish_reason).toBe('no_evidence');
  });

  it('flags an answer that cites nothing although the evidence was there, and the completions endpoint keeps OpenAI values', async () => {
    llm.behaviour = { kind: 'answer', text: 'The cartridge is BW-TS-30.' };
    const r = await postJson(`${srv.url}/v1/chat`, key, { message: 'Which part number is the Halcyon X3 filter cartridge?' });
    expect(r.body).toMatchObject({ finish_reason: 'stop', flags: ['uncited'], citations: [] });
    expect(llm.requests.at(-1)?.messages.map((m) => m.content).join('\n')).not.toContain('Note from retrieval');
    expect(JSON.parse(row(r.body.id).flags_json)).toEqual(['uncited']);

    llm.behaviour = { kind: 'answer', text: 'No idea.' };
    const c = await postJson(`${srv.url}/v1/chat/completions`, key, { messages: [{ role: 'user', content: 'How tall is Mount Everest?' }] });
    expect(c.body.choices[0].finish_reason).toBe('stop');
    expect(c.body.mneme).toMatchObject({ finish_reason: 'no_evidence', flags: [] });
    expect(c.body.mneme.closest_sources.length).toBeGreaterThan(0);

    const models = await fetch(`${srv.url}/v1/models`, { headers: authHeaders(key) });
    expect(((await models.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toEqual(['fake-llm']);
  });
});

describe('PDF documents: ingested per page, cited with their page', () => {
  let srv: TestServer;
  let key: string;

  beforeAll(async () => {
    const docs = tempDir('mneme-pdfdocs-');
    fs.writeFileSync(
      path.join(docs, 'lantern.pdf'),
      await buildPdf(
        [
          { heading: 'Installing the Lantern', lines: ['Mount the Lantern bracket on a dry wall.', 'Use the two M4 screws from the box.'] },
          { lines: ['The bracket holds up to 3 kg.'] },
          { heading: 'Charging', lines: ['Charge the Lantern for six hours before first use.', 'The ring glows green when the battery is full.'] },
        ],
        'Lantern manual',
      ),
    );
    const env = testEnv(tempDir());
    const io = bufferIo(env);
    expect(await ingestCommand.run([docs, '--json'], io), io.err()).toBe(0);
    expect(JSON.parse(io.out().trim().split('\n').at(-1) ?? '{}')).toMatchObject({ documents_added: 1, documents_failed: 0, chunks_added: 3 });
    srv = await startTestServer(env);
    key = await srv.key('fay');
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('answers from page 3 and the citation says p. 3 (page: 3, heading Charging)', async () => {
    const r = await postJson(`${srv.url}/v1/chat`, key, { message: 'How long should I charge the Lantern before first use?' });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.answer).toContain('Charge the Lantern for six hours before first use [1].');
    expect(r.body.citations[0]).toMatchObject({ n: 1, title: 'Lantern manual', page: 3, heading: 'Charging > page 3', source: expect.stringMatching(/lantern\.pdf$/) });
  });
});
