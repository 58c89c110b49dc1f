import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/core/config.ts';
import { EMBED_MAX_WORKERS, EMBED_RESPAWN_MAX_MS, EmbedderUnavailableError, embedWorkerLayout, loadEmbedder, planBatches, respawnDelayMs, TransformersEmbedder } from '../../../src/core/embedder.ts';
import { ModelLoadError } from '../../../src/core/errors.ts';
import { tempDir, TINY_BERT } from '../../helpers/cli.ts';

describe('planBatches', () => {
  it('sorts by length and respects the padded-token budget and item cap', () => {
    const lengths = [100, 5, 50, 6, 7, 100, 49];
    const batches = planBatches(lengths, 120, 3);
    expect(batches.flat().sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    for (const b of batches) {
      const longest = Math.max(...b.map((i) => lengths[i]!));
      expect(b.length === 1 || longest * b.length <= 120).toBe(true);
      expect(b.length).toBeLessThanOrEqual(3);
    }
    // Short items travel together, long ones alone.
    expect(batches[0]).toEqual([1, 3, 4]);
  });
});

describe('TransformersEmbedder (tiny fixture model, real loading path)', () => {
  let e: TransformersEmbedder;
  beforeAll(async () => {
    e = await TransformersEmbedder.load({ modelRef: TINY_BERT, modelsDir: tempDir(), offline: true, dtype: 'fp32', threads: 1, maxTokens: undefined });
  });
  afterAll(async () => {
    await e.close();
  });

  it('reports the model shape from its files', () => {
    expect(e.info).toMatchObject({ modelId: TINY_BERT, dimension: 32, maxTokens: 128, pooling: 'mean', normalized: true });
  });

  it('returns unit vectors in input order, and batching does not change them', async () => {
    const texts = ['short one', 'a considerably longer sentence about vacuum and storage in postgres databases', 'mid length text here'];
    const together = await e.embed(texts);
    const alone = await Promise.all(texts.map(async (t) => (await e.embed([t]))[0]!));
    for (let i = 0; i < texts.length; i++) {
      const v = together[i]!;
      expect(v.length).toBe(32);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
      for (let k = 0; k < 32; k++) expect(v[k]!).toBeCloseTo(alone[i]![k]!, 4);
    }
  });

  it('counts tokens with the model tokenizer (special tokens included)', () => {
    expect(e.countTokens('hello world')).toBeGreaterThanOrEqual(4);
    expect(e.countTokens('word '.repeat(300))).toBeGreaterThan(300);
  });
});

describe('embedding workers', () => {
  it('lays out one single-threaded worker per core, at most EMBED_MAX_WORKERS, sharing the rest as threads', () => {
    expect(embedWorkerLayout(1)).toEqual({ workers: 1, threadsPerWorker: 1 });
    expect(embedWorkerLayout(2)).toEqual({ workers: 2, threadsPerWorker: 1 });
    expect(EMBED_MAX_WORKERS).toBe(4);
    expect(embedWorkerLayout(16)).toEqual({ workers: 4, threadsPerWorker: 4 });
    expect(embedWorkerLayout(6)).toEqual({ workers: 4, threadsPerWorker: 1 });
  });

  it('gives the same vectors, in order, whether one or three workers compute them', async () => {
    const opts = { modelRef: TINY_BERT, modelsDir: tempDir(), offline: true, dtype: 'fp32', threads: 3, maxTokens: undefined };
    const one = await TransformersEmbedder.load({ ...opts, workers: 1 });
    const three = await TransformersEmbedder.load({ ...opts, workers: 3 });
    try {
      expect(one.workerCount).toBe(1);
      expect(three.workerCount).toBe(3);
      // Lengths from 1 to ~120 tokens: several batches, spread over the workers.
      const texts = Array.from({ length: 60 }, (_, i) => `chunk ${i} ${'about vacuum and storage '.repeat(i % 25)}`);
      const [a, b] = await Promise.all([one.embed(texts), three.embed(texts)]);
      expect(b).toHaveLength(texts.length);
      for (let i = 0; i < texts.length; i++) for (let k = 0; k < 32; k++) expect(b[i]![k]).toBeCloseTo(a[i]![k]!, 4);
    } finally {
      await one.close();
      await three.close();
    }
  });

  it('MNEME_EMBED_WORKERS sets the worker count, validated', async () => {
    expect(loadConfig({ MNEME_EMBED_WORKERS: '1' }).embed.workers).toBe(1);
    expect(loadConfig({}).embed.workers).toBeUndefined();
    expect(() => loadConfig({ MNEME_EMBED_WORKERS: '0' })).toThrow('MNEME_EMBED_WORKERS');
  });
});

describe('loading failures', () => {
  it('a missing directory is a ModelLoadError naming it', async () => {
    await expect(
      TransformersEmbedder.load({ modelRef: '/nonexistent/model-dir', modelsDir: tempDir(), offline: true, dtype: 'fp32', threads: 1, maxTokens: undefined }),
    ).rejects.toThrow(ModelLoadError);
    await expect(
      TransformersEmbedder.load({ modelRef: '/nonexistent/model-dir', modelsDir: tempDir(), offline: true, dtype: 'fp32', threads: 1, maxTokens: undefined }),
    ).rejects.toThrow('/nonexistent/model-dir');
  });

  it('offline with an uncached hub model degrades to BM25 with a warning that says where to put it', async () => {
    const dataDir = tempDir();
    const r = await loadEmbedder(loadConfig({ MNEME_DATA_DIR: dataDir, MNEME_OFFLINE: '1' }));
    expect(r.embedder).toBeNull();
    expect(r.warning).toContain('BM25 only');
    expect(r.warning).toContain(`${dataDir}/models/Xenova/all-MiniLM-L6-v2`);
  });
});

describe('worker crashes (self-healing)', () => {
  const opts = { modelRef: TINY_BERT, modelsDir: tempDir(), offline: true, dtype: 'fp32', threads: 1, maxTokens: undefined, workers: 1 };
  const texts = Array.from({ length: 400 }, (_, i) => `chunk ${i} ${'about vacuum and storage '.repeat(20)}`);

  it('respawnDelayMs doubles from the base and is capped', () => {
    expect([0, 1, 2, 3].map((a) => respawnDelayMs(a, 100, 1000))).toEqual([100, 200, 400, 800]);
    expect(respawnDelayMs(10, 100, 1000)).toBe(1000);
    expect(respawnDelayMs(5000)).toBe(EMBED_RESPAWN_MAX_MS);
  });

  it('a crash rejects the batches in flight with EmbedderUnavailableError, then the worker comes back', async () => {
    const e = await TransformersEmbedder.load(opts);
    e.respawnBaseMs = 50;
    try {
      const pending = e.embed(texts).then(() => 'resolved', (err: unknown) => err);
      await e.crashWorkerForTest(0);
      expect(await pending).toBeInstanceOf(EmbedderUnavailableError);
      await expect(e.embed(['while down'])).rejects.toBeInstanceOf(EmbedderUnavailableError);
      const end = Date.now() + 20_000;
      while (e.liveWorkers < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(e.liveWorkers).toBe(1);
      const [v] = await e.embed(['back again']);
      expect(v).toHaveLength(32);
    } finally {
      await e.close();
    }
  }, 30_000);

  it('close() settles every pending promise, and later calls reject at once', async () => {
    const e = await TransformersEmbedder.load(opts);
    const pending = e.embed(texts).then(() => 'resolved', (err: unknown) => err);
    await e.close();
    expect(await pending).toBeInstanceOf(EmbedderUnavailableError);
    await expect(e.embed(['after close'])).rejects.toBeInstanceOf(EmbedderUnavailableError);
  });
});
