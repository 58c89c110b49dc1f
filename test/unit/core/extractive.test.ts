import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { finalizeCitations } from '../../../src/chat/citations.ts';
import { CancelledError } from '../../../src/core/errors.ts';
import { definesTerm, withDefiningChunks } from '../../../src/chat/evidence.ts';
import {
  EXTRACTIVE_MAX_SENTENCES,
  EXTRACTIVE_NOTE,
  EXTRACTIVE_NOTHING_FOUND,
  ExtractiveChatModel,
  answerCues,
  composeExtractiveAnswer,
  questionKeyTerms,
  segmentSentences,
  selectSentences,
  splitSentences,
  stem,
  tokenizeTerms,
} from '../../../src/core/llm/extractive.ts';
import type { ContextPassage, GenerateRequest, SamplingParams } from '../../../src/core/llm/types.ts';

const FIXTURES = path.join(import.meta.dirname, '../../fixtures/docs');
const SAMPLING: SamplingParams = { maxTokens: 512, temperature: 0, topP: 1, seed: 1, stop: [] };

/** Real fixture documents cut at second-level headings, numbered like a retrieved context. */
function fixturePassages(): ContextPassage[] {
  const passages: ContextPassage[] = [];
  for (const file of ['tidewater-ferry-timetable.txt', 'halcyon-x3-manual.md', 'kestrelctl-reference.md']) {
    const text = fs.readFileSync(path.join(FIXTURES, file), 'utf8');
    for (const part of text.split(/\n(?=## )/)) passages.push({ n: passages.length + 1, text: part, title: file, source: path.join(FIXTURES, file) });
  }
  return passages;
}

function request(query: string, passages: ContextPassage[], extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    messages: [
      { role: 'system', content: 'system prompt' },
      { role: 'user', content: query },
    ],
    sampling: SAMPLING,
    signal: new AbortController().signal,
    context: { query, passages },
    ...extra,
  };
}

function markers(text: string): number[] {
  return [...text.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1]));
}

describe('text helpers', () => {
  it('stems lightly and consistently', () => {
    expect(stem('filters')).toBe(stem('filter'));
    expect(stem('installing')).toBe('install');
    expect(stem('installed')).toBe('install');
    expect(stem('stopped')).toBe('stop');
    expect(stem('batteries')).toBe(stem('battery'));
    expect(stem('replaced')).toBe(stem('replace'));
    expect(stem('x3')).toBe('x3');
  });

  it('tokenizes into content terms, keeping compounds and their parts', () => {
    expect(tokenizeTerms('What does error E-417 mean for the Halcyon X3?')).toEqual(['error', 'e-417', '417', 'mean', 'halcyon', 'x3']);
    expect(tokenizeTerms('Café crème')).toEqual(tokenizeTerms('cafe creme'));
    expect(tokenizeTerms('the of and')).toEqual([]);
  });

  it('joins hard-wrapped lines, splits sentences and tags headings and code', () => {
    const text = '# Title here\n\nFirst sentence wraps\nonto a second line. Second one, e.g. Foo, continues! Third?\n\n- list item one\n- list item two\n\nROUTE A: NORTH\n```\nx = 1\n# not a heading\n```';
    expect(segmentSentences(text)).toEqual([
      { text: 'Title here', kind: 'heading' },
      { text: 'First sentence wraps onto a second line.', kind: 'prose' },
      { text: 'Second one, e.g. Foo, continues!', kind: 'prose' },
      { text: 'Third?', kind: 'prose' },
      { text: 'list item one', kind: 'prose' },
      { text: 'list item two', kind: 'prose' },
      { text: 'ROUTE A: NORTH', kind: 'heading' },
      { text: 'x = 1\n# not a heading', kind: 'code' },
    ]);
    expect(splitSentences(text)).toHaveLength(5);
  });
});

describe('selectSentences', () => {
  it('weights rare terms by idf: a term in every passage counts less', () => {
    const passages: ContextPassage[] = [
      { n: 1, title: 'a', source: 'a', text: 'The cartridge is blue and sits in the base of the unit.' },
      { n: 2, title: 'b', source: 'b', text: 'The Lumacore stage glows while the unit is running well.' },
      { n: 3, title: 'c', source: 'c', text: 'Every cartridge ships sealed in a bag for the unit.' },
    ];
    const top = selectSentences('lumacore cartridge unit', passages, 1);
    expect(top).toHaveLength(1);
    expect(top[0]?.n).toBe(2);
  });

  it('keeps passage order, quotes a repeated (overlapping-chunk) sentence once and stops at the maximum', () => {
    const shared = 'The Tidewater ferry leaves Port Quillon at ten past seven every morning.';
    const passages: ContextPassage[] = [
      { n: 1, title: 't', source: 's', text: `Intro words only here today. ${shared}` },
      { n: 2, title: 't', source: 's', text: `${shared} The Tidewater ferry returns from Marrowby at twenty past eight.` },
      { n: 3, title: 't', source: 's', text: 'The Tidewater ferry Gannet Rose is a ferry with a ferry crew of ferry people.' },
    ];
    const picked = selectSentences('When does the Tidewater ferry leave Port Quillon and return from Marrowby?', passages);
    expect(picked.length).toBeGreaterThanOrEqual(2);
    expect(picked.length).toBeLessThanOrEqual(EXTRACTIVE_MAX_SENTENCES);
    expect(picked.filter((p) => p.text === shared)).toHaveLength(1);
    expect(picked.find((p) => p.text === shared)?.n).toBe(1);
    const ns = picked.map((p) => p.n);
    expect(ns).toEqual([...ns].sort((a, b) => a - b));
  });
});

describe('ExtractiveChatModel', () => {
  const model = new ExtractiveChatModel();

  it('reports itself as a ready extractive backend', () => {
    expect(model.backend).toBe('extractive');
    expect(model.modelId).toBe('extractive-v1');
    expect(model.status()).toEqual({ state: 'ready' });
    expect(model.countTokens('hello world')).toBeGreaterThan(0);
  });

  it('answers from the right passage with the note and [n] after each sentence', async () => {
    const passages = fixturePassages();
    const q = 'How far from the drain trap should I mount the Halcyon X3?';
    const r = await model.generate(request(q, passages));
    expect(r.finishReason).toBe('stop');
    expect(r.text.startsWith(EXTRACTIVE_NOTE)).toBe(true);
    const target = passages.find((p) => p.text.includes('40 cm from the drain trap'));
    expect(target).toBeDefined();
    expect(r.text).toContain(`Choose a spot at least 40 cm from the drain trap and away from the dishwasher exhaust [${target?.n}].`);
    const body = r.text.slice(EXTRACTIVE_NOTE.length).trim();
    const ms = markers(body);
    expect(ms.length).toBeGreaterThanOrEqual(1);
    expect(ms.length).toBeLessThanOrEqual(EXTRACTIVE_MAX_SENTENCES);
    expect(ms.every((n) => passages.some((p) => p.n === n))).toBe(true);
    // Every quoted sentence ends with its marker (before final punctuation, if any).
    expect(body.split(/(?<=\]\.?) /).every((s) => /\[\d+\]\.?$/.test(s))).toBe(true);
    expect(r.promptTokens).toBeGreaterThan(0);
    expect(r.completionTokens).toBe(model.countTokens(r.text));

    // The citations resolve to real chunks through the normal citation pass.
    const chunks = passages.map((p) => ({
      chunkId: p.n,
      documentId: p.n,
      collection: 'c',
      source: p.source,
      title: p.title,
      headingPath: '',
      text: p.text,
      contentSha256: '',
      score: 1,
      bm25Rank: p.n,
      denseRank: null,
    }));
    const fin = finalizeCitations(r.text, chunks);
    // Renumbered 1..k in order of first citation.
    const firstCited = markers(body)[0];
    const renumbered = [...new Set(markers(body))].indexOf(target?.n ?? -1) + 1;
    expect(fin.answer.slice(EXTRACTIVE_NOTE.length)).toContain(`dishwasher exhaust [${renumbered}].`);
    expect(fin.citations[0]?.chunk_id).toBe(firstCited);
    expect(fin.citations[0]?.snippet).toContain('40 cm from the drain trap');
  });

  it('finds exact codes such as E-417', async () => {
    const passages = fixturePassages();
    const r = await model.generate(request('What does error E-417 mean?', passages));
    expect(r.text).toContain('E-417 means the flow sensor measured less than 0.3 litres per minute');
    expect(r.text).not.toContain('Error E-417: low flow ['); // headings are not quoted
  });

  it('says it found nothing when no sentence overlaps the question, or there are no passages', async () => {
    for (const passages of [fixturePassages(), []]) {
      const r = await model.generate(request('What is the capital of France?', passages));
      expect(r.text).toBe(EXTRACTIVE_NOTHING_FOUND);
      expect(r.finishReason).toBe('stop');
    }
  });

  it('streams word by word: the tokens concatenate to the text', async () => {
    const tokens: string[] = [];
    const r = await model.generate(request('How do I flush a new cartridge?', fixturePassages(), { onToken: (t) => tokens.push(t) }));
    expect(tokens.length).toBeGreaterThan(10);
    expect(tokens.join('')).toBe(r.text);
    expect(tokens.every((t) => t.trim().split(/\s+/).length === 1)).toBe(true);
  });

  it('is deterministic', async () => {
    const passages = fixturePassages();
    const a = await model.generate(request('How long does the ferry crossing take?', passages));
    const b = await model.generate(request('How long does the ferry crossing take?', passages));
    expect(a).toEqual(b);
  });

  it('respects maxTokens with finishReason length', async () => {
    const passages = fixturePassages();
    const full = await model.generate(request('How far from the drain trap should I mount the Halcyon X3?', passages));
    const short = await model.generate(request('How far from the drain trap should I mount the Halcyon X3?', passages, { sampling: { ...SAMPLING, maxTokens: 12 } }));
    expect(short.finishReason).toBe('length');
    expect(short.completionTokens).toBeLessThanOrEqual(12);
    expect(short.text.length).toBeGreaterThan(0);
    expect(full.text.startsWith(short.text)).toBe(true);
    expect(short.text.length).toBeLessThan(full.text.length);
  });

  it('stops before a stop string', async () => {
    const r = await model.generate(request('How do I flush a new cartridge?', fixturePassages(), { sampling: { ...SAMPLING, stop: ['\n\n'] } }));
    expect(r.text).toBe(EXTRACTIVE_NOTE);
    expect(r.finishReason).toBe('stop');
  });

  it('rejects with CancelledError when aborted mid-stream, and sends nothing after the abort', async () => {
    const ac = new AbortController();
    const tokens: string[] = [];
    const p = model.generate(
      request('How do I flush a new cartridge?', fixturePassages(), {
        signal: ac.signal,
        onToken: (t) => {
          tokens.push(t);
          if (tokens.length === 3) ac.abort();
        },
      }),
    );
    await expect(p).rejects.toBeInstanceOf(CancelledError);
    expect(tokens).toHaveLength(3);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    const tokens: string[] = [];
    await expect(model.generate(request('cartridge', fixturePassages(), { signal: ac.signal, onToken: (t) => tokens.push(t) }))).rejects.toBeInstanceOf(
      CancelledError,
    );
    expect(tokens).toEqual([]);
  });
});

/** Real chunks of the PostgreSQL 15 manual (test/fixtures/pgdoc/extract.ts), numbered as a context. */
function pgdocPassages(): ContextPassage[] {
  const raw = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../../fixtures/pgdoc/passages.json'), 'utf8')) as Array<{ file: string; title: string; text: string }>;
  return raw.map((p, i) => ({ n: i + 1, text: p.text, title: p.title, source: p.file }));
}

describe('extractive answers on the PostgreSQL manual', () => {
  const passages = pgdocPassages();
  const n = (needle: string) => passages.find((p) => p.text.includes(needle))?.n;

  it("quotes work_mem's default, not hash_mem_multiplier's", () => {
    const text = composeExtractiveAnswer('What is the default value of work_mem?', passages);
    expect(text).toContain(`The default value is four megabytes (4MB) [${n('work_mem (integer)')}].`);
    expect(text).not.toContain('2.0');
    expect(text).not.toContain('hash_mem_multiplier');
  });

  it('says the documents do not cover an off-topic question that shares a word with them', () => {
    expect(passages.some((p) => /\bcapital\b/.test(p.text))).toBe(true);
    expect(composeExtractiveAnswer('What is the capital of France?', passages)).toBe(EXTRACTIVE_NOTHING_FOUND);
  });

  it('keeps code as a fenced block after the sentence that introduces it', () => {
    const text = composeExtractiveAnswer('How do I create a GIN index with fast updates disabled?', passages);
    expect(text).toContain(`To create a GIN index with fast updates disabled [${n('gin_idx')}]:\n\n\`\`\`\nCREATE INDEX gin_idx ON documents_table USING GIN (locations) WITH (fastupdate = off);\n\`\`\``);
    const multi = segmentSentences(passages.find((p) => p.text.includes('CREATE INDEX pointloc'))?.text ?? '').find((s) => s.text.startsWith('CREATE INDEX pointloc'));
    expect(multi).toEqual({ kind: 'code', text: expect.stringContaining('CREATE INDEX pointloc\n    ON points USING gist') });
  });

  it('never quotes table rows or navigation', () => {
    const table = passages.find((p) => p.text.includes('Name | Storage Size'));
    expect(segmentSentences(table?.text ?? '').filter((s) => s.text.includes(' | ')).every((s) => s.kind === 'table')).toBe(true);
    for (const q of ['What is the storage size of a bigint?', 'Which numeric types are there?']) {
      expect(composeExtractiveAnswer(q, passages)).not.toMatch(/\|/);
    }
    const chrome: ContextPassage[] = [{ n: 1, title: 'Partial indexes', source: 'x.html', text: 'Prev Up Next\n\nHome\n\nA partial index covers the rows that satisfy its predicate.\n\nPrev | Up | Next' }];
    expect(segmentSentences(chrome[0]!.text).map((s) => s.kind)).toEqual(['nav', 'nav', 'prose', 'nav']);
    expect(composeExtractiveAnswer('What does a partial index cover?', chrome)).toContain('A partial index covers the rows that satisfy its predicate [1].');
  });

  it('quotes at most EXTRACTIVE_MAX_SENTENCES units, each with its [n]', () => {
    for (const q of ['What is a partial index?', 'What is a BRIN index?', 'What does hash_mem_multiplier do?']) {
      const picked = selectSentences(q, passages);
      expect(picked.length).toBeGreaterThan(0);
      expect(picked.length).toBeLessThanOrEqual(EXTRACTIVE_MAX_SENTENCES);
      const body = composeExtractiveAnswer(q, passages).slice(EXTRACTIVE_NOTE.length);
      expect(body.match(/\[\d+\]/g)?.length).toBe(picked.length);
    }
  });
});

/**
 * Failures seen on the whole manual (BM25 over all 1,169 pages, top_k 6), reproduced on the same
 * chunks in the order retrieval ranked them there.
 */
describe('extractive answers in the whole-manual ranking order', () => {
  const raw = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../../fixtures/pgdoc/passages.json'), 'utf8')) as Array<{ file: string; title: string; headingPath: string; text: string }>;
  const chunk = (needle: string) => {
    const i = raw.findIndex((p) => p.text.includes(needle));
    const p = raw[i];
    if (!p) throw new Error(`no fixture passage with ${needle}`);
    return { chunkId: i + 1, documentId: raw.findIndex((q) => q.file === p.file) + 1, text: p.text, headingPath: p.headingPath, title: p.title, source: p.file, bm25Rank: null as number | null, denseRank: null as number | null };
  };
  type Chunk = ReturnType<typeof chunk>;
  const asPassages = (chunks: Chunk[]): ContextPassage[] => chunks.map((c, i) => ({ n: i + 1, text: c.text, title: c.title, source: c.source }));

  it('work_mem: the entry is swapped into the context and its default quoted, not "using default values"', () => {
    const q = 'What is the default value of work_mem?';
    // What the top 6 held on the whole manual: hash_mem_multiplier's chunk, app-postgres' example, no work_mem entry.
    const top = [chunk('hash_mem_multiplier (floating point)'), chunk('using default values'), chunk('maintenance_work_mem (integer)')];
    expect(composeExtractiveAnswer(q, asPassages(top))).not.toContain('4MB');
    expect(top.some((c) => definesTerm(c, 'work_mem'))).toBe(false);
    const entry = chunk('work_mem (integer)\n\nSets the base');
    const context = withDefiningChunks(q, top, [...top, chunk('shared_buffers (integer)'), entry]);
    expect(context.map((c) => c.chunkId)).toEqual([top[0]?.chunkId, entry.chunkId, top[1]?.chunkId]);
    const text = composeExtractiveAnswer(q, asPassages(context));
    expect(text).toContain('The default value is four megabytes (4MB) [2].');
    expect(text).not.toContain('default values, type');
  });

  it('keeps rank-1 hits when swapping an entry in, and treats a run of short lines as a list, not an entry', () => {
    const top = [chunk('hash_mem_multiplier (floating point)'), { ...chunk('using default values'), bm25Rank: 1 }];
    const entry = chunk('work_mem (integer)\n\nSets the base');
    // The rank-1 BM25 hit (app-postgres here) stays; the other chunk makes room.
    expect(withDefiningChunks('What is the default value of work_mem?', top, [entry]).map((c) => c.chunkId)).toEqual([top[1]?.chunkId, entry.chunkId]);
    const list = { text: 'The following settings must be as high on the standby:\n\nmax_connections\n\nmax_prepared_transactions\n\nmax_locks_per_transaction', headingPath: 'Hot Standby' };
    expect(definesTerm(list, 'max_connections')).toBe(false);
    expect(definesTerm(chunk('max_connections (integer)'), 'max_connections')).toBe(true);
  });

  it('max_connections: the default under its own entry beats a sentence that only names it', () => {
    const q = 'How many connections does max_connections allow by default?';
    const text = composeExtractiveAnswer(q, asPassages([chunk('using default values'), chunk('max_connections (integer)'), chunk('one semaphore per allowed connection')]));
    const body = text.slice(EXTRACTIVE_NOTE.length).trim();
    expect(body.startsWith('The default is typically 100 connections')).toBe(true);
  });

  it('shared_buffers: quotes the default with its value (128MB)', () => {
    const text = composeExtractiveAnswer('What is the default value of shared_buffers?', asPassages([chunk('shared_buffers (integer)'), chunk('using default values')]));
    expect(text).toContain('The default is typically 128 megabytes (128MB)');
    expect(text).not.toContain('default values, type');
  });

  it('BRIN: "what is X" leads with the sentence that defines X, not the first passage\'s mentions', () => {
    const text = composeExtractiveAnswer('What is a BRIN index?', asPassages([chunk('The BRIN layer itself'), chunk('BRIN indexes (a shorthand')]));
    const body = text.slice(EXTRACTIVE_NOTE.length).trim();
    expect(body.startsWith('BRIN indexes (a shorthand for Block Range INdexes) store summaries')).toBe(true);
  });

  it('json vs jsonb: quotes the sentences that contrast the two, not the function table of the first passage', () => {
    const text = composeExtractiveAnswer('What is the difference between json and jsonb?', asPassages([chunk('Expands the top-level JSON array into a set of JSON values'), chunk('The json and jsonb data types accept')]));
    const body = text.slice(EXTRACTIVE_NOTE.length).trim();
    expect(body.startsWith('The json and jsonb data types accept almost identical sets of values as input [2].')).toBe(true);
    expect(body).toContain('while jsonb data is stored in a decomposed binary format');
  });

  it('"what does X control": the first sentence of X\'s entry, though it repeats none of the words', () => {
    const text = composeExtractiveAnswer('What does the checkpoint_timeout parameter control?', asPassages([chunk('checkpoint_timeout (integer)')]));
    expect(text).toContain('Maximum time between automatic WAL checkpoints [1].');
  });

  it('a SQL synopsis line with { a | b } alternatives is code, a table row stays a table row', () => {
    const synopsis = chunk('ALTER SYSTEM — change a server');
    const segs = segmentSentences(synopsis.text);
    expect(segs.find((seg) => seg.text.startsWith('ALTER SYSTEM SET configuration_parameter'))?.kind).toBe('code');
    expect(segs.find((seg) => seg.text.startsWith('ALTER SYSTEM — change a server'))?.kind).toBe('heading');
    expect(segmentSentences('INSERT | Check new row [a] | Check new row | —')[0]?.kind).toBe('table');
    const text = composeExtractiveAnswer('How do I change a configuration parameter with ALTER SYSTEM?', asPassages([synopsis]));
    expect(text).toContain('ALTER SYSTEM SET configuration_parameter { TO | = } { value [, ...] | DEFAULT }');
    expect(text).not.toContain('— change a server');
  });

  it('reads answer cues and drops question words from the key terms', () => {
    expect(questionKeyTerms('How long should I flush a new Halcyon X3 cartridge?')).toEqual(['flush', 'new', 'halcyon', 'x3', 'cartridg']);
    expect(answerCues('How long should I flush a new cartridge?')).toMatchObject({ duration: true, quantity: false, defaultValue: false, procedure: false });
    expect(answerCues('What is the default value of work_mem?')).toMatchObject({ defaultValue: true, definitionOf: ['default', 'valu', 'work_mem'] });
    expect(answerCues('What is a BRIN index?').definitionOf).toEqual(['brin', 'index']);
    expect(answerCues('How do I create a partial index?').procedure).toBe(true);
    expect(answerCues('How do LISTEN and NOTIFY work?').procedure).toBe(false);
    expect(answerCues('What is the difference between json and jsonb?').contrastOf).toEqual(['json', 'jsonb']);
    expect(questionKeyTerms('What does the checkpoint_timeout parameter control?')).toEqual(['checkpoint_timeout', 'parameter']);
    expect(questionKeyTerms('How does access control work?')).toEqual(['access', 'control']);
  });
});

describe("the README's example question", () => {
  it('"How long should I flush a new Halcyon X3 cartridge?" quotes the five full minutes', () => {
    const passages = fixturePassages();
    const text = composeExtractiveAnswer('How long should I flush a new Halcyon X3 cartridge?', passages);
    const n = passages.find((p) => p.text.includes('five full minutes'))?.n;
    expect(text).toContain(`let the water run for **five full minutes** (about 9 litres) before drinking [${n}].`);
  });
});
