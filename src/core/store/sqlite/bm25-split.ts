/**
 * Exact BM25 top-k with fewer rows scored (MaxScore, on FTS5's own operators).
 *
 * FTS5 ranks an OR query by scoring every row that holds any of its terms (~1 µs a row at 1M
 * chunks), so a query holding one frequent term pays for that term's whole posting list even
 * though such rows can rarely reach the top k. FTS5's bm25() is a sum over the query's phrases,
 * each phrase's part being IDF · f·(k1+1) / (f + k1·(1 − b + b·D/avgdl)), strictly below
 * (k1+1)·IDF; and the parts add up the same way inside AND and NOT (checked in
 * test/unit/store/bm25-split.test.ts). So the terms split into `essential` (E) and `optional` (O):
 *
 *   Q1 = E                 top k by the score of E alone (a lower bound of the full score)
 *   Q2 = (O) AND (E)       top k by the full score, among rows holding both
 *   Q3 = (O) NOT (E)       top k of the rows holding only optional terms: run only when needed
 *
 * The top k of Q1 ∪ Q2 (a row in both taking its Q2 score) is the exact top k of the rows
 * holding an essential term; a row holding none scores below optionalBound (the sum of the
 * optional terms' bounds), so when the k-th best score is already at or above it, Q3 cannot add
 * anything and is skipped. Otherwise Q3 runs and the result is exact too: the split only ever
 * changes the cost. Which terms are optional is a guess (see splitTerms); a wrong guess costs Q3.
 */

/** FTS5's bm25() constants (fts5_aux.c). */
export const FTS5_BM25_K1 = 1.2;
/** FTS5 clamps a negative or zero IDF to this. */
const FTS5_MIN_IDF = 1e-6;
/**
 * A cached document frequency may be stale (re-read after the corpus moved by 10 %, see
 * corpus.ts): a bound uses this share of it, so a term that lost chunks since is not under-bounded.
 */
export const BOUND_DF_MARGIN = 0.8;
/** Optional terms must hold at least this many rows in all (fewer: the plain query is cheap). */
export const SPLIT_MIN_OPTIONAL_ROWS = 2_000;
/** …and at least this multiple of the essential terms' rows (else Q1 + Q2 save nothing). */
export const SPLIT_MIN_COST_RATIO = 0.5;

/** FTS5's IDF of a phrase in `df` of `total` rows: log((N − n + ½) / (n + ½)), at least 1e-6. */
export function bm25Idf(df: number, total: number): number {
  const idf = Math.log((total - df + 0.5) / (df + 0.5));
  return idf > FTS5_MIN_IDF ? idf : FTS5_MIN_IDF;
}

/** An upper bound of a single-token term's part of any row's score, from its (cached) frequency. */
export function termScoreBound(df: number, total: number): number {
  return (FTS5_BM25_K1 + 1) * bm25Idf(Math.floor(df * BOUND_DF_MARGIN), total);
}

/** A query term as searchText holds it after pruning. */
export interface LexicalTerm {
  term: string;
  /** Rows holding it (cached; for a phrase, of its rarest token). */
  df: number;
  /** True for a term FTS5 reads as one token; a phrase's own frequency is unknown, so it is never optional. */
  singleToken: boolean;
}

export interface LexicalSplit {
  essential: string[];
  optional: string[];
  /** No row holding only optional terms scores this much or more. */
  optionalBound: number;
}

/**
 * The split to run for `terms` (null: run the plain query). Optional terms are taken from the most
 * frequent single-token term down while the sum of their bounds stays below a guess of the k-th
 * best score: the IDF at f = 1 of the two rarest essential terms (one when the rarest is in fewer
 * than k rows, as the k-th best row then rarely holds both). No split when the optional terms hold
 * fewer than `minOptionalRows` rows (default SPLIT_MIN_OPTIONAL_ROWS) or fewer than
 * SPLIT_MIN_COST_RATIO times the essential terms' rows. Pure.
 */
export function splitTerms(terms: readonly LexicalTerm[], total: number, k: number, minOptionalRows = SPLIT_MIN_OPTIONAL_ROWS): LexicalSplit | null {
  if (terms.length < 2 || total <= 0) return null;
  const byRarity = [...terms].sort((a, b) => a.df - b.df);
  const candidates = byRarity.filter((t) => t.singleToken).reverse();
  const optional = new Set<string>();
  let bound = 0;
  for (const c of candidates) {
    const essential = byRarity.filter((t) => t !== c && !optional.has(t.term));
    if (essential.length === 0) break;
    const [e1, e2] = essential;
    const guess = bm25Idf(e1!.df, total) + (e2 && e1!.df >= k ? bm25Idf(e2.df, total) : 0);
    const next = bound + termScoreBound(c.df, total);
    if (next >= guess) break;
    optional.add(c.term);
    bound = next;
  }
  if (optional.size === 0) return null;
  const rows = (pick: (t: LexicalTerm) => boolean) => terms.filter(pick).reduce((n, t) => n + t.df, 0);
  const optionalRows = rows((t) => optional.has(t.term));
  if (optionalRows < minOptionalRows || optionalRows < SPLIT_MIN_COST_RATIO * rows((t) => !optional.has(t.term))) return null;
  return {
    essential: terms.filter((t) => !optional.has(t.term)).map((t) => t.term),
    optional: terms.filter((t) => optional.has(t.term)).map((t) => t.term),
    optionalBound: bound,
  };
}

/** A row and its BM25 score (higher is better). */
export interface ScoredRow {
  id: number;
  score: number;
}

/**
 * The best `k` of Q1 (essential-only scores) and Q2 (full scores, which win for a row in both),
 * plus Q3's rows when given; sorted by score, then id. Pure.
 */
export function mergeSplit(k: number, q1: readonly ScoredRow[], q2: readonly ScoredRow[], q3: readonly ScoredRow[] = []): ScoredRow[] {
  const score = new Map<number, number>();
  for (const r of q1) score.set(r.id, r.score);
  for (const r of q2) score.set(r.id, r.score);
  for (const r of q3) if (!score.has(r.id)) score.set(r.id, r.score);
  return [...score]
    .map(([id, s]) => ({ id, score: s }))
    .sort((a, b) => b.score - a.score || a.id - b.id)
    .slice(0, k);
}

/** True when Q3 can be skipped: k rows found and the k-th scores at least `optionalBound`. */
export function splitSettled(k: number, merged: readonly ScoredRow[], optionalBound: number): boolean {
  return merged.length >= k && merged[k - 1]!.score >= optionalBound;
}

/**
 * The pair cover: exact BM25 top k scoring only the rows that hold two or more of the query's terms,
 * plus the single-term rows of the terms that could still reach the top k.
 *
 * With the terms t1…tn ordered rarest first, Pi = (ti AND (ti+1 OR … OR tn)) NOT (t1 OR … OR ti−1)
 * for i < n: a row holding two or more terms, the first of them ti, matches Pi and no other P, and
 * Pi holds every term the row has, so Pi scores it in full (a NOT-ed term is absent from the rows
 * matched: it adds 0). A row holding one term ti only scores below ti's bound (termScoreBound):
 * Si = ti is run, rarest first, only while that bound is above the k-th best score so far. Si also
 * lists rows holding more terms, with a lower score than their P's: the merge keeps each row's best
 * score, and a row cut from Si's top k has k rows above it already, so it is not in the top k anyway.
 * At 1M chunks (bench/README.md) a typical query of three topic words and a mid-frequency word
 * matches ~12k rows, of which ~800 hold two or more terms: FTS5 spends ~1.7 µs a row it scores
 * (most of it reading the row's size for bm25()), ~0.1 µs a row it only walks past.
 */
export const COVER_MAX_TERMS = 8;
/**
 * The pair cover runs n − 1 (or more) queries: below this many rows in all, one plain query is
 * cheaper. 500 against 2,000 (bench/README.md, stop 15): at 100k, same thread, BM25 p50 2.01 → 1.69
 * ms and hybrid 3.49 → 2.83 ms, although most covers there find fewer than k rows and fall back to
 * the plain query; at 300k, hybrid 5.93 → 4.25 ms.
 */
export const COVER_MIN_ROWS = 500;

export interface CoverPlan {
  /** Pi, rarest term first: together they match every row holding two or more of the terms, once. */
  pairs: string[];
  /** Si per term, largest bound first: the term alone and the bound of its part of a score. */
  singles: Array<{ match: string; bound: number }>;
}

/**
 * The pair cover of `terms` (null: run another path): for 2 to COVER_MAX_TERMS terms holding at
 * least `minRows` rows in all (default COVER_MIN_ROWS). A phrase (not single-token) is bounded by the
 * largest IDF there is, as its own frequency is unknown. Terms hold no '"' (fts-query.ts). Pure.
 */
export function coverPlan(terms: readonly LexicalTerm[], total: number, minRows = COVER_MIN_ROWS): CoverPlan | null {
  if (terms.length < 2 || terms.length > COVER_MAX_TERMS || total <= 0) return null;
  if (terms.reduce((n, t) => n + t.df, 0) < minRows) return null;
  const sorted = [...terms].sort((a, b) => a.df - b.df);
  const quoted = sorted.map((t) => `"${t.term}"`);
  return {
    // The NOT makes the pairs disjoint: each row is scored once (~30 % fewer rows scored at 1M).
    pairs: quoted.slice(0, -1).map((q, i) => {
      const pair = `${q} AND (${quoted.slice(i + 1).join(' OR ')})`;
      return i === 0 ? pair : `(${pair}) NOT (${quoted.slice(0, i).join(' OR ')})`;
    }),
    singles: sorted
      .map((t, i) => ({ match: quoted[i]!, bound: termScoreBound(t.singleToken ? t.df : 0, total) }))
      .sort((a, b) => b.bound - a.bound),
  };
}

/** The best `k` of `a` and `b`, a row in both taking its higher score; sorted by score, then id. Pure. */
export function mergeBest(k: number, a: readonly ScoredRow[], b: readonly ScoredRow[]): ScoredRow[] {
  const score = new Map<number, number>();
  for (const r of a) score.set(r.id, r.score);
  for (const r of b) {
    const prev = score.get(r.id);
    if (prev === undefined || r.score > prev) score.set(r.id, r.score);
  }
  return [...score]
    .map(([id, s]) => ({ id, score: s }))
    .sort((x, y) => y.score - x.score || x.id - y.id)
    .slice(0, k);
}
