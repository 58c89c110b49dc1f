/**
 * Releases (issue 15), pure parts: sticky assignment, per-arm metrics and the significance test on a
 * constructed log with hand-computed values, the regression set and gate, parts settings and diff.
 */
import { describe, expect, it } from 'vitest';
import type { ArmSampleRecord, RegressionSampleRecord } from '../../../src/core/store/releases.ts';
import { assignArm } from '../../../src/chat/release-router.ts';
import { armMetrics, compareArms, computeReport, dailyMonitoring, normalCdf, twoProportionZTest, wilson } from '../../../src/chat/release-metrics.ts';
import { buildRegressionSet, gateDecision, scoreRankings } from '../../../src/chat/regression.ts';
import { applySettings, diffParts, partsSha256 } from '../../../src/chat/release-parts.ts';
import { partsFixture } from '../../store/contract/releases.ts';

describe('sticky assignment', () => {
  it('1,000 users at 10 % put 8–12 % in the candidate, each user in the same arm across 20 requests', () => {
    let inCandidate = 0;
    for (let user = 1; user <= 1000; user++) {
      const arms = new Set(Array.from({ length: 20 }, () => assignArm(user, 'exp_a', 10)));
      expect(arms.size).toBe(1);
      if (arms.has('candidate')) inCandidate++;
    }
    expect(inCandidate).toBeGreaterThanOrEqual(80);
    expect(inCandidate).toBeLessThanOrEqual(120);
  });

  it('another experiment reshuffles users; 0 % and 100 % are exact; a larger share keeps everyone already in', () => {
    const a = Array.from({ length: 1000 }, (_, i) => assignArm(i, 'exp_a', 50));
    const b = Array.from({ length: 1000 }, (_, i) => assignArm(i, 'exp_b', 50));
    expect(a.filter((x, i) => x !== b[i]).length).toBeGreaterThan(300);
    for (let u = 0; u < 200; u++) {
      expect(assignArm(u, 'e', 0)).toBe('live');
      expect(assignArm(u, 'e', 100)).toBe('candidate');
      if (assignArm(u, 'e', 10) === 'candidate') expect(assignArm(u, 'e', 30)).toBe('candidate');
    }
  });
});

function sample(release: string, o: Partial<ArmSampleRecord> = {}): ArmSampleRecord {
  return {
    release, arm: 'live', createdAt: '2025-05-01T10:00:00.000Z', status: 'ok', totalMs: 100, firstTokenMs: 10, completionTokens: 20, citations: 2,
    retrieved: 6, topScore: 0.03, bm25Hits: 3, rating: null, corrected: false, ...o,
  };
}

describe('per-arm metrics and the significance test (hand-computed)', () => {
  it('Wilson interval and the normal CDF match textbook values', () => {
    // 8 of 10: center (0.8 + 1.92/10)/(1 + 3.8415/10) = 0.71693, half 0.22067 → [0.4902, 0.9433]
    const [lo, hi] = wilson(8, 10);
    expect(lo).toBeCloseTo(0.4902, 4);
    expect(hi).toBeCloseTo(0.9433, 4);
    expect(wilson(0, 0)).toEqual([0, 0]);
    expect(normalCdf(1.959964)).toBeCloseTo(0.975, 6);
    expect(normalCdf(0)).toBeCloseTo(0.5, 7);
  });

  it('two-proportion z-test: 60/100 vs 45/100 → z = −2.1234, p = 0.0337', () => {
    // pooled p = 105/200 = 0.525; se = sqrt(0.525·0.475·0.02) = 0.070623; z = (0.45 − 0.60)/se = −2.12394
    const t = twoProportionZTest(60, 100, 45, 100)!;
    expect(t.z).toBeCloseTo(-2.1239, 3);
    expect(t.p_value).toBeCloseTo(0.03368, 4);
    expect(twoProportionZTest(0, 10, 0, 10)).toBeNull();
  });

  it('an arm: counts, rates, percentiles, tokens and citations per answer', () => {
    const rows = [
      sample('v1', { rating: 1, totalMs: 100 }),
      sample('v1', { rating: 1, totalMs: 200, citations: 0 }),
      sample('v1', { rating: -1, totalMs: 300, corrected: true, completionTokens: 50 }),
      sample('v1', { totalMs: 400, firstTokenMs: 30 }),
      sample('v1', { status: 'error', totalMs: 5, completionTokens: null }),
    ];
    const m = armMetrics('v1', 'live', rows);
    expect(m).toMatchObject({
      requests: 5, answers: 4, thumbs_up: 2, thumbs_down: 1, rated: 3, up_rate: 0.6667, down_rate: 0.3333, corrections: 1, correction_rate: 0.25,
      abstentions: 1, abstention_rate: 0.25, errors: 1, error_rate: 0.2, p50_ms: 200, p99_ms: 400, first_token_p50_ms: 10,
      tokens_per_answer: 27.5, citations_per_answer: 1.5, enough_data: false,
    });
    // Wilson 2/3: [0.2077, 0.9385]
    expect(m.up_rate_ci![0]).toBeCloseTo(0.2077, 3);
    expect(m.up_rate_ci![1]).toBeCloseTo(0.9385, 3);
  });

  it('the report compares arms, and says plainly when there is not enough data', () => {
    const rows: ArmSampleRecord[] = [];
    for (let i = 0; i < 100; i++) rows.push(sample('v1', { rating: i < 60 ? 1 : -1 }));
    for (let i = 0; i < 100; i++) rows.push(sample('v2', { arm: 'candidate', rating: i < 45 ? 1 : -1 }));
    const rep = computeReport(rows, 'v1', 'v2', '2025-05-01T00:00:00.000Z');
    expect(rep.arms.map((a) => [a.release, a.arm, a.answers, a.up_rate])).toEqual([['v1', 'live', 100, 0.6], ['v2', 'candidate', 100, 0.45]]);
    expect(rep.test).toMatchObject({ decision: 'candidate_worse', difference: -0.15 });
    expect(rep.test.method).toMatch(/two-proportion z-test/);
    expect(rep.test.p_value).toBeCloseTo(0.0337, 3);

    const few = computeReport(rows.slice(0, 10).concat(rows.slice(100, 110)), 'v1', 'v2', 'x');
    expect(few.test.decision).toBe('not_enough_data');
    expect(few.test.message).toMatch(/not enough data yet/);
    expect(compareArms(rep.arms[0]!, null).decision).toBe('no_experiment');
  });

  it('data monitoring: per day and release, top-score quantiles and the out-of-vocabulary share, a shift flagged', () => {
    const rows: ArmSampleRecord[] = [];
    for (let d = 1; d <= 7; d++) for (let i = 0; i < 20; i++) rows.push(sample('v1', { createdAt: `2025-05-0${d}T10:00:00.000Z`, topScore: 0.03, bm25Hits: 2 }));
    for (let i = 0; i < 20; i++) rows.push(sample('v1', { createdAt: '2025-05-08T10:00:00.000Z', topScore: i < 10 ? null : 0.01, bm25Hits: i < 10 ? 0 : 1, retrieved: i < 10 ? 0 : 3 }));
    const days = dailyMonitoring(rows);
    expect(days).toHaveLength(8);
    expect(days[0]).toMatchObject({ day: '2025-05-01', release: 'v1', questions: 20, oov_share: 0, shift: null });
    expect(days[6]!.shift).toMatchObject({ flagged: false, top_score_p50: 0, oov_share: 0 });
    const last = days[7]!;
    expect(last).toMatchObject({ day: '2025-05-08', oov_share: 0.5, top_score: { p50: 0.01 } });
    expect(last.shift).toMatchObject({ flagged: true, top_score_p50: -0.02, oov_share: 0.5 });
    expect(last.shift!.reasons).toHaveLength(2);
  });
});

describe('regression set and gate', () => {
  const reg = (o: Partial<RegressionSampleRecord>): RegressionSampleRecord => ({
    responseId: 'r', query: 'q', collection: null, release: 'v1', rating: 1, correction: null, citedChunks: [], contextChunks: [], createdAt: 'x', ...o,
  });

  it('thumbs-up → cited chunks; thumbs-down + correction → the chunks its [n] markers name; one case per question (newest)', () => {
    const set = buildRegressionSet([
      reg({ responseId: 'a', query: 'Where is the serial?', citedChunks: [4, 5] }),
      reg({ responseId: 'b', query: 'where is the serial? ', citedChunks: [9] }),
      reg({ responseId: 'c', query: 'Ferry times', rating: -1, correction: 'Wrong: see [2] and [9]', contextChunks: [11, 12, 13], citedChunks: [11] }),
      reg({ responseId: 'd', query: 'no markers', rating: -1, correction: 'wrong', contextChunks: [1] }),
      reg({ responseId: 'e', query: 'down without correction', rating: -1, contextChunks: [1] }),
    ]);
    expect(set).toEqual([
      { responseId: 'a', query: 'Where is the serial?', collection: null, relevant: [4, 5], source: 'thumbs_up' },
      { responseId: 'c', query: 'Ferry times', collection: null, relevant: [12], source: 'correction' },
    ]);
  });

  it('hit@5 and MRR@10, and the gate refuses a candidate worse by more than the margin', () => {
    const cases = [
      { responseId: 'a', query: 'a', collection: null, relevant: [1], source: 'thumbs_up' as const },
      { responseId: 'b', query: 'b', collection: null, relevant: [2], source: 'thumbs_up' as const },
    ];
    const live = scoreRankings(cases, [[1, 9], [8, 2]]);
    expect(live).toEqual({ 'hit@5': 1, 'mrr@10': 0.75, queries: 2 });
    const cand = scoreRankings(cases, [[7, 7, 7, 7, 7, 1], [8, 2]]);
    expect(cand).toEqual({ 'hit@5': 0.5, 'mrr@10': (1 / 6 + 1 / 2) / 2, queries: 2 });
    const g = gateDecision({ release: 'v1', ...live }, { release: 'v2', ...cand }, 0.05);
    expect(g.passed).toBe(false);
    expect(g.reason).toMatch(/hit@5 0\.500 < 1\.000/);
    expect(gateDecision({ release: 'v1', ...live }, { release: 'v2', ...live }, 0.05).passed).toBe(true);
    expect(gateDecision({ release: 'v1', 'hit@5': 0, 'mrr@10': 0, queries: 0 }, { release: 'v2', 'hit@5': 0, 'mrr@10': 0, queries: 0 }, 0.05).passed).toBe(true);
  });
});

describe('parts', () => {
  it('--set changes typed fields, refuses unknown keys and out-of-range values; diff and hash', () => {
    const base = partsFixture();
    const p = applySettings(base, ['retrieval.top_k=8', 'llm.temperature=0', 'retrieval.mode=bm25', 'llm.model=m1']);
    expect(p.retrieval).toMatchObject({ top_k: 8, mode: 'bm25' });
    expect(p.llm).toMatchObject({ temperature: 0, model: 'm1' });
    expect(base.retrieval.top_k).toBe(6);
    expect(() => applySettings(base, ['retrieval.top_k=99'])).toThrow(/retrieval.top_k/);
    expect(() => applySettings(base, ['nope=1'])).toThrow(/unknown key/);
    expect(() => applySettings(base, ['retrieval.mode=magic'])).toThrow(/retrieval.mode/);
    expect(() => applySettings(base, ['oops'])).toThrow(/key=value/);
    expect(diffParts(base, p).map((d) => d.key)).toEqual(['llm.model', 'llm.temperature', 'retrieval.mode', 'retrieval.top_k']);
    expect(partsSha256(base)).toBe(partsSha256(structuredClone(base)));
    expect(partsSha256(base)).not.toBe(partsSha256(p));
  });
});
