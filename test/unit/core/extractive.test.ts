import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { finalizeCitations } from '../../../src/chat/citations.ts';
import { CancelledError } from '../../../src/core/errors.ts';
import {
  EXTRACTIVE_MAX_SENTENCES,
  EXTRACTIVE_NOTE,
  EXTRACTIVE_NOTHING_FOUND,
  ExtractiveChatModel,
  composeExtractiveAnswer,
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
