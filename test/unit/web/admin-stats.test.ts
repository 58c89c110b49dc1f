import { describe, expect, it } from 'vitest';
import { autoBucketMinutes, bucketIndex, computeTimeseries, quantile, timeWindow } from '../../../src/chat/http/routes/admin.ts';
import type { FeedbackSample, ResponseSample } from '../../../src/chat/http/routes/admin.ts';

const T0 = Date.parse('2025-03-01T10:00:00.000Z');
const at = (minutes: number, seconds = 0) => new Date(T0 + minutes * 60_000 + seconds * 1000).toISOString();

function sample(createdAt: string, over: Partial<ResponseSample> = {}): ResponseSample {
  return { created_at: createdAt, status: 'ok', features_ms: 1, retrieve_ms: 10, generate_ms: 100, first_token_ms: 20, total_ms: 111, top_score: 0.03, retrieved: 6, ...over };
}

describe('quantile (nearest rank)', () => {
  it('returns observed values', () => {
    const v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(quantile(v, 0)).toBe(1);
    expect(quantile(v, 0.5)).toBe(5);
    expect(quantile(v, 0.9)).toBe(9);
    expect(quantile(v, 0.99)).toBe(10);
    expect(quantile(v, 1)).toBe(10);
    expect(quantile([42], 0.5)).toBe(42);
    expect(quantile([1, 100, 1000], 0.99)).toBe(1000);
  });
  it('is null for no data and rejects q outside [0, 1]', () => {
    expect(quantile([], 0.5)).toBeNull();
    expect(() => quantile([1], 1.5)).toThrow(RangeError);
    expect(() => quantile([1], Number.NaN)).toThrow(RangeError);
  });
});

describe('time window', () => {
  it('picks the smallest bucket giving at most 180 buckets', () => {
    expect([15, 60, 180, 181, 360, 1440, 10080].map(autoBucketMinutes)).toEqual([1, 1, 1, 5, 5, 15, 60]);
  });

  it('aligns buckets to the clock, the last one holding now', () => {
    const now = T0 + 7 * 60_000 + 30_000; // 10:07:30
    const w = timeWindow(now, 15, 5);
    expect(new Date(w.fromMs).toISOString()).toBe('2025-03-01T09:55:00.000Z');
    expect(new Date(w.toMs).toISOString()).toBe('2025-03-01T10:10:00.000Z');
    expect(w.buckets).toBe(3);
    expect(bucketIndex(w, Date.parse(at(7, 29)))).toBe(2);
    expect(bucketIndex(w, Date.parse(at(-5)))).toBe(0);
    expect(bucketIndex(w, Date.parse(at(-5, -1)))).toBe(-1);
    expect(bucketIndex(w, w.toMs)).toBe(-1);
    expect(bucketIndex(w, Number.NaN)).toBe(-1);
  });
});

describe('computeTimeseries', () => {
  const w = timeWindow(T0 + 2 * 60_000 + 1000, 3, 1); // buckets 10:00, 10:01, 10:02

  it('counts requests, errors and cancellations, and computes per-stage p50/p99 over ok answers only', () => {
    const rows: ResponseSample[] = [
      sample(at(0, 5), { total_ms: 100, generate_ms: 80 }),
      sample(at(0, 10), { total_ms: 300, generate_ms: 250 }),
      sample(at(0, 20), { status: 'error', total_ms: 9000, generate_ms: 9000 }),
      sample(at(1, 0), { status: 'cancelled', total_ms: 50 }),
      sample(at(2, 0), { total_ms: 200 }),
      sample(at(-10), { total_ms: 1 }), // outside the window
    ];
    const { buckets, summary } = computeTimeseries(w, rows, []);
    expect(buckets.map((b) => b.t)).toEqual([at(0), at(1), at(2)]);
    expect(buckets.map((b) => [b.requests, b.errors, b.cancelled])).toEqual([
      [3, 1, 0],
      [1, 0, 1],
      [1, 0, 0],
    ]);
    expect(buckets[0]?.error_rate).toBeCloseTo(1 / 3, 4);
    expect(buckets[0]?.latency_ms.total).toEqual({ p50: 100, p99: 300 });
    expect(buckets[0]?.latency_ms.generation).toEqual({ p50: 80, p99: 250 });
    expect(buckets[1]?.latency_ms.total).toEqual({ p50: null, p99: null });
    expect(summary.requests).toBe(5);
    expect(summary.errors).toBe(1);
    expect(summary.latency_ms.total).toEqual({ p50: 200, p99: 300 });
    expect(summary.requests_per_minute).toBeCloseTo(5 / 3, 3);
  });

  it('computes the thumbs-down share per bucket from feedback events', () => {
    const fb: FeedbackSample[] = [
      { created_at: at(0, 1), rating: 1 },
      { created_at: at(0, 2), rating: -1 },
      { created_at: at(0, 3), rating: -1 },
      { created_at: at(0, 4), rating: -1 },
      { created_at: at(2, 1), rating: 1 },
    ];
    const { buckets, summary } = computeTimeseries(w, [], fb);
    expect(buckets.map((b) => [b.feedback, b.thumbs_down, b.thumbs_down_share])).toEqual([
      [4, 3, 0.75],
      [0, 0, null],
      [1, 0, 0],
    ]);
    expect(summary.thumbs_down_share).toBe(0.6);
    expect(buckets[1]?.error_rate).toBeNull();
  });

  it('summarizes the top retrieval score and counts questions that retrieved nothing', () => {
    const rows = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1].map((s, i) => sample(at(1, i), { top_score: s }));
    rows.push(sample(at(1, 30), { top_score: null, retrieved: 0 }));
    const { buckets } = computeTimeseries(w, rows, []);
    expect(buckets[1]?.top_score).toEqual({ p10: 0.01, p50: 0.05, p90: 0.09 });
    expect(buckets[1]?.no_hits).toBe(1);
    expect(buckets[0]?.top_score).toEqual({ p10: null, p50: null, p90: null });
  });
});
