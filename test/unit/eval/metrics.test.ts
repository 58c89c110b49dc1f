import { describe, expect, it } from 'vitest';
import { evaluateRuns, mrrAtK, ndcgAtK, recallAtK } from '../../../src/eval/metrics.ts';

const q = (entries: Array<[string, number]>) => new Map(entries);

describe('ndcgAtK', () => {
  it('is 1 for the ideal ranking and 0 without relevant hits', () => {
    const qrels = q([
      ['a', 2],
      ['b', 1],
    ]);
    expect(ndcgAtK(['a', 'b', 'x'], qrels)).toBeCloseTo(1, 12);
    expect(ndcgAtK(['x', 'y'], qrels)).toBe(0);
    expect(ndcgAtK([], qrels)).toBe(0);
    expect(ndcgAtK(['a'], q([['a', 0]]))).toBe(0);
  });

  it('matches a hand computation (linear gain, log2(i+1) discount)', () => {
    // ranking x, b, a with grades a=2, b=1:
    // DCG  = 0/log2(2) + 1/log2(3) + 2/log2(4) = 0.630930 + 1 = 1.630930
    // IDCG = 2/log2(2) + 1/log2(3)             = 2 + 0.630930 = 2.630930
    const v = ndcgAtK(['x', 'b', 'a'], q([['a', 2], ['b', 1]]));
    expect(v).toBeCloseTo(1.6309297535714575 / 2.6309297535714575, 12);
    expect(v).toBeCloseTo(0.619906, 6);
  });

  it('cuts at k and counts a repeated id once', () => {
    const qrels = q([['r', 1]]);
    const ranked = [...Array.from({ length: 10 }, (_, i) => `n${i}`), 'r'];
    expect(ndcgAtK(ranked, qrels, 10)).toBe(0);
    expect(ndcgAtK(ranked, qrels, 11)).toBeCloseTo(1 / Math.log2(12), 12);
    expect(ndcgAtK(['r', 'r'], q([['r', 1], ['s', 1]]))).toBeCloseTo(1 / (1 + 1 / Math.log2(3)), 12);
  });

  it('IDCG uses only the top k grades', () => {
    // 12 relevant documents, the top 10 retrieved: perfect at k=10.
    const qrels = q(Array.from({ length: 12 }, (_, i): [string, number] => [`d${i}`, 1]));
    expect(ndcgAtK(Array.from({ length: 10 }, (_, i) => `d${i}`), qrels, 10)).toBeCloseTo(1, 12);
  });
});

describe('recallAtK', () => {
  it('is the found fraction of relevant documents', () => {
    const qrels = q([['a', 1], ['b', 2], ['c', 1], ['z', 0]]);
    expect(recallAtK(['a', 'x', 'c', 'z'], qrels)).toBeCloseTo(2 / 3, 12);
    expect(recallAtK(['a', 'b', 'c'], qrels, 2)).toBeCloseTo(2 / 3, 12);
    // A repeated id is dropped, so it does not take a place in the top k.
    expect(recallAtK(['a', 'a', 'b'], qrels, 2)).toBeCloseTo(2 / 3, 12);
    expect(recallAtK(['a'], q([['a', 0]]))).toBe(0);
  });
});

describe('mrrAtK', () => {
  it('is 1/rank of the first relevant document within k', () => {
    const qrels = q([['b', 1], ['c', 1]]);
    expect(mrrAtK(['b', 'c'], qrels)).toBe(1);
    expect(mrrAtK(['x', 'y', 'c', 'b'], qrels)).toBeCloseTo(1 / 3, 12);
    expect(mrrAtK(['x', 'x', 'x', 'b'], qrels)).toBeCloseTo(1 / 2, 12);
    expect(mrrAtK(['x', 'y', 'c'], qrels, 2)).toBe(0);
    expect(mrrAtK(['z'], q([['z', 0]]))).toBe(0);
  });
});

describe('evaluateRuns', () => {
  it('averages over queries with a relevant document; missing runs score 0', () => {
    const qrels = new Map([
      ['q1', q([['a', 1]])],
      ['q2', q([['b', 1], ['c', 1]])],
      ['q3', q([['d', 0]])], // no relevant document: not evaluated
      ['q4', q([['e', 1]])], // no run: scores 0
    ]);
    const runs = new Map<string, string[]>([
      ['q1', ['a']],
      ['q2', ['x', 'b']],
      ['q3', ['d']],
    ]);
    const s = evaluateRuns(runs, qrels);
    expect(s.queries).toBe(3);
    const ndcgQ2 = 1 / Math.log2(3) / (1 + 1 / Math.log2(3));
    expect(s['ndcg@10']).toBeCloseTo((1 + ndcgQ2 + 0) / 3, 12);
    expect(s['recall@100']).toBeCloseTo((1 + 0.5 + 0) / 3, 12);
    expect(s['mrr@10']).toBeCloseTo((1 + 0.5 + 0) / 3, 12);
  });

  it('returns zeros for no evaluable query', () => {
    expect(evaluateRuns(new Map(), new Map())).toEqual({ 'ndcg@10': 0, 'recall@100': 0, 'mrr@10': 0, queries: 0 });
  });
});
