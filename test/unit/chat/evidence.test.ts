import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIngest } from '../../../ingest/pipeline.ts';
import {
  ABSENT_TERM_WEIGHT,
  DEFAULT_ABSTAIN_MIN_COVERAGE,
  answerOutcome,
  assessEvidence,
  closestSources,
  questionTerms,
  uncoveredTerms,
} from '../../../src/chat/evidence.ts';
import type { Evidence } from '../../../src/chat/evidence.ts';
import { HybridRetriever } from '../../../src/chat/retrieve.ts';
import type { RetrievedChunk } from '../../../src/chat/types.ts';
import { loadConfig } from '../../../src/core/config.ts';
import { openVectorStack } from '../../../src/core/deps.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';

const FIXTURE_DOCS = fileURLToPath(new URL('../../fixtures/docs', import.meta.url));
const PGDOC = fileURLToPath(new URL('../../fixtures/pgdoc/passages.json', import.meta.url));

/** Off-topic questions: none is answered by a water purifier manual, a ferry timetable or a database manual. */
const OFF_TOPIC = [
  'What is the capital of France?',
  'Who won the 2018 football World Cup?',
  'How do I bake sourdough bread?',
  'What is the boiling point of water at sea level?',
  'Who wrote Pride and Prejudice?',
  'How tall is Mount Everest?',
  'What is the population of Tokyo?',
  'What is the speed of light?',
  'Which planet is the largest in the solar system?',
  'How many moons does Jupiter have?',
];

/** The fixture corpus' own questions (the ones the other tests ask). */
const FIXTURE_QUESTIONS = [
  'Which part number is the Halcyon X3 filter cartridge?',
  'What does kestrelctl do?',
  'How long should I flush a new BW-TS-30 cartridge?',
  'What is OrbiSync?',
  'When does the Tidewater ferry leave?',
  'Where does the Tidewater ferry leave from?',
  'What does error E-417 mean?',
  'How far from the drain trap should I mount the Halcyon X3?',
  'Where is the Halcyon X3 serial number printed?',
  'What is the filter cartridge part number?',
  'Tell me about the Halcyon X3',
];

const PGDOC_QUESTIONS = [
  'What is the default value of work_mem?',
  'What is a BRIN index?',
  'How do I create a GIN index with fast updates disabled?',
  'What is a partial index?',
  'How much storage does a bigint take?',
  'How do I create an index without locking out writes?',
];

function chunk(id: number, text: string, extra: Partial<RetrievedChunk> = {}): RetrievedChunk {
  return { chunkId: id, documentId: id, collection: 'c', source: `/srv/docs/d${id}.md`, title: `Doc ${id}`, headingPath: '', text, contentSha256: '', score: 1 / (60 + id), bm25Rank: id, denseRank: null, ...extra };
}

describe('assessEvidence (pure)', () => {
  it('takes the full-text terms of the question without stopwords', () => {
    expect(questionTerms('What is the default value of work_mem?')).toEqual(['default', 'value', 'work_mem']);
    expect(questionTerms('to be or not to be')).toEqual([]);
  });

  it('measures coverage over the top chunks with light stemming, and abstains below the threshold', () => {
    const chunks = [chunk(1, 'The ferry leaves Port Quillon at 07:10.'), chunk(2, 'Tidewater Ferries runs three routes.')];
    const e = assessEvidence('When does the Tidewater ferry leave?', chunks, { minCoverage: DEFAULT_ABSTAIN_MIN_COVERAGE });
    expect(e).toMatchObject({ terms: ['tidewater', 'ferry', 'leave'], covered: ['tidewater', 'ferry', 'leave'], coverage: 1, abstain: false, reason: null, bm25_hits: 2 });
    const off = assessEvidence('What is the capital of France?', [chunk(1, 'Each state has many cities, but only one capital.')], { minCoverage: DEFAULT_ABSTAIN_MIN_COVERAGE });
    expect(off).toMatchObject({ covered: ['capital'], coverage: 0.5, abstain: true, reason: 'low_coverage' });
    expect(uncoveredTerms(off)).toEqual(['france']);
    // A term no document has weighs ABSENT_TERM_WEIGHT.
    const weighed = assessEvidence('What is the capital of France?', [chunk(1, 'only one capital')], { minCoverage: 0 }, new Set(['france']));
    expect(weighed.coverage).toBeCloseTo(1 / (1 + ABSENT_TERM_WEIGHT), 3);
    expect(weighed.absent).toEqual(['france']);
    expect(assessEvidence('anything', [], { minCoverage: 0 })).toMatchObject({ abstain: true, reason: 'no_chunks' });
    expect(assessEvidence('What is the capital of France?', [chunk(1, 'capital')], { minCoverage: 0 }).abstain).toBe(false);
  });

  it('counts a chunk that BM25 ranked near the top even when re-ranking moved it down', () => {
    const chunks = [chunk(1, 'alpha', { bm25Rank: 4 }), chunk(2, 'beta', { bm25Rank: 5 }), chunk(3, 'gamma', { bm25Rank: 6 }), chunk(4, 'GIN index fast updates', { bm25Rank: 1 })];
    expect(assessEvidence('GIN index with fast updates', chunks, { minCoverage: 0.65 }).abstain).toBe(false);
  });

  it('decides the outcome: no_evidence with the closest sources, uncited, weak_evidence', () => {
    const weak = { abstain: true } as Evidence;
    const strong = { abstain: false } as Evidence;
    const closest = [{ document_id: 1, title: 'Resource Consumption', source: 'html/runtime-config-resource.html' }];
    expect(answerOutcome({ citations: 0, finishReason: 'stop', evidence: weak, extractive: false, closest })).toEqual({
      finishReason: 'no_evidence',
      flags: [],
      suffix: '\n\nClosest sources in the documents:\n- Resource Consumption (html/runtime-config-resource.html)',
    });
    expect(answerOutcome({ citations: 0, finishReason: 'stop', evidence: strong, extractive: true, closest: [] })).toMatchObject({ finishReason: 'no_evidence', suffix: '' });
    expect(answerOutcome({ citations: 0, finishReason: 'length', evidence: strong, extractive: false, closest })).toEqual({ finishReason: 'length', flags: ['uncited'], suffix: '' });
    expect(answerOutcome({ citations: 2, finishReason: 'stop', evidence: weak, extractive: false, closest })).toEqual({ finishReason: 'stop', flags: ['weak_evidence'], suffix: '' });
    expect(closestSources([chunk(1, 'a'), chunk(1, 'b'), chunk(2, 'c'), chunk(3, 'd'), chunk(4, 'e')]).map((c) => c.documentId)).toEqual([1, 2, 3]);
  });
});

describe('abstention calibrated on real text (BM25 over ingested documents)', () => {
  let dir: string;
  let store: SqliteStore;
  let retriever: HybridRetriever;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-evidence-'));
    const config = loadConfig({ MNEME_EMBED_MODEL: 'none', MNEME_DATA_DIR: path.join(dir, 'data') });
    store = openSqliteStore(config.dbFile);
    const stack = await openVectorStack(store, config);
    // The manual excerpts, one markdown file per chunk (its page title as the heading).
    const pg = path.join(dir, 'pgdoc');
    fs.mkdirSync(pg);
    const passages = JSON.parse(fs.readFileSync(PGDOC, 'utf8')) as Array<{ file: string; title: string; text: string }>;
    passages.forEach((p, i) => fs.writeFileSync(path.join(pg, `${i}-${p.file.replace(/\.html$/, '')}.md`), `# ${p.title}\n\n${p.text}\n`));
    for (const [paths, collection] of [[[FIXTURE_DOCS], 'fixtures'], [[pg], 'pgdoc']] as const) {
      await runIngest({ store, dataDir: config.dataDir, paths: [...paths], collection, prune: false, maxFileBytes: config.maxFileBytes, vectors: async () => stack, configuredModel: null });
    }
    retriever = new HybridRetriever({ store, embedder: null, index: null, syncIntervalMs: 0 });
  });

  afterAll(async () => {
    await store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function evidence(q: string, collection: string): Promise<Evidence> {
    const chunks = (await retriever.retrieve({ query: q, topK: 6, collection })).chunks;
    const first = assessEvidence(q, chunks, { minCoverage: DEFAULT_ABSTAIN_MIN_COVERAGE });
    const absent = new Set<string>();
    for (const t of uncoveredTerms(first)) if ((await store.corpus.searchText(t, { limit: 1, collection })).length === 0) absent.add(t);
    return assessEvidence(q, chunks, { minCoverage: DEFAULT_ABSTAIN_MIN_COVERAGE }, absent);
  }

  it('off-topic questions abstain against the fixture corpus and the manual excerpts', async () => {
    for (const collection of ['fixtures', 'pgdoc']) {
      for (const q of OFF_TOPIC) expect((await evidence(q, collection)).abstain, `${collection}: ${q}`).toBe(true);
    }
    // The manual's example about a `capitals` table shares one word with the question.
    expect(await evidence('What is the capital of France?', 'pgdoc')).toMatchObject({ covered: ['capital'], absent: ['france'] });
  });

  it("the fixture corpus' and the manual excerpts' own questions do not abstain", async () => {
    for (const q of FIXTURE_QUESTIONS) expect((await evidence(q, 'fixtures')).abstain, q).toBe(false);
    for (const q of PGDOC_QUESTIONS) expect((await evidence(q, 'pgdoc')).abstain, q).toBe(false);
  });
});
