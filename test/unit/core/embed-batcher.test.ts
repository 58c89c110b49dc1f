import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchingEmbedder } from '../../../src/core/embed-batcher.ts';
import type { Embedder, EmbedderInfo } from '../../../src/core/embedder.ts';
import { TransformersEmbedder } from '../../../src/core/embedder.ts';
import { tempDir, TINY_BERT } from '../../helpers/cli.ts';

/**
 * A hand-written embedder that records each call and answers only when told to: the batcher's
 * scheduling is what is under test here, not a model (the real model is used further down).
 */
class ManualEmbedder implements Embedder {
  readonly info: EmbedderInfo = { modelId: 'manual', dimension: 2, maxTokens: 16, pooling: 'mean', normalized: false };
  readonly calls: Array<{ texts: string[]; settle: (fail?: Error) => void }> = [];
  countTokens(text: string): number {
    return text.length;
  }
  embed(texts: string[]): Promise<Float32Array[]> {
    return new Promise((resolve, reject) => {
      this.calls.push({
        texts,
        settle: (fail) => (fail ? reject(fail) : resolve(texts.map((t) => Float32Array.of(t.length, t.charCodeAt(0))))),
      });
    });
  }
  async close(): Promise<void> {}
}

const tick = () => new Promise((r) => setImmediate(r));

describe('BatchingEmbedder', () => {
  it('sends a call at once when idle, and coalesces the calls made meanwhile into the next one', async () => {
    const inner = new ManualEmbedder();
    const b = new BatchingEmbedder(inner);
    const first = b.embed(['a']);
    await tick();
    expect(inner.calls.map((c) => c.texts)).toEqual([['a']]);
    const rest = [b.embed(['bb']), b.embed(['ccc', 'dddd']), b.embed(['e'])];
    await tick();
    expect(inner.calls).toHaveLength(1);
    inner.calls[0]!.settle();
    expect(await first).toEqual([Float32Array.of(1, 97)]);
    await tick();
    expect(inner.calls.map((c) => c.texts)).toEqual([['a'], ['bb', 'ccc', 'dddd', 'e']]);
    inner.calls[1]!.settle();
    const [bb, cd, e] = await Promise.all(rest);
    expect(bb).toEqual([Float32Array.of(2, 98)]);
    expect(cd).toEqual([Float32Array.of(3, 99), Float32Array.of(4, 100)]);
    expect(e).toEqual([Float32Array.of(1, 101)]);
  });

  it('caps a coalesced call at maxTexts whole callers, but never splits or refuses one large call', async () => {
    const inner = new ManualEmbedder();
    const b = new BatchingEmbedder(inner, { maxTexts: 3 });
    const p0 = b.embed(['x']);
    const p1 = b.embed(['a', 'b']);
    const p2 = b.embed(['c', 'd']);
    const p3 = b.embed(['e', 'f', 'g', 'h']);
    await tick();
    inner.calls[0]!.settle();
    await tick();
    inner.calls[1]!.settle();
    await tick();
    inner.calls[2]!.settle();
    await tick();
    inner.calls[3]!.settle();
    await Promise.all([p0, p1, p2, p3]);
    expect(inner.calls.map((c) => c.texts)).toEqual([['x'], ['a', 'b'], ['c', 'd'], ['e', 'f', 'g', 'h']]);
  });

  it('fails every caller of a failed call with its error, and serves the next calls normally', async () => {
    const inner = new ManualEmbedder();
    const b = new BatchingEmbedder(inner);
    const first = b.embed(['a']);
    const second = b.embed(['b']);
    const third = b.embed(['c']);
    await tick();
    const boom = new Error('worker died');
    inner.calls[0]!.settle(boom);
    await expect(first).rejects.toBe(boom);
    await tick();
    inner.calls[1]!.settle(boom);
    await expect(second).rejects.toBe(boom);
    await expect(third).rejects.toBe(boom);
    const later = b.embed(['d']);
    await tick();
    inner.calls[2]!.settle();
    expect(await later).toEqual([Float32Array.of(1, 100)]);
  });

  it('answers an empty call without calling the model, and reports each coalesced call', async () => {
    const inner = new ManualEmbedder();
    const seen: Array<{ calls: number; texts: number }> = [];
    const b = new BatchingEmbedder(inner, { onBatch: (s) => seen.push(s) });
    expect(await b.embed([])).toEqual([]);
    const p = [b.embed(['a']), b.embed(['b', 'c'])];
    await tick();
    inner.calls[0]!.settle();
    await tick();
    inner.calls[1]!.settle();
    await Promise.all(p);
    expect(seen).toEqual([
      { calls: 1, texts: 1 },
      { calls: 1, texts: 2 },
    ]);
  });
});

describe('BatchingEmbedder over the real embedder (tiny fixture model)', () => {
  let inner: TransformersEmbedder;
  beforeAll(async () => {
    inner = await TransformersEmbedder.load({ modelRef: TINY_BERT, modelsDir: tempDir(), offline: true, dtype: 'fp32', threads: 1, maxTokens: undefined });
  });
  afterAll(async () => {
    await inner.close();
  });

  it('gives each of 40 concurrent queries the vector it gets alone, in fewer model calls', async () => {
    const queries = Array.from({ length: 40 }, (_, i) => `question ${i} about the ${['pump', 'ferry', 'garden', 'cartridge'][i % 4]} ${'x'.repeat(i)}`);
    const alone = await Promise.all(queries.map(async (q) => (await inner.embed([q]))[0]!));
    const stats: Array<{ calls: number }> = [];
    const b = new BatchingEmbedder(inner, { onBatch: (s) => stats.push(s) });
    const together = await Promise.all(queries.map(async (q) => (await b.embed([q]))[0]!));
    for (let i = 0; i < queries.length; i++) {
      expect(together[i]!.length).toBe(alone[i]!.length);
      for (let k = 0; k < alone[i]!.length; k++) expect(together[i]![k]).toBeCloseTo(alone[i]![k]!, 5);
    }
    expect(stats.reduce((n, s) => n + s.calls, 0)).toBe(40);
    expect(stats.length).toBeLessThan(40);
  });
});
