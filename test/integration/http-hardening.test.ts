/**
 * Hardening of the chat HTTP API against hostile or broken requests (issue 16), on a real server
 * (extractive model, fixture corpus, real SQLite): deep JSON, corrupt compressed bodies, bad
 * percent-encoding, what non-admins may see, failed-auth rate limiting.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from './http-helpers.ts';
import { FIXTURE_DOCS, count, ingestFixtures, parseSse, postJson, startTestServer, tempDir, testEnv } from './http-helpers.ts';

/** Nesting of the hostile body (the 40 KB, 20,000 levels). */
const HOSTILE_DEPTH = 20_000;

/** `{..., x: [[[...]]]}` nested `depth` levels inside an extra field. */
function nestedBody(base: Record<string, unknown>, depth: number): string {
  const inner = '['.repeat(depth) + ']'.repeat(depth);
  return JSON.stringify(base).replace(/}$/, `,"x":${inner}}`);
}

/** Sends raw bytes with the given headers through node:http (fetch would re-encode). */
function rawRequest(url: string, method: string, headers: Record<string, string>, payload?: Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // keep text
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

describe('chat HTTP hardening', () => {
  let srv: TestServer;
  let key: string;
  let admin: string;

  beforeAll(async () => {
    const env = testEnv(tempDir(), { MNEME_AUTH_FAIL_PER_MIN: '5' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
    key = await srv.key('dora');
    admin = await srv.key('root', true);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  describe('deep JSON', () => {
    it('a 40 KB body nested 20,000 levels deep → 400 invalid_json on both chat endpoints, stream or not, no row', async () => {
      const before = count(srv, 'responses');
      const bodies = [
        [`${srv.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'What does kestrelctl do?' }] }],
        [`${srv.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'What does kestrelctl do?' }], stream: true }],
        [`${srv.url}/v1/chat`, { message: 'What does kestrelctl do?' }],
        [`${srv.url}/v1/chat`, { message: 'What does kestrelctl do?', stream: true }],
      ] as const;
      for (const [url, base] of bodies) {
        const text = nestedBody(base, HOSTILE_DEPTH);
        expect(text.length).toBeGreaterThan(40_000);
        const r = await postJson(url, key, text);
        expect(r.status, `${url} ${JSON.stringify(r.body)}`).toBe(400);
        expect(r.body.error.code).toBe('invalid_json');
        expect(r.body.error.message).toMatch(/deeper than 64 levels/);
      }
      expect(count(srv, 'responses')).toBe(before);
    });

    it('brackets inside strings do not count; nesting within the limit answers and logs its row (stream too)', async () => {
      const url = `${srv.url}/v1/chat/completions`;
      const content = `What does kestrelctl do? ${'[{'.repeat(500)}`;
      const plain = await postJson(url, key, nestedBody({ messages: [{ role: 'user', content }] }, 60));
      expect(plain.status, JSON.stringify(plain.body)).toBe(200);
      expect(count(srv, 'responses', 'id = ?', plain.body.id)).toBe(1);

      const res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: nestedBody({ messages: [{ role: 'user', content }], stream: true }, 60),
      });
      expect(res.status).toBe(200);
      const events = parseSse(await res.text());
      expect(events[events.length - 1]!.data).toBe('[DONE]');
      const first = JSON.parse(events[0]!.data) as { id: string };
      expect(count(srv, 'responses', 'id = ?', first.id)).toBe(1);
    });
  });

  describe('Content-Encoding', () => {
    const payload = Buffer.from(JSON.stringify({ message: 'What does kestrelctl do?' }));
    const headers = (encoding: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-encoding': encoding });

    it('a valid gzip/deflate/br body is decoded and answered', async () => {
      for (const [enc, data] of [['gzip', zlib.gzipSync(payload)], ['deflate', zlib.deflateSync(payload)], ['br', zlib.brotliCompressSync(payload)]] as const) {
        const r = await rawRequest(`${srv.url}/v1/chat`, 'POST', headers(enc), data);
        expect(r.status, `${enc}: ${JSON.stringify(r.body)}`).toBe(200);
      }
    });

    it('a corrupt gzip/deflate/br body → 400 invalid_body (not 500)', async () => {
      const corrupt = Buffer.from('this is not compressed data at all, just bytes');
      for (const enc of ['gzip', 'deflate', 'br']) {
        const r = await rawRequest(`${srv.url}/v1/chat`, 'POST', headers(enc), corrupt);
        expect(r.status, `${enc}: ${JSON.stringify(r.body)}`).toBe(400);
        expect(r.body.error.code).toBe('invalid_body');
      }
      // A truncated gzip stream too.
      const truncated = zlib.gzipSync(payload).subarray(0, 12);
      const r = await rawRequest(`${srv.url}/v1/chat`, 'POST', headers('gzip'), truncated);
      expect(r.status).toBe(400);
    });

    it('an unknown Content-Encoding → 415', async () => {
      const r = await rawRequest(`${srv.url}/v1/chat`, 'POST', headers('x-snappy'), payload);
      expect(r.status).toBe(415);
      expect(r.body.error.code).toBe('unsupported_media_type');
    });
  });

  it('GET /v1/conversations/%FF/messages → 400, not 500', async () => {
    const r = await rawRequest(`${srv.url}/v1/conversations/%FF/messages`, 'GET', { authorization: `Bearer ${key}` });
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(JSON.stringify(r.body)).not.toMatch(/URIError|at /);
  });

  describe('what non-admins see', () => {
    it('/healthz without an admin key shows only state; an admin key adds model, embedder and counts', async () => {
      for (const headers of <Array<Record<string, string>>>[{}, { authorization: `Bearer ${key}` }, { authorization: 'Bearer not-a-key' }]) {
        const r = await fetch(`${srv.url}/healthz`, { headers });
        expect(r.status).toBe(200);
        const b = await r.json();
        expect(Object.keys(b).sort()).toEqual(['index_lag', 'model', 'status']);
        expect(b.model).toEqual({ state: 'ready' });
        expect(JSON.stringify(b)).not.toMatch(/tiny-bert|\//);
      }
      const r = await fetch(`${srv.url}/healthz`, { headers: { authorization: `Bearer ${admin}` } });
      const b = await r.json();
      expect(b.embedder.model_id).toMatch(/tiny-bert$/);
      expect(b.documents).toBeGreaterThan(0);
    });

    it('citations show the last path segments, never the absolute path (which stays in the database)', async () => {
      const r = await postJson(`${srv.url}/v1/chat`, key, { message: 'Which part number is the Halcyon X3 filter cartridge?' });
      expect(r.status).toBe(200);
      expect(r.body.citations.length).toBeGreaterThan(0);
      for (const c of r.body.citations as Array<{ source: string }>) {
        expect(c.source).toMatch(/^fixtures\/docs\/[^/]+\.md$/);
        expect(JSON.stringify(r.body)).not.toContain(FIXTURE_DOCS);
      }
      const stored = srv.db.prepare('SELECT source_uri FROM documents LIMIT 1').pluck().get() as string;
      expect(stored.startsWith(FIXTURE_DOCS)).toBe(true);
    });
  });

  it('bad keys are rate-limited per IP: after MNEME_AUTH_FAIL_PER_MIN (5 here) 401s, 429 with Retry-After, even for a valid key', async () => {
    // Earlier tests in this file sent one bad key (/healthz); use up the rest of the budget.
    const statuses: number[] = [];
    let limited: Response | null = null;
    for (let i = 0; i < 8; i++) {
      const r = await fetch(`${srv.url}/v1/me/features`, { headers: { authorization: `Bearer mn_guess-${i}` } });
      statuses.push(r.status);
      if (r.status === 429) limited ??= r;
    }
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5);
    expect(statuses.slice(-3)).toEqual([429, 429, 429]);
    const retry = Number(limited!.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    expect((await limited!.json()).error.code).toBe('rate_limited');
    // The address is locked out, so guessing right does not help either.
    const valid = await fetch(`${srv.url}/v1/me/features`, { headers: { authorization: `Bearer ${key}` } });
    expect(valid.status).toBe(429);
    // /healthz still answers the public state.
    expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
  });
});
