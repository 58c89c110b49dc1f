/**
 * Bounded load test: 50 concurrent clients hammer /v1/chat (JSON and SSE, new and follow-up turns)
 * on the extractive model for MNEME_TEST_LOAD_SECONDS (default 10; read only here, to keep CI time
 * sane). Requirements: no 5xx, and not one lost prediction-log row (200 responses == 'ok' rows).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from './http-helpers.ts';
import { authHeaders, count, ingestFixtures, parseSse, startTestServer, tempDir, testEnv } from './http-helpers.ts';

const LOAD_SECONDS = Number(process.env.MNEME_TEST_LOAD_SECONDS ?? '10');
const CLIENTS = 50;
const QUESTIONS = [
  'Which part number is the Halcyon X3 filter cartridge?',
  'How long should a new cartridge be flushed?',
  'What does kestrelctl do?',
  'What does error E-417 mean?',
  'How does OrbiSync resolve conflicts?',
  'When does the Tidewater ferry leave on Sundays?',
  'What grows in Vexmoor lunar gardens?',
];

describe('load', () => {
  let srv: TestServer;
  beforeAll(async () => {
    const env = testEnv(tempDir());
    await ingestFixtures(env);
    srv = await startTestServer(env);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it(`${CLIENTS} concurrent clients for ${LOAD_SECONDS}s: no 5xx, no lost log rows`, async () => {
    const keys = await Promise.all(Array.from({ length: 10 }, (_, i) => srv.key(`load${i}`)));
    const statuses = new Map<number, number>();
    let ok = 0;
    const latencies: number[] = [];
    const deadline = Date.now() + LOAD_SECONDS * 1000;
    const client = async (c: number) => {
      const key = keys[c % keys.length]!;
      let conversation: string | undefined;
      for (let i = 0; Date.now() < deadline; i++) {
        const stream = (c + i) % 4 === 0;
        const body = { message: QUESTIONS[(c + i) % QUESTIONS.length], stream, ...(conversation && i % 3 !== 0 ? { conversation_id: conversation } : {}) };
        const t0 = performance.now();
        const res = await fetch(`${srv.url}/v1/chat`, { method: 'POST', headers: authHeaders(key), body: JSON.stringify(body) });
        const text = await res.text();
        latencies.push(performance.now() - t0);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status !== 200) continue;
        const answer = stream ? JSON.parse(parseSse(text).find((e) => e.event === 'done')!.data) : JSON.parse(text);
        expect(answer.id).toMatch(/^resp_/);
        conversation = answer.conversation_id;
        ok++;
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    latencies.sort((a, b) => a - b);
    const summary = {
      requests: latencies.length,
      rps: Math.round(latencies.length / LOAD_SECONDS),
      p50_ms: Math.round(latencies[Math.floor(latencies.length * 0.5)]!),
      p99_ms: Math.round(latencies[Math.floor(latencies.length * 0.99)]!),
      statuses: Object.fromEntries(statuses),
    };
    console.log(JSON.stringify(summary));
    expect([...statuses.keys()].filter((s) => s >= 500)).toEqual([]);
    expect(ok).toBeGreaterThan(CLIENTS);
    expect(count(srv, 'responses', "status = 'ok'")).toBe(ok);
    expect(count(srv, 'responses')).toBe(latencies.length);
    expect(count(srv, 'messages')).toBe(2 * ok);
  }, (LOAD_SECONDS + 60) * 1000);
});
