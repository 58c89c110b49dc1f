/**
 * The promotion gate from real feedback (issue 15, item 5): a regression set built from the
 * prediction log, and a release's retrieval scored on it without calling the LLM.
 *
 * The set (pure, `buildRegressionSet`), one case per distinct question (the newest rated answer):
 * - a thumbs-up answer: its question, with the chunks it cited as relevant;
 * - a thumbs-down answer that later got a correction: its question, with the chunks the correction
 *   cites as relevant — `[n]` markers in the correction name passage n of the answer's prompt (the
 *   numbering the answer's own citations use). A correction without markers names no chunk and is
 *   left out (there is nothing to score it against).
 * Scores: hit@5 (share of cases with a relevant chunk in the first 5) and MRR@10 (1/rank of the
 * first relevant chunk within 10), through the product retriever with the release's settings
 * (mode, RRF k and weights), unpersonalized.
 */
import type { Store } from '../core/store/index.ts';
import type { ReleaseParts, ReleaseRecord, RegressionSampleRecord } from '../core/store/releases.ts';
import type { Retriever } from './types.ts';

/** Chunks retrieved per case (MRR@10 is the deepest cut). */
export const REGRESSION_DEPTH = 10;
/** hit@K cut. */
export const REGRESSION_HIT_K = 5;
/** Most logged answers the set is built from (the newest). */
export const REGRESSION_MAX_SAMPLES = 5_000;
/** Default largest drop of hit@5 or MRR@10 (absolute) a promotion accepts (MNEME_RELEASE_GATE_MARGIN). */
export const DEFAULT_GATE_MARGIN = 0.05;

export interface RegressionCase {
  responseId: string;
  query: string;
  collection: string | null;
  relevant: number[];
  source: 'thumbs_up' | 'correction';
}

/** `[n]` numbers in a text. Pure. */
function citedNumbers(text: string): number[] {
  return [...text.matchAll(/\[(\d{1,3})\]/g)].map((m) => Number(m[1]));
}

/** The regression set of logged, rated answers (newest first in, one case per question out). Pure. */
export function buildRegressionSet(samples: readonly RegressionSampleRecord[]): RegressionCase[] {
  const byQuery = new Map<string, RegressionCase>();
  for (const s of samples) {
    const key = `${s.collection ?? ''}\u0000${s.query.trim().toLowerCase()}`;
    if (byQuery.has(key)) continue;
    let relevant: number[] = [];
    let source: RegressionCase['source'];
    if (s.rating === 1) {
      relevant = s.citedChunks;
      source = 'thumbs_up';
    } else {
      if (!s.correction) continue;
      relevant = citedNumbers(s.correction).map((n) => s.contextChunks[n - 1]).filter((c): c is number => c !== undefined);
      source = 'correction';
    }
    relevant = [...new Set(relevant)];
    if (relevant.length === 0) continue;
    byQuery.set(key, { responseId: s.responseId, query: s.query, collection: s.collection, relevant, source });
  }
  return [...byQuery.values()];
}

export interface RegressionScores {
  'hit@5': number;
  'mrr@10': number;
  queries: number;
}

/** hit@5 and MRR@10 of ranked chunk ids against the cases. Pure. */
export function scoreRankings(cases: readonly RegressionCase[], rankings: readonly (readonly number[])[]): RegressionScores {
  if (cases.length === 0) return { 'hit@5': 0, 'mrr@10': 0, queries: 0 };
  let hits = 0;
  let rr = 0;
  cases.forEach((c, i) => {
    const ranked = rankings[i] ?? [];
    const rel = new Set(c.relevant);
    const first = ranked.slice(0, REGRESSION_DEPTH).findIndex((id) => rel.has(id));
    if (first !== -1 && first < REGRESSION_HIT_K) hits++;
    if (first !== -1) rr += 1 / (first + 1);
  });
  return { 'hit@5': hits / cases.length, 'mrr@10': rr / cases.length, queries: cases.length };
}

/** Scores one release's retrieval settings on the set (no LLM). */
export async function scoreRelease(retriever: Retriever, parts: ReleaseParts, cases: readonly RegressionCase[]): Promise<RegressionScores> {
  const r = parts.retrieval;
  const rankings: number[][] = [];
  for (const c of cases) {
    const res = await retriever.retrieve({
      query: c.query,
      topK: REGRESSION_DEPTH,
      collection: c.collection ?? undefined,
      mode: r.mode,
      fusion: { k: r.rrf_k, bm25Weight: r.bm25_weight, denseWeight: r.dense_weight },
    });
    rankings.push(res.chunks.map((x) => x.chunkId));
  }
  return scoreRankings(cases, rankings);
}

export interface GateReport {
  passed: boolean;
  reason: string;
  margin: number;
  live: { release: string } & RegressionScores;
  candidate: { release: string } & RegressionScores;
}

/**
 * The gate's decision: the candidate fails when its hit@5 or MRR@10 is below the live release's by
 * more than `margin` (absolute). An empty set passes (there is nothing to compare yet). Pure.
 */
export function gateDecision(live: { release: string } & RegressionScores, candidate: { release: string } & RegressionScores, margin: number): GateReport {
  const base = { margin, live, candidate };
  if (live.queries === 0) return { ...base, passed: true, reason: 'no regression set yet (no rated answers with cited chunks): nothing to compare' };
  const worse: string[] = [];
  for (const m of ['hit@5', 'mrr@10'] as const) {
    if (candidate[m] < live[m] - margin) worse.push(`${m} ${candidate[m].toFixed(3)} < ${live[m].toFixed(3)} − ${margin}`);
  }
  return worse.length === 0
    ? { ...base, passed: true, reason: `candidate within ${margin} of live on ${live.queries} logged questions` }
    : { ...base, passed: false, reason: `candidate ${candidate.release} is worse than live ${live.release} on ${live.queries} logged questions: ${worse.join('; ')}` };
}

/** The regression set of the store's prediction log. */
export async function loadRegressionSet(store: Pick<Store, 'releases'>): Promise<RegressionCase[]> {
  return buildRegressionSet(await store.releases.regressionSamples(REGRESSION_MAX_SAMPLES));
}

/**
 * The promotion gate: builds the regression set from the log and scores the live release and the
 * target with `retriever`; fails when the target is worse by more than `margin`.
 */
export function regressionGate(store: Pick<Store, 'releases'>, retriever: Retriever, margin: number): (live: ReleaseRecord, target: ReleaseRecord) => Promise<GateReport> {
  return async (live, target) => {
    const cases = await loadRegressionSet(store);
    const a = await scoreRelease(retriever, live.parts, cases);
    const b = await scoreRelease(retriever, target.parts, cases);
    return gateDecision({ release: live.name, ...a }, { release: target.name, ...b }, margin);
  };
}
