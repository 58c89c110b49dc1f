import { describe, expect, it } from 'vitest';
import { axisMax, linePath, niceTicks } from '../../../src/web/charts.ts';
import type { Series } from '../../../src/web/charts.ts';

describe('niceTicks', () => {
  it('covers the maximum with 1/2/2.5/5 × 10^k steps', () => {
    expect(niceTicks(10)).toEqual([0, 2.5, 5, 7.5, 10]);
    expect(niceTicks(7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(0.033)).toEqual([0, 0.01, 0.02, 0.03, 0.04]);
    expect(niceTicks(950)).toEqual([0, 250, 500, 750, 1000]);
    for (const max of [0.001, 0.7, 3, 13, 99.5, 12345]) {
      const t = niceTicks(max);
      expect(t[0]).toBe(0);
      expect(t[t.length - 1]).toBeGreaterThanOrEqual(max);
      expect(t.length).toBeLessThanOrEqual(6);
    }
  });

  it('keeps whole steps for counts', () => {
    expect(niceTicks(2, 4, true)).toEqual([0, 1, 2]);
    expect(niceTicks(10, 4, true)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(1, 4, true)).toEqual([0, 1]);
  });

  it('falls back to [0, 1] for empty data', () => {
    expect(niceTicks(0)).toEqual([0, 1]);
    expect(niceTicks(Number.NaN)).toEqual([0, 1]);
    expect(niceTicks(-3)).toEqual([0, 1]);
  });
});

describe('linePath', () => {
  const x = (i: number) => i * 10;
  const y = (v: number) => 100 - v;

  it('draws one path through consecutive points and breaks at gaps', () => {
    expect(linePath([1, 2, null, 4, 5], x, y)).toBe('M0.0,99.0L10.0,98.0M30.0,96.0L40.0,95.0');
  });

  it('marks an isolated point with a short tick', () => {
    expect(linePath([null, 5, null], x, y)).toBe('M8.0,95.0L12.0,95.0');
  });

  it('is empty without data', () => {
    expect(linePath([null, null], x, y)).toBe('');
  });
});

describe('axisMax', () => {
  it('sums stacked bars per bucket, takes line maxima, ignores right-axis series', () => {
    const series: Series[] = [
      { name: 'ok', values: [3, 1], color: '#000', kind: 'bar', stack: 'r' },
      { name: 'err', values: [2, null], color: '#000', kind: 'bar', stack: 'r' },
      { name: 'p99', values: [4, null], color: '#000', kind: 'line' },
      { name: 'share', values: [1, 1], color: '#000', kind: 'line', axis: 'right' },
    ];
    expect(axisMax(series)).toBe(5);
    expect(axisMax(series, { name: 'band', lo: [0], hi: [9], color: '#000' })).toBe(9);
  });
});
