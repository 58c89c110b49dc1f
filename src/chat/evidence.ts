/**
 * Does retrieval support an answer at all? Pure measures of the evidence for one question and the
 * abstention decision read from them (issue 13, item 2).
 *
 * The decision rests on query-term coverage: the share of the question's key terms (what full-text
 * search looked for, `ftsTerms`, minus stopwords) that occur in the text of the top retrieved
 * chunks (EVIDENCE_TOP_CHUNKS; with their title and heading path), matched after the same
 * light stemming the extractive answerer uses. "What is the capital of France?" against the
 * PostgreSQL manual retrieves a chunk about a `capitals` table: "capital" is covered, "france" is in
 * no document (weight ABSENT_TERM_WEIGHT): coverage 1/4, below the default 0.65, so it abstains. The other signals are recorded with it:
 * - BM25 hits among the top chunks (0 = nothing matched any term lexically: the top chunks are
 *   dense-only neighbours, which a random question always has);
 * - the best fused (RRF) score. RRF scores are rank-based (a rank-1 hit in one list always scores
 *   1/61), so they say nothing absolute about relevance and take no part in the decision;
 * - dense similarity is not read: the retriever passes ranks, not cosines, and no pretrained
 *   embedding model could be calibrated here (random-weight test models give arbitrary cosines).
 */
import { FTS_STOPWORDS, ftsTerms } from '../core/store/corpus.ts';
import { QUESTION_WORDS, keyTerms, segmentSentences, tokenizeTerms } from '../core/llm/extractive.ts';
import type { RetrievedChunk } from './types.ts';

/**
 * Retrieved chunks whose text counts as the evidence: the first this many of the final ranking, and
 * any retrieved chunk within this many places of the BM25 or dense list (personalization and
 * document weights may re-order the list; the evidence should not depend on them).
 */
export const EVIDENCE_TOP_CHUNKS = 3;
/**
 * Default minimum coverage (MNEME_ABSTAIN_MIN_COVERAGE): both of two key terms, two of three, three
 * of four, four of five. Calibrated on real text (BM25 only): the fixture corpus' own questions and
 * the 34 on-topic questions of bench/pgdoc-questions.json against the whole PostgreSQL 15 manual
 * never abstain; 9 of its 10 off-topic questions do (the tenth, "What are the symptoms of the
 * common cold?", uses only words the manual has), and so do off-topic questions against the fixture
 * corpus and the manual excerpts (test/unit/chat/evidence.test.ts).
 */
export const DEFAULT_ABSTAIN_MIN_COVERAGE = 0.65;
/**
 * Weight of a key term that no document of the collection contains ("france" in a database manual),
 * against 1 for any other term: a word the documents never use is strong evidence they do not cover
 * the question, while a common word missing from the top chunks ("declare", "work") is often a paraphrase.
 */
export const ABSENT_TERM_WEIGHT = 3;

export interface EvidenceThresholds {
  /** Minimum key-term coverage in [0, 1]; 0 never abstains (unless nothing was retrieved). */
  minCoverage: number;
}

/** What the decision read; logged with the answer (`evidence_json`). */
export interface Evidence {
  /** The question's key terms (lower case, as full-text search saw them). */
  terms: string[];
  /** Those found in the top chunks. */
  covered: string[];
  /** Those no document of the collection contains (when the caller checked; see ABSENT_TERM_WEIGHT). */
  absent: string[];
  /**
   * Weighted share of covered terms: covered / (terms + (ABSENT_TERM_WEIGHT − 1) × absent); 1 when
   * the question has no key term (nothing to check lexically).
   */
  coverage: number;
  /** Chunks considered (see EVIDENCE_TOP_CHUNKS). */
  chunks: number;
  /** Among them, BM25 hits. */
  bm25_hits: number;
  /** Best fused score of the retrieved chunks (RRF, rank-based; informational), null when none. */
  best_fused: number | null;
  min_coverage: number;
  /** True when the documents do not support an answer. */
  abstain: boolean;
  /** Why it abstains: 'no_chunks' | 'low_coverage'; null when it does not. */
  reason: 'no_chunks' | 'low_coverage' | null;
}

export { QUESTION_WORDS };

/**
 * The question's key terms: the full-text search terms minus stopwords and QUESTION_WORDS (ftsTerms
 * keeps stopwords when a question has nothing else; here such a question has no key term, so
 * coverage cannot judge it).
 */
export function questionTerms(question: string): string[] {
  return ftsTerms(question).filter((t) => !FTS_STOPWORDS.has(t) && !QUESTION_WORDS.has(t));
}

/** Normal forms of a term as the stemmed term sets compare them ("leaves" → "leav", "work_mem" → "work_mem"). */
function forms(term: string): string[] {
  const k = keyTerms(term);
  return k.length > 0 ? k : [term];
}

/**
 * Assesses the evidence for `question` in `chunks` (retrieval order, best first). Pure.
 * Abstains when there are no chunks, or when the key-term coverage of the top chunks is below
 * `thresholds.minCoverage`. `absentFromCorpus`: key terms the caller found in no document at all
 * (see uncoveredTerms); they weigh ABSENT_TERM_WEIGHT.
 */
export function assessEvidence(
  question: string,
  chunks: readonly RetrievedChunk[],
  thresholds: EvidenceThresholds,
  absentFromCorpus: ReadonlySet<string> = new Set(),
): Evidence {
  const terms = questionTerms(question);
  const near = (rank: number | null) => rank !== null && rank <= EVIDENCE_TOP_CHUNKS;
  const top = chunks.filter((c, i) => i < EVIDENCE_TOP_CHUNKS || near(c.bm25Rank) || near(c.denseRank));
  const present = new Set<string>();
  for (const c of top) {
    const text = `${c.title}\n${c.headingPath}\n${c.text}`;
    for (const t of tokenizeTerms(text)) present.add(t);
    for (const t of keyTerms(text)) present.add(t);
  }
  const covered = terms.filter((t) => forms(t).every((f) => present.has(f)));
  const absent = terms.filter((t) => !covered.includes(t) && absentFromCorpus.has(t));
  const coverage = terms.length === 0 ? 1 : covered.length / (terms.length + (ABSENT_TERM_WEIGHT - 1) * absent.length);
  const reason = top.length === 0 ? 'no_chunks' : coverage < thresholds.minCoverage ? 'low_coverage' : null;
  return {
    terms,
    covered,
    absent,
    coverage: Math.round(coverage * 1000) / 1000,
    chunks: top.length,
    bm25_hits: top.filter((c) => c.bm25Rank !== null).length,
    best_fused: chunks.length > 0 ? Math.max(...chunks.map((c) => c.score)) : null,
    min_coverage: thresholds.minCoverage,
    abstain: reason !== null,
    reason,
  };
}

/** Key terms of `e` not found in its chunks: the ones worth asking the store whether any document has them. */
export function uncoveredTerms(e: Evidence): string[] {
  return e.terms.filter((t) => !e.covered.includes(t));
}

/** Most distinct documents an abstaining answer lists as the closest sources. */
export const CLOSEST_SOURCES_MAX = 3;

/** The best-ranked distinct documents of the retrieved chunks (for an abstaining answer). */
export function closestSources<T extends Pick<RetrievedChunk, 'documentId'>>(chunks: readonly T[], max = CLOSEST_SOURCES_MAX): T[] {
  const seen = new Set<number>();
  const out: T[] = [];
  for (const c of chunks) {
    if (out.length >= max) break;
    if (seen.has(c.documentId)) continue;
    seen.add(c.documentId);
    out.push(c);
  }
  return out;
}

/** A document an abstaining answer points to. */
export interface ClosestSource {
  document_id: number;
  title: string;
  /** displaySource: a URL, or the path's last segments (never the server's absolute path). */
  source: string;
}

/** What the prompt's `evidence` variable says when the evidence is weak ('' otherwise: the block disappears). */
export function evidenceNote(e: Evidence): string {
  if (!e.abstain) return '';
  return e.reason === 'no_chunks'
    ? 'Retrieval found no passages for this question.'
    : `Retrieval found little support for this question: the passages contain only ${e.covered.length} of its ${e.terms.length} key terms.`;
}

export type AnswerFinishReason = 'stop' | 'length' | 'no_evidence';

/** Flags an answer can carry (response `flags`, log `flags_json`). */
export type AnswerFlag = 'uncited' | 'weak_evidence';

/**
 * How a generated answer ends, from its citations and the evidence. Pure.
 * - no citation and (weak evidence, or the extractive backend, which cites whenever it quotes):
 *   `no_evidence`; the closest sources are appended as a list (`suffix`, which callers also stream);
 * - no citation otherwise: the model answered without grounding it: flag `uncited`;
 * - citations although the evidence was weak: flag `weak_evidence` (the model found support the
 *   coverage measure missed; worth a look in the log).
 */
export function answerOutcome(o: {
  citations: number;
  finishReason: 'stop' | 'length';
  evidence: Evidence;
  extractive: boolean;
  closest: ClosestSource[];
}): { finishReason: AnswerFinishReason; flags: AnswerFlag[]; suffix: string } {
  if (o.citations === 0 && (o.evidence.abstain || o.extractive)) {
    const list = o.closest.map((s) => `- ${s.title || s.source} (${s.source})`).join('\n');
    return { finishReason: 'no_evidence', flags: [], suffix: list === '' ? '' : `\n\nClosest sources in the documents:\n${list}` };
  }
  if (o.citations === 0) return { finishReason: o.finishReason, flags: ['uncited'], suffix: '' };
  return { finishReason: o.finishReason, flags: o.evidence.abstain ? ['weak_evidence'] : [], suffix: '' };
}

/**
 * Deeper retrieval depth searched for the entry of an identifier the question names (see
 * withDefiningChunks): the manual's `work_mem (integer)` entry ranks about 25th for "What is the
 * default value of work_mem?" under BM25, since every `maintenance_work_mem`/`autovacuum_work_mem`
 * chunk matches the same tokens; `max_connections (integer)`, mid-chunk, 31st.
 */
export const ENTRY_SEARCH_DEPTH = 40;

/** The question's identifiers: key terms written as compounds (`work_mem`, `pg_hba.conf`, `E-417`). */
export function identifierTerms(question: string): string[] {
  return keyTerms(question).filter((t) => /[\p{L}\p{N}][-_.][\p{L}\p{N}]/u.test(t));
}

/**
 * True when `chunk` holds the entry of `term`: a heading line of its text (as the extractive
 * answerer segments it, e.g. `work_mem (integer)`) followed by prose, or the last part of its
 * heading path, starts with the term. A chunk that only mentions the term ("twice the usual work_mem") does not.
 */
export function definesTerm(chunk: Pick<RetrievedChunk, 'text' | 'headingPath'>, term: string): boolean {
  const segments = segmentSentences(chunk.text);
  // A heading followed by text: a run of short lines ("max_connections", "max_locks_per_transaction",
  // … listed in hot-standby.html) is a list, not an entry.
  const headings = segments.filter((s, i) => s.kind === 'heading' && segments[i + 1]?.kind === 'prose').map((s) => s.text);
  const last = chunk.headingPath.split(' > ').pop() ?? '';
  return [...headings, last].some((h) => keyTerms(h)[0] === term);
}

/**
 * The context with the entries of the question's identifiers: for each identifier no chunk of
 * `chunks` (the retrieved top_k) defines, the best-ranked chunk of `deeper` (a deeper retrieval of
 * the same query) that does is put in, right after the first chunk of its document (or last), in
 * place of the worst-ranked chunk that is not a rank-1 BM25 or dense hit (those stay, as the
 * retriever promises). Same length as `chunks`. Pure.
 */
export function withDefiningChunks<T extends Pick<RetrievedChunk, 'chunkId' | 'documentId' | 'text' | 'headingPath' | 'bm25Rank' | 'denseRank'>>(
  question: string,
  chunks: readonly T[],
  deeper: readonly T[],
): T[] {
  let out = [...chunks];
  for (const term of identifierTerms(question)) {
    if (out.some((c) => definesTerm(c, term))) continue;
    const entry = deeper.find((c) => !out.some((o) => o.chunkId === c.chunkId) && definesTerm(c, term));
    if (!entry) continue;
    let drop = -1;
    for (let i = out.length - 1; i >= 0 && drop < 0; i--) if (out[i]?.bm25Rank !== 1 && out[i]?.denseRank !== 1) drop = i;
    if (drop < 0) continue;
    out = out.filter((_, i) => i !== drop);
    const sameDoc = out.findIndex((c) => c.documentId === entry.documentId);
    out.splice(sameDoc < 0 ? out.length : sameDoc + 1, 0, entry);
  }
  return out;
}

/** True when `question` names an identifier whose entry none of `chunks` holds (worth a deeper look). */
export function missingEntries(question: string, chunks: readonly Pick<RetrievedChunk, 'text' | 'headingPath'>[]): boolean {
  return identifierTerms(question).some((t) => !chunks.some((c) => definesTerm(c, t)));
}
