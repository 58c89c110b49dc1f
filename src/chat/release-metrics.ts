/**
 * Per-arm metrics of a release experiment (issue 15, item 4) and the data monitoring of item 6.
 * Pure functions over prediction-log samples (ArmSampleRecord), so every figure can be checked by
 * hand on a constructed log.
 *
 * Definitions (per arm = per release):
 * - requests: log rows; answers: rows with status 'ok'; errors: status 'error' (error_rate over requests);
 * - thumbs_up / thumbs_down: answers whose current rating is +1 / -1; rated = their sum;
 *   up_rate = thumbs_up / rated, down_rate = thumbs_down / rated, each with a 95 % Wilson interval;
 * - correction_rate: answers with a correction / answers;
 * - abstention_rate: answers that cite no passage / answers (the answer did not use the documents);
 * - p50_ms / p99_ms: total time of answers (nearest rank); first_token_p50_ms likewise;
 * - tokens_per_answer, citations_per_answer: means over answers.
 * The test: a two-proportion z-test (pooled variance, two-sided) of up_rate, candidate vs live, at
 * alpha 0.05; below MIN_RATED_PER_ARM rated answers in either arm the decision is "not enough data".
 */
import type { ArmSampleRecord } from '../core/store/releases.ts';

/** 97.5th percentile of the standard normal: 95 % two-sided intervals. */
export const Z_95 = 1.959963984540054;
/** Significance level of the arm comparison. */
export const ALPHA = 0.05;
/** Rated answers each arm needs before the comparison says anything. */
export const MIN_RATED_PER_ARM = 30;
/** Most log rows a report reads (the newest). */
export const REPORT_MAX_ROWS = 200_000;
export const TEST_METHOD = 'two-proportion z-test (pooled, two-sided) of the thumbs-up rate among rated answers';

/** Wilson score interval of k successes in n trials; [0, 0] for n = 0. Pure. */
export function wilson(k: number, n: number, z = Z_95): [number, number] {
  if (n === 0) return [0, 0];
  const p = k / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

/** Standard normal CDF (erf by Abramowitz & Stegun 7.1.26, |error| < 1.5e-7). Pure. */
export function normalCdf(x: number): number {
  const t = 1 / (1 + (0.3275911 * Math.abs(x)) / Math.SQRT2);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-(x * x) / 2);
  return x >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

/** Two-sided two-proportion z-test with pooled variance; null when either n is 0 or the pooled rate is 0 or 1. Pure. */
export function twoProportionZTest(x1: number, n1: number, x2: number, n2: number): { z: number; p_value: number } | null {
  if (n1 === 0 || n2 === 0) return null;
  const p = (x1 + x2) / (n1 + n2);
  if (p === 0 || p === 1) return null;
  const se = Math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2));
  const z = (x2 / n2 - x1 / n1) / se;
  return { z, p_value: 2 * (1 - normalCdf(Math.abs(z))) };
}

/** Nearest-rank quantile of ascending values; null when empty. Pure. */
function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1] ?? null;
}

const round = (v: number | null, d = 4): number | null => (v === null ? null : Math.round(v * 10 ** d) / 10 ** d);
const ratio = (a: number, b: number): number | null => (b === 0 ? null : round(a / b));
const mean = (xs: readonly number[]): number | null => (xs.length === 0 ? null : round(xs.reduce((s, x) => s + x, 0) / xs.length, 2));
const asc = (xs: Array<number | null>): number[] => xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);

export interface ArmMetrics {
  release: string;
  arm: 'live' | 'candidate';
  requests: number;
  answers: number;
  thumbs_up: number;
  thumbs_down: number;
  rated: number;
  up_rate: number | null;
  up_rate_ci: [number, number] | null;
  down_rate: number | null;
  down_rate_ci: [number, number] | null;
  corrections: number;
  correction_rate: number | null;
  abstentions: number;
  abstention_rate: number | null;
  errors: number;
  error_rate: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  first_token_p50_ms: number | null;
  tokens_per_answer: number | null;
  citations_per_answer: number | null;
  /** True once the arm has MIN_RATED_PER_ARM rated answers. */
  enough_data: boolean;
}

/** Metrics of one arm's rows. Pure. */
export function armMetrics(release: string, arm: 'live' | 'candidate', rows: readonly ArmSampleRecord[]): ArmMetrics {
  const ok = rows.filter((r) => r.status === 'ok');
  const up = ok.filter((r) => r.rating === 1).length;
  const down = ok.filter((r) => r.rating === -1).length;
  const rated = up + down;
  const corrections = ok.filter((r) => r.corrected).length;
  const abstentions = ok.filter((r) => r.citations === 0).length;
  const errors = rows.filter((r) => r.status === 'error').length;
  const total = asc(ok.map((r) => r.totalMs));
  const ci = (k: number): [number, number] | null => (rated === 0 ? null : (wilson(k, rated).map((v) => round(v)!) as [number, number]));
  return {
    release,
    arm,
    requests: rows.length,
    answers: ok.length,
    thumbs_up: up,
    thumbs_down: down,
    rated,
    up_rate: ratio(up, rated),
    up_rate_ci: ci(up),
    down_rate: ratio(down, rated),
    down_rate_ci: ci(down),
    corrections,
    correction_rate: ratio(corrections, ok.length),
    abstentions,
    abstention_rate: ratio(abstentions, ok.length),
    errors,
    error_rate: ratio(errors, rows.length),
    p50_ms: round(quantile(total, 0.5), 2),
    p99_ms: round(quantile(total, 0.99), 2),
    first_token_p50_ms: round(quantile(asc(ok.map((r) => r.firstTokenMs)), 0.5), 2),
    tokens_per_answer: mean(asc(ok.map((r) => r.completionTokens))),
    citations_per_answer: mean(ok.map((r) => r.citations)),
    enough_data: rated >= MIN_RATED_PER_ARM,
  };
}

export type Decision = 'not_enough_data' | 'candidate_better' | 'candidate_worse' | 'no_significant_difference' | 'no_experiment';

export interface ArmTest {
  method: string;
  alpha: number;
  /** up_rate(candidate) − up_rate(live); null when either is unknown. */
  difference: number | null;
  z: number | null;
  p_value: number | null;
  decision: Decision;
  /** The decision in words, for the page and the CLI. */
  message: string;
}

/** Compares the candidate arm with the live arm. Pure. */
export function compareArms(live: ArmMetrics, candidate: ArmMetrics | null): ArmTest {
  const base = { method: TEST_METHOD, alpha: ALPHA };
  if (!candidate) return { ...base, difference: null, z: null, p_value: null, decision: 'no_experiment', message: 'no candidate release: nothing to compare' };
  const difference = live.up_rate === null || candidate.up_rate === null ? null : round(candidate.up_rate - live.up_rate);
  const t = twoProportionZTest(live.thumbs_up, live.rated, candidate.thumbs_up, candidate.rated);
  const stats = { difference, z: t ? round(t.z) : null, p_value: t ? round(t.p_value, 6) : null };
  if (!live.enough_data || !candidate.enough_data) {
    return { ...base, ...stats, decision: 'not_enough_data', message: `not enough data yet: each arm needs ${MIN_RATED_PER_ARM} rated answers (live ${live.rated}, candidate ${candidate.rated})` };
  }
  if (!t || t.p_value >= ALPHA) {
    return { ...base, ...stats, decision: 'no_significant_difference', message: `no significant difference in thumbs-up rate (p = ${stats.p_value ?? 'n/a'} ≥ ${ALPHA})` };
  }
  const better = t.z > 0;
  return { ...base, ...stats, decision: better ? 'candidate_better' : 'candidate_worse', message: `candidate thumbs-up rate is significantly ${better ? 'higher' : 'lower'} (p = ${stats.p_value})` };
}

export interface ReleaseReport {
  from: string;
  arms: ArmMetrics[];
  test: ArmTest;
}

/** The report over `rows` (rows of other releases are ignored). Pure. */
export function computeReport(rows: readonly ArmSampleRecord[], live: string, candidate: string | null, from: string): ReleaseReport {
  const liveArm = armMetrics(live, 'live', rows.filter((r) => r.release === live));
  const candArm = candidate === null ? null : armMetrics(candidate, 'candidate', rows.filter((r) => r.release === candidate));
  return { from, arms: candArm ? [liveArm, candArm] : [liveArm], test: compareArms(liveArm, candArm) };
}

// ------------------------------------------------------------------------------------------ data monitoring (item 6)

/** Days before the day of interest that form its baseline. */
export const BASELINE_DAYS = 7;
/** A shift is flagged when the day's median top score moves by more than this (absolute, RRF units)… */
export const TOP_SCORE_SHIFT = 0.005;
/** …or its share of questions with no term in the corpus vocabulary moves by more than this (absolute). */
export const OOV_SHARE_SHIFT = 0.1;
/** Days with fewer questions than this are shown but never flagged. */
export const MIN_QUESTIONS_PER_DAY = 20;

export interface DayStats {
  day: string;
  release: string;
  questions: number;
  top_score: { p10: number | null; p50: number | null; p90: number | null };
  /** Questions none of whose terms is in the corpus vocabulary (BM25 found nothing) / questions. */
  oov_share: number | null;
  /** Set when the day differs from the previous BASELINE_DAYS days of the same release beyond a threshold. */
  shift: { top_score_p50: number | null; oov_share: number | null; flagged: boolean; reasons: string[] } | null;
}

/** Per day (UTC) and release: top-score distribution, out-of-vocabulary share, shift vs the previous 7 days. Pure. */
export function dailyMonitoring(rows: readonly ArmSampleRecord[]): DayStats[] {
  const groups = new Map<string, ArmSampleRecord[]>();
  for (const r of rows) {
    if (r.status === 'cancelled') continue;
    const key = `${r.createdAt.slice(0, 10)}\u0000${r.release}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  const days = [...groups.entries()].map(([key, g]) => {
    const [day, release] = key.split('\u0000') as [string, string];
    const scores = asc(g.map((r) => r.topScore));
    return {
      day,
      release,
      rows: g,
      questions: g.length,
      top_score: { p10: round(quantile(scores, 0.1), 6), p50: round(quantile(scores, 0.5), 6), p90: round(quantile(scores, 0.9), 6) },
      oov_share: ratio(g.filter((r) => r.bm25Hits === 0).length, g.length),
    };
  });
  days.sort((a, b) => a.day.localeCompare(b.day) || a.release.localeCompare(b.release));
  return days.map((d) => ({ day: d.day, release: d.release, questions: d.questions, top_score: d.top_score, oov_share: d.oov_share, shift: shiftOf(d, days) }));
}

function shiftOf(d: { day: string; release: string; rows: ArmSampleRecord[]; questions: number; top_score: DayStats['top_score']; oov_share: number | null }, days: ReadonlyArray<typeof d>): DayStats['shift'] {
  const start = new Date(Date.parse(`${d.day}T00:00:00Z`) - BASELINE_DAYS * 86_400_000).toISOString().slice(0, 10);
  const base = days.filter((x) => x.release === d.release && x.day >= start && x.day < d.day).flatMap((x) => x.rows);
  if (base.length === 0) return null;
  const baseP50 = quantile(asc(base.map((r) => r.topScore)), 0.5);
  const baseOov = base.filter((r) => r.bm25Hits === 0).length / base.length;
  const dScore = d.top_score.p50 !== null && baseP50 !== null ? round(d.top_score.p50 - baseP50, 6) : null;
  const dOov = d.oov_share !== null ? round(d.oov_share - baseOov) : null;
  const reasons: string[] = [];
  if (d.questions >= MIN_QUESTIONS_PER_DAY && base.length >= MIN_QUESTIONS_PER_DAY) {
    if (dScore !== null && Math.abs(dScore) > TOP_SCORE_SHIFT) reasons.push(`median top score moved ${dScore > 0 ? '+' : ''}${dScore} vs the previous ${BASELINE_DAYS} days`);
    if (dOov !== null && Math.abs(dOov) > OOV_SHARE_SHIFT) reasons.push(`share of questions the corpus vocabulary cannot answer moved ${dOov > 0 ? '+' : ''}${dOov}`);
  }
  return { top_score_p50: dScore, oov_share: dOov, flagged: reasons.length > 0, reasons };
}
