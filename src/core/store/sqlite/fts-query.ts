/**
 * User text → a safe FTS5 MATCH expression.
 *
 * Every term is emitted as a double-quoted FTS5 string, so nothing the user types can be read as
 * FTS5 syntax (AND/OR/NOT/NEAR, `*`, `^`, `-`, column filters, parentheses). Terms are joined with
 * OR: an implicit AND would return nothing as soon as one word is missing from every chunk, while
 * OR lets BM25 rank chunks by how many (and how rare) of the query's terms they cover.
 *
 * A term is a run of letters/digits/marks, optionally joined by `-`, `_`, `.`, `:`, `/`, `'` to
 * more such runs ("E-417", "halcyon.conf", "OSR-KESTREL-04"). FTS5 tokenizes a quoted compound into
 * a phrase ("e 417"), so compounds match as adjacent tokens: much more precise than OR-ing the parts.
 */

/** The tokenizer of chunks_fts and documents_fts (migrations 001 and 033): query terms are stemmed with it. */
export const FTS_TOKENIZER = 'porter unicode61 remove_diacritics 2';

/**
 * The document-level full-text row of a document covers its title and its first DOC_FTS_MAX_CHUNKS
 * chunks (default 200; a page of the PostgreSQL manual has at most a few dozen), and bestChunks looks
 * for a document's best chunk among those. Unbounded, one 250k-record file made a 12 MB row whose
 * scoring cost ~300 ms per query, and finding its best chunk took minutes (FTS5 evaluates the MATCH
 * once per candidate rowid). The chunk-level list still covers every chunk.
 */
export const DOC_FTS_MAX_CHUNKS = 200;

/** At most this many distinct terms are kept (the first ones): bounds the cost of long messages. */
export const MAX_FTS_TERMS = 32;

/**
 * A small English stopword list: words so common that OR-ing them in only adds cost (their posting
 * lists are huge) and noise. Deliberately short; BM25's IDF already discounts common words.
 */
export const STOPWORDS: ReadonlySet<string> = new Set([
  'a', 'about', 'above', 'after', 'again', 'all', 'am', 'an', 'and', 'any', 'are', 'as', 'at', 'be', 'because', 'been',
  'before', 'being', 'below', 'between', 'both', 'but', 'by', 'can', 'could', 'did', 'do', 'does', 'doing', 'down',
  'during', 'each', 'few', 'for', 'from', 'further', 'had', 'has', 'have', 'having', 'he', 'her', 'here', 'hers',
  'him', 'his', 'how', 'i', 'if', 'in', 'into', 'is', 'it', 'its', 'itself', 'just', 'me', 'more', 'most', 'my',
  'no', 'nor', 'not', 'of', 'off', 'on', 'once', 'only', 'or', 'other', 'our', 'ours', 'out', 'over', 'own', 'same',
  'she', 'should', 'so', 'some', 'such', 'than', 'that', 'the', 'their', 'theirs', 'them', 'then', 'there', 'these',
  'they', 'this', 'those', 'through', 'to', 'too', 'under', 'until', 'up', 'very', 'was', 'we', 'were', 'what',
  'when', 'where', 'which', 'while', 'who', 'whom', 'why', 'will', 'with', 'would', 'you', 'your', 'yours',
  "don't", "doesn't", "didn't", "isn't", "aren't", "can't", "won't", "i'm", "it's", 'please', 'tell',
]);

/** Letters, digits and combining marks, optionally joined by single joiner characters. */
const TERM_RE = /[\p{L}\p{N}\p{M}]+(?:[-_.:/'’][\p{L}\p{N}\p{M}]+)*/gu;
/** Possessive "'s" adds nothing to a search ("Tom's marrow" → "tom", "marrow"). */
const POSSESSIVE_RE = /['’]s(?![\p{L}\p{N}])/gu;

/**
 * Extracts the searchable terms of `text`: lower-cased, deduplicated, stopwords dropped (unless
 * the text is nothing but stopwords, as in "to be or not to be": then they are all that can be
 * searched for, and BM25's IDF still ranks sensibly), at most {@link MAX_FTS_TERMS}.
 */
export function ftsTerms(text: string): string[] {
  if (typeof text !== 'string' || text === '') return [];
  const normalized = text.normalize('NFKC').toLowerCase().replace(POSSESSIVE_RE, '').replace(/’/g, "'");
  const all: string[] = [];
  const seen = new Set<string>();
  for (const m of normalized.matchAll(TERM_RE)) {
    const term = m[0];
    if (seen.has(term)) continue;
    seen.add(term);
    all.push(term);
  }
  const content = all.filter((t) => !STOPWORDS.has(t));
  return (content.length > 0 ? content : all).slice(0, MAX_FTS_TERMS);
}

/**
 * Turns arbitrary user text into an FTS5 MATCH expression such as `"e-417" OR "kestrelctl"`, or
 * null when the text contains nothing searchable (empty, whitespace, punctuation only). Never throws.
 */
export function toFtsQuery(text: string): string | null {
  return termsToFtsQuery(ftsTerms(text));
}

/** `"a" OR "b"` from terms as {@link ftsTerms} returns them; null for none. */
export function termsToFtsQuery(terms: readonly string[]): string | null {
  if (terms.length === 0) return null;
  // Terms contain no '"' (TERM_RE excludes it), so quoting needs no escaping.
  return terms.map((t) => `"${t}"`).join(' OR ');
}

/**
 * Query-term pruning (BM25 over OR-ed terms costs the sum of the terms' posting lists; a term in
 * many chunks dominates that cost while its IDF adds little). A term is dropped when it occurs in at
 * least PRUNE_MIN_DF chunks AND in at least PRUNE_MIN_DF_SHARE of them; the PRUNE_KEEP_RAREST rarest
 * terms are always kept. The share was 1 % until the quality gate ran on a public set (bench/README.md,
 * "the pruning's quality gate"): on the man-pages known-item set (893 queries) it cost nDCG@10
 * −0.0089 against plain BM25 (shares 3–20 % the same), at 30 % +0.0014; the PostgreSQL-manual
 * questions lose the gain 1 % gave them (MRR@10 0.832 → 0.819 = plain), and at 1M chunks the speed
 * targets still hold since the pair cover scores frequent terms cheaply (hybrid 4.24 / 11.76 ms).
 */
export const PRUNE_MIN_DF = 1_000;
export const PRUNE_MIN_DF_SHARE = 0.3;
export const PRUNE_KEEP_RAREST = 2;
/**
 * A term in at least this share of the chunks has a BM25 IDF of log((N − n + ½)/(n + ½)) ≤ 0, which
 * FTS5 clamps to 1e-6: it cannot change any ranking, yet scoring its posting list costs seconds on a
 * large corpus (a 250k-record document: ~1 s per query). Such a term (from PRUNE_MIN_DF chunks on:
 * below that its scan is cheap) is always dropped when a rarer term remains, even among the
 * PRUNE_KEEP_RAREST.
 */
export const PRUNE_ZERO_IDF_SHARE = 0.5;

/** What to run for a query after pruning: ranked BM25 over `terms`, or (`unranked`) only terms whose IDF is 0. */
export interface PrunedQuery {
  terms: string[];
  /**
   * True when every term is in ≥ PRUNE_ZERO_IDF_SHARE of the chunks: BM25 cannot tell the matches
   * apart, so `terms` holds the rarest one and the caller lists matches without scoring them all.
   */
  unranked: boolean;
}

/**
 * The terms to search, in their original order, after pruning by document frequency (see
 * PRUNE_MIN_DF and PRUNE_ZERO_IDF_SHARE). `df[i]` is the number of chunks holding `terms[i]` (0 when
 * unknown: kept), used by the PRUNE_MIN_DF rule; `idfDf[i]` (default `df`) the number FTS5 scans for
 * it (its stems'), used by the IDF-0 rule; `total` the number of chunks. Pure.
 */
export function pruneTerms(terms: readonly string[], df: readonly number[], total: number, idfDf: readonly number[] = df): PrunedQuery {
  if (terms.length === 0 || total <= 0) return { terms: [...terms], unranked: false };
  const zeroIdf = (i: number) => {
    const n = idfDf[i] ?? 0;
    return n >= PRUNE_MIN_DF && n / total >= PRUNE_ZERO_IDF_SHARE;
  };
  const indexes = terms.map((_, i) => i);
  if (indexes.every(zeroIdf)) {
    const rarest = indexes.reduce((a, b) => ((idfDf[b] ?? 0) < (idfDf[a] ?? 0) ? b : a));
    return { terms: [terms[rarest]!], unranked: true };
  }
  const live = indexes.filter((i) => !zeroIdf(i));
  if (live.length <= PRUNE_KEEP_RAREST) return { terms: live.map((i) => terms[i]!), unranked: false };
  const byRarity = live.map((i) => ({ i, df: df[i] ?? 0 })).sort((a, b) => a.df - b.df || a.i - b.i);
  const keep = new Set<number>();
  byRarity.forEach((x, rank) => {
    if (rank < PRUNE_KEEP_RAREST || x.df < PRUNE_MIN_DF || x.df / total < PRUNE_MIN_DF_SHARE) keep.add(x.i);
  });
  return { terms: terms.filter((_, i) => keep.has(i)), unranked: false };
}
