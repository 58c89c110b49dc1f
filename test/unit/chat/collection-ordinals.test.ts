import { describe, expect, it } from 'vitest';
import { CollectionOrdinals, ORDINALS_INITIAL_LENGTH, exactTopK } from '../../../src/chat/collection-ordinals.ts';

describe('CollectionOrdinals', () => {
  it('maps chunk ids to collections, grows with ids and keeps counts through adds and removes', () => {
    const o = new CollectionOrdinals();
    o.add(1, 'a');
    o.add(2, 'b');
    o.add(ORDINALS_INITIAL_LENGTH * 5 + 3, 'a');
    o.add(1, 'a'); // idempotent
    expect(o.collectionOf(1)).toBe('a');
    expect(o.collectionOf(ORDINALS_INITIAL_LENGTH * 5 + 3)).toBe('a');
    expect(o.collectionOf(7)).toBeNull();
    expect(o.collectionOf(10 ** 9)).toBeNull();
    expect(o.bytes).toBe(2 * ORDINALS_INITIAL_LENGTH * 8);
    expect(o.scope(null, []).admitted).toBe(3);
    expect(o.scope(null, ['a']).admitted).toBe(1);
    o.remove(1, 'b'); // not its collection: no-op
    expect(o.collectionOf(1)).toBe('a');
    o.remove(1, 'a');
    expect(o.collectionOf(1)).toBeNull();
    expect(o.scope('a', []).admitted).toBe(1);
    o.reset();
    expect(o.loaded).toBe(false);
    expect(o.scope(null, []).admitted).toBe(0);
  });

  it('filter and labels admit exactly the scope, never an unknown id', () => {
    const o = new CollectionOrdinals();
    for (let id = 0; id < 30; id++) o.add(id, `c${id % 3}`);
    const hidden = o.scope(null, ['c1', 'no-such']);
    const f = o.filter(hidden);
    for (let id = 0; id < 30; id++) expect(f(id)).toBe(id % 3 !== 1);
    expect(f(30)).toBe(false); // unknown id inside the array
    expect(f(10 ** 7)).toBe(false); // beyond it
    expect(o.labels(hidden)).toEqual(Array.from({ length: 30 }, (_, i) => i).filter((i) => i % 3 !== 1));
    const only = o.scope('c2', ['c1']);
    expect(only.admitted).toBe(10);
    expect(o.labels(only).every((id) => id % 3 === 2)).toBe(true);
    expect(o.scope('c2', ['c2']).admitted).toBe(0);
    expect(o.scope('nope', []).admitted).toBe(0);
  });

  it('widens to 32 bits past 65 535 collection names without losing entries', () => {
    const o = new CollectionOrdinals();
    for (let i = 0; i < 0x10000 + 2; i++) o.add(i, `n${i}`);
    expect(o.bytes).toBe(4 * 0x20000);
    expect(o.collectionOf(0)).toBe('n0');
    expect(o.collectionOf(0x10001)).toBe('n65537');
    expect(o.filter(o.scope('n65537', []))(0x10001)).toBe(true);
    expect(o.filter(o.scope('n65537', []))(0)).toBe(false);
  });
});

describe('exactTopK', () => {
  it('ranks by cosine (unnormalized vectors too), best first, ties by label, at most k', () => {
    const vs = new Map<number, Float32Array>([
      [5, new Float32Array([2, 0])],
      [3, new Float32Array([1, 1])],
      [4, new Float32Array([0, 3])],
      [9, new Float32Array([1, 0])],
      [1, new Float32Array([1, 2, 3])], // other dimension: skipped
    ]);
    const top = exactTopK(new Float32Array([1, 0]), vs, 3);
    expect(top.map((h) => h.label)).toEqual([5, 9, 3]);
    expect(top[0]!.score).toBeCloseTo(1, 6);
    expect(top[2]!.score).toBeCloseTo(Math.SQRT1_2, 6);
    expect(exactTopK(new Float32Array([1, 0]), new Map(), 3)).toEqual([]);
  });
});
