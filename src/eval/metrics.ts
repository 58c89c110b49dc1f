/**
 * Ranking metrics as BEIR reports them (pytrec_eval / trec_eval definitions):
 * - nDCG@k with linear gain: DCG = Σ_{i=1..k} rel_i / log2(i + 1); IDCG from the judged grades.
 * - Recall@k: |relevant ∩ top k| / |relevant|.
 * - MRR@k: 1 / rank of the first relevant document within the top k, else 0.
 * A document is relevant when its grade is > 0. Pure functions; a document id repeated in a ranking
 * counts once, at its first position.
 */

/** Relevance grades of one query: document id → grade (0 = judged non-relevant). */
export type QueryQrels = ReadonlyMap<string, number>;

export interface EvalScores {
  'ndcg@10': number;
  'recall@100': number;
  'mrr@10': number;
  /** Queries averaged over (those with at least one relevant document). */
  queries: number;
}

function firstOccurrences(ranked: readonly string[], k: number): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const id of ranked) {
    if (out.length >= k) break;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  return out;
}

/** nDCG@k (linear gain). 0 when the query has no relevant document. */
export function ndcgAtK(ranked: readonly string[], qrels: QueryQrels, k = 10): number {
  const top = firstOccurrences(ranked, k);
  let dcg = 0;
  top.forEach((id, i) => {
    const rel = qrels.get(id) ?? 0;
    if (rel > 0) dcg += rel / Math.log2(i + 2);
  });
  const ideal = [...qrels.values()].filter((g) => g > 0).sort((a, b) => b - a).slice(0, k);
  let idcg = 0;
  ideal.forEach((rel, i) => {
    idcg += rel / Math.log2(i + 2);
  });
  return idcg === 0 ? 0 : dcg / idcg;
}

/** Recall@k. 0 when the query has no relevant document. */
export function recallAtK(ranked: readonly string[], qrels: QueryQrels, k = 100): number {
  let relevant = 0;
  for (const g of qrels.values()) if (g > 0) relevant++;
  if (relevant === 0) return 0;
  const found = firstOccurrences(ranked, k).filter((id) => (qrels.get(id) ?? 0) > 0).length;
  return found / relevant;
}

/** Reciprocal rank of the first relevant document within the top k, else 0. */
export function mrrAtK(ranked: readonly string[], qrels: QueryQrels, k = 10): number {
  const top = firstOccurrences(ranked, k);
  const i = top.findIndex((id) => (qrels.get(id) ?? 0) > 0);
  return i === -1 ? 0 : 1 / (i + 1);
}

/**
 * Mean nDCG@10, Recall@100 and MRR@10 over the queries of `qrels` that have at least one relevant
 * document (as BEIR, which evaluates the queries named in its qrels). A query with no ranking
 * (missing from `runs`) scores 0.
 */
export function evaluateRuns(runs: ReadonlyMap<string, readonly string[]>, qrels: ReadonlyMap<string, QueryQrels>): EvalScores {
  let ndcg = 0;
  let recall = 0;
  let mrr = 0;
  let n = 0;
  for (const [qid, judged] of qrels) {
    if (![...judged.values()].some((g) => g > 0)) continue;
    const ranked = runs.get(qid) ?? [];
    ndcg += ndcgAtK(ranked, judged, 10);
    recall += recallAtK(ranked, judged, 100);
    mrr += mrrAtK(ranked, judged, 10);
    n++;
  }
  return n === 0
    ? { 'ndcg@10': 0, 'recall@100': 0, 'mrr@10': 0, queries: 0 }
    : { 'ndcg@10': ndcg / n, 'recall@100': recall / n, 'mrr@10': mrr / n, queries: n };
}
