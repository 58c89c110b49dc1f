import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/core/config.ts';
import { EmbedderUnavailableError, loadEmbedder } from '../../../src/core/embedder.ts';
import type { OpenAIEmbedderOptions } from '../../../src/core/embedder-openai.ts';
import { OpenAIEmbedder, parseRetryAfter, planRequestBatches } from '../../../src/core/embedder-openai.ts';
import { ConfigError, UpstreamError, UpstreamTimeoutError } from '../../../src/core/errors.ts';
import type { StubEmbedServer } from '../../helpers/embed-server.ts';
import { startStubEmbedServer, stubVector } from '../../helpers/embed-server.ts';

let server: StubEmbedServer;
const open: OpenAIEmbedder[] = [];

beforeEach(async () => {
  server = await startStubEmbedServer({ dim: 16 });
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
  await server.close();
});

function options(extra: Partial<OpenAIEmbedderOptions> = {}): OpenAIEmbedderOptions {
  return {
    baseUrl: server.url,
    modelName: 'stub-model',
    apiKey: undefined,
    concurrency: 4,
    timeoutMs: 2000,
    retries: 3,
    batchItems: 8,
    batchChars: 100_000,
    backoffBaseMs: 5,
    backoffMaxMs: 20,
    ...extra,
  };
}

async function load(extra: Partial<OpenAIEmbedderOptions> = {}): Promise<OpenAIEmbedder> {
  const e = await OpenAIEmbedder.load(options(extra));
  open.push(e);
  return e;
}

function normalized(text: string, dim: number): Float32Array {
  const v = Float32Array.from(stubVector(text, dim));
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

const texts = (n: number, prefix = 't') => Array.from({ length: n }, (_, i) => `${prefix} ${i} ${'x'.repeat(i % 7)}`);

describe('OpenAIEmbedder against a real HTTP server', () => {
  it('probes the dimension at load and reports a stable model id', async () => {
    const e = await load({ baseUrl: `${server.url}/v1/` });
    expect(e.info.dimension).toBe(16);
    expect(e.info.modelId).toBe(`openai:${server.url}/v1#stub-model`);
    expect(e.info.normalized).toBe(true);
    expect(server.requests).toBe(1);
    expect(server.models).toEqual(['stub-model']);
    expect(e.countTokens('hello world')).toBe(2);
  });

  it('sends the API key as a bearer token', async () => {
    await load({ apiKey: 'sk-test' });
    expect(server.authHeaders).toEqual(['Bearer sk-test']);
  });

  it('batches by items and characters and restores the order by index', async () => {
    const e = await load({ batchItems: 8, batchChars: 60 });
    server.requests = 0;
    server.batchSizes = [];
    const input = texts(50);
    const out = await e.embed(input);
    expect(out).toHaveLength(50);
    input.forEach((t, i) => {
      const want = normalized(t, 16);
      out[i]!.forEach((x, j) => expect(x).toBeCloseTo(want[j]!, 5));
    });
    expect(server.requests).toBe(planRequestBatches(input, 8, 60).length);
    expect(Math.max(...server.batchSizes)).toBeLessThanOrEqual(8);
    expect(server.batchSizes.reduce((a, b) => a + b, 0)).toBe(50);
  });

  it('plans batches under both budgets; an oversize text goes alone', () => {
    expect(planRequestBatches(['aaaa', 'bb', 'cccccccccc', 'd'], 3, 6)).toEqual([[0, 1], [2], [3]]);
    expect(planRequestBatches(['a', 'b', 'c', 'd', 'e'], 2, 100)).toEqual([[0, 1], [2, 3], [4]]);
  });

  it('never has more than `concurrency` requests in flight, across embed calls', async () => {
    const e = await load({ concurrency: 3, batchItems: 2 });
    server.delayMs = 30;
    server.maxInFlight = 0;
    await Promise.all([e.embed(texts(20, 'a')), e.embed(texts(20, 'b'))]);
    expect(server.maxInFlight).toBe(3);
  });

  it('waits out a 429 with Retry-After, then succeeds', async () => {
    const e = await load();
    const started = Date.now();
    server.script = (n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : 'ok');
    const out = await e.embed(['one', 'two']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(out).toHaveLength(2);
    expect(server.requests).toBe(3);
  });

  it('retries 500s and dropped connections with backoff, then succeeds', async () => {
    const e = await load();
    server.script = (n) => (n === 1 || n === 2 ? { status: 500 } : n === 3 ? 'reset' : 'ok');
    const out = await e.embed(['one']);
    expect(out[0]).toHaveLength(16);
    expect(server.requests).toBe(5);
  });

  it('a permanent failure surfaces as UpstreamError naming the URL after the retries', async () => {
    const e = await load({ retries: 2 });
    server.script = () => ({ status: 503, body: '{"error":{"message":"model is overloaded"}}' });
    const err = await e.embed(['one']).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toContain(`${server.url}/v1/embeddings`);
    expect((err as Error).message).toContain('model is overloaded');
    expect(server.requests).toBe(1 + 3);
  });

  it('does not retry a 400 (a request the server will never accept)', async () => {
    const e = await load();
    server.script = () => ({ status: 400, body: '{"error":"input too long"}' });
    await expect(e.embed(['one'])).rejects.toThrow(UpstreamError);
    expect(server.requests).toBe(2);
  });

  it('times out a request that never answers (UpstreamTimeoutError after the retries)', async () => {
    const e = await load({ timeoutMs: 150, retries: 1 });
    let hangs = 0;
    server.script = () => (hangs++, 'hang');
    const started = Date.now();
    const err = await e.embed(['one']).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(UpstreamTimeoutError);
    expect((err as Error).message).toContain('150 ms');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(hangs).toBe(2);
  });

  it('refuses a dimension change instead of mixing vectors', async () => {
    const e = await load();
    server.dim = 24;
    const err = await e.embed(['one']).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).details).toEqual({ expected: 16, got: 24 });
    expect(server.requests).toBe(2); // not retried
    expect(e.info.dimension).toBe(16);
  });

  it('rejects a malformed answer (wrong count)', async () => {
    const e = await load();
    server.script = () => ({ status: 200, body: JSON.stringify({ data: [{ index: 0, embedding: [1, 2] }] }) });
    await expect(e.embed(['one', 'two'])).rejects.toThrow(/2 inputs/);
  });

  it('close() aborts requests in flight and settles pending calls', async () => {
    const e = await load({ concurrency: 1, batchItems: 1 });
    server.script = () => 'hang';
    const pending = e.embed(['a', 'b', 'c']);
    const settled = pending.catch((x: unknown) => x);
    while (server.inFlight === 0) await new Promise((r) => setTimeout(r, 5));
    const started = Date.now();
    await e.close();
    expect(await settled).toBeInstanceOf(EmbedderUnavailableError);
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(e.embed(['d'])).rejects.toThrow(EmbedderUnavailableError);
  });

  it('load fails with UpstreamError when nothing listens', async () => {
    const url = server.url;
    await server.close();
    const err = await OpenAIEmbedder.load({ ...options({ retries: 1 }), baseUrl: url }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as Error).message).toMatch(/cannot reach .*127\.0\.0\.1.*ECONNREFUSED/);
    server = await startStubEmbedServer();
  });

  it('parses Retry-After seconds and dates', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 7000)).toBe(3000);
    expect(parseRetryAfter('soon')).toBeNull();
    expect(parseRetryAfter(null)).toBeNull();
  });
});

describe('openai: embedder configuration', () => {
  it('loadEmbedder picks the server embedder from MNEME_EMBED_MODEL=openai:…', async () => {
    const config = loadConfig({ MNEME_EMBED_MODEL: `openai:${server.url}`, MNEME_EMBED_MODEL_NAME: 'stub-model', MNEME_EMBED_CONCURRENCY: '2' });
    expect(config.embed.model).toBe(`openai:${server.url}/v1#stub-model`);
    expect(config.embed.server).toMatchObject({ apiBase: `${server.url}/v1`, modelName: 'stub-model', concurrency: 2, timeoutMs: 30_000, retries: 4 });
    const loaded = await loadEmbedder(config);
    expect(loaded.embedder).toBeInstanceOf(OpenAIEmbedder);
    open.push(loaded.embedder as OpenAIEmbedder);
    expect(loaded.embedder!.info.modelId).toBe(config.embed.model);
  });

  it('the model id is itself a valid MNEME_EMBED_MODEL (model name after #)', () => {
    const c = loadConfig({ MNEME_EMBED_MODEL: 'openai:http://h:8080/v1#bge-small' });
    expect(c.embed.model).toBe('openai:http://h:8080/v1#bge-small');
    expect(c.embed.server?.modelName).toBe('bge-small');
  });

  it.each([
    [{ MNEME_EMBED_MODEL: 'openai:http://h:8080' }, 'MNEME_EMBED_MODEL_NAME'],
    [{ MNEME_EMBED_MODEL: 'openai:not-a-url', MNEME_EMBED_MODEL_NAME: 'm' }, 'MNEME_EMBED_MODEL'],
    [{ MNEME_EMBED_MODEL: 'openai:ftp://h/', MNEME_EMBED_MODEL_NAME: 'm' }, 'MNEME_EMBED_MODEL'],
    [{ MNEME_EMBED_MODEL: 'openai:http://h#a', MNEME_EMBED_MODEL_NAME: 'b' }, 'MNEME_EMBED_MODEL_NAME'],
    [{ MNEME_EMBED_CONCURRENCY: '0' }, 'MNEME_EMBED_CONCURRENCY'],
    [{ MNEME_EMBED_TIMEOUT_MS: 'soon' }, 'MNEME_EMBED_TIMEOUT_MS'],
    [{ MNEME_EMBED_RETRIES: '-1' }, 'MNEME_EMBED_RETRIES'],
  ])('rejects %j naming %s', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${name}:`));
  });
});
