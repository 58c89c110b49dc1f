import { describe, expect, it } from 'vitest';
import { SNIPPET_MAX_CHARS, bestSnippet, displaySource, finalizeCitations, pageOf, relevanceLabel } from '../../../src/chat/citations.ts';
import type { RetrievedChunk } from '../../../src/chat/types.ts';

function chunk(id: number, text: string): RetrievedChunk {
  return {
    chunkId: id,
    documentId: 10 * id,
    collection: 'default',
    source: `/docs/d${id}.md`,
    title: `Title ${id}`,
    headingPath: '',
    text,
    contentSha256: 'h'.repeat(64),
    score: 0.5 / id,
    bm25Rank: id,
    denseRank: id,
  };
}

const HALCYON =
  'The Halcyon X3 is an under-sink purifier. The serial number is printed on the silver label behind the filter door. ' +
  'It starts with the letters HX3-.';
const FERRY = 'Route A crosses in 55 minutes. Vehicles must check in 30 minutes before departure. Bicycles travel free.';
const KESTREL = 'kestrelctl sync pushes the local state. Use --dry-run to preview changes without applying them.';
const CHUNKS = [chunk(1, HALCYON), chunk(2, FERRY), chunk(3, KESTREL)];

describe('finalizeCitations', () => {
  it('maps [n] to chunks[n-1] and renumbers the cited chunks 1..k in order of first citation', () => {
    const answer = 'Vehicles check in 30 minutes early [2]. The serial number is on the silver label [1]. Again [2].';
    const r = finalizeCitations(answer, CHUNKS);
    expect(r.answer).toBe('Vehicles check in 30 minutes early [1]. The serial number is on the silver label [2]. Again [1].');
    expect(r.citations.map((c) => c.n)).toEqual([1, 2]);
    expect(r.citations[0]).toMatchObject({ n: 1, chunk_id: 2, chunk_ids: [2], document_id: 20, source: 'docs/d2.md', title: 'Title 2', score: 0.25, relevance: 'medium', page: null });
    expect(r.citations[1]).toMatchObject({ n: 2, chunk_id: 1, document_id: 10, relevance: 'high' });
  });

  it('numbers without gaps: an answer citing [5] and [6] shows 1 and 2', () => {
    const six = [1, 2, 3, 4, 5, 6].map((i) => chunk(i, `Passage ${i} says something about topic ${i}.`));
    const r = finalizeCitations('First claim [5]. Second claim [6]. Both [5, 6].', six);
    expect(r.answer).toBe('First claim [1]. Second claim [2]. Both [1, 2].');
    expect(r.citations.map((c) => [c.n, c.chunk_id])).toEqual([[1, 5], [2, 6]]);
  });

  it('merges chunks of one document section into one citation, and rewrites the markers', () => {
    const same = (id: number, text: string): RetrievedChunk => ({ ...chunk(id, text), documentId: 7, source: '/srv/pg/html/indexes-partial.html', title: '11.8. Partial Indexes', headingPath: '11.8. Partial Indexes' });
    const chunks = [same(1, 'A partial index is built over a subset of a table.'), chunk(2, FERRY), same(3, 'The predicate chooses the rows.'), same(4, 'Partial indexes avoid common values.')];
    const r = finalizeCitations('Subset [1]. Predicate [3]. Ferry [2]. Values [4][1]. Both [3, 2].', chunks);
    expect(r.citations).toHaveLength(2);
    expect(r.citations[0]).toMatchObject({ n: 1, chunk_id: 1, chunk_ids: [1, 3, 4], title: '11.8. Partial Indexes', source: 'pg/html/indexes-partial.html', heading: '11.8. Partial Indexes' });
    expect(r.answer).toBe('Subset [1]. Predicate [1]. Ferry [2]. Values [1]. Both [1, 2].');
    // Another heading of the same document is another citation.
    const other = { ...same(5, 'Examples of partial indexes.'), headingPath: '11.8. Partial Indexes > Examples' };
    expect(finalizeCitations('A [1]. B [2].', [same(1, 'x y z.'), other]).citations.map((c) => c.chunk_id)).toEqual([1, 5]);
  });

  it('labels relevance from the score relative to the best retrieved chunk, and reads PDF pages', () => {
    expect([relevanceLabel(1, 1), relevanceLabel(0.75, 1), relevanceLabel(0.5, 1), relevanceLabel(0.39, 1), relevanceLabel(1, 0)]).toEqual(['high', 'high', 'medium', 'low', 'low']);
    expect(pageOf('/a/report.pdf', 'Results > page 3')).toBe(3);
    expect(pageOf('/a/report.PDF', 'page 12')).toBe(12);
    expect(pageOf('/a/notes.md', 'page 3')).toBeNull();
    expect(pageOf('/a/report.pdf', 'Results')).toBeNull();
  });

  it('understands [1, 2], [1;3], [1][2] and [1-3] forms', () => {
    const ids = (a: string) => finalizeCitations(a, CHUNKS).citations.map((c) => c.chunk_id);
    expect(ids('A claim [1, 3].')).toEqual([1, 3]);
    expect(ids('A claim [3;1].')).toEqual([3, 1]);
    expect(ids('A claim [2][1].')).toEqual([2, 1]);
    expect(ids('A claim [1-3].')).toEqual([1, 2, 3]);
    expect(ids('A claim [2–3].')).toEqual([2, 3]);
    expect(finalizeCitations('A claim [3;1].', CHUNKS).answer).toBe('A claim [1, 2].');
    expect(finalizeCitations('A claim [2][1].', CHUNKS).answer).toBe('A claim [1][2].');
  });

  it('removes markers pointing nowhere and tidies the spacing', () => {
    expect(finalizeCitations('Claim one [7]. Claim two [0] and more [2].', CHUNKS)).toMatchObject({ answer: 'Claim one. Claim two and more [1].' });
    expect(finalizeCitations('Claim[9] here.', CHUNKS).answer).toBe('Claim here.');
    expect(finalizeCitations('Claim [9][1].', CHUNKS).answer).toBe('Claim [1].');
    expect(finalizeCitations('End [4]', CHUNKS).answer).toBe('End');
    const r = finalizeCitations('Mixed [1, 9] and range [2-5].', CHUNKS);
    expect(r.answer).toBe('Mixed [1] and range [2, 3].');
    expect(r.citations.map((c) => c.n)).toEqual([1, 2, 3]);
    expect(finalizeCitations('Claim one [7]. Claim two [0] and more [2].', CHUNKS).citations.map((c) => [c.n, c.chunk_id])).toEqual([[1, 2]]);
    expect(finalizeCitations('Huge range [1-9999].', CHUNKS).answer).toBe('Huge range.');
  });

  it('cites nothing (and changes nothing) for an answer without markers, and for no chunks', () => {
    expect(finalizeCitations('The documents do not cover this.', CHUNKS)).toEqual({ answer: 'The documents do not cover this.', citations: [] });
    expect(finalizeCitations('It is [1].', [])).toEqual({ answer: 'It is.', citations: [] });
    expect(finalizeCitations('', CHUNKS)).toEqual({ answer: '', citations: [] });
  });

  it('leaves code, array indexes in code and markdown links alone', () => {
    const answer = 'Run `arr[5]` or see [1](https://x.org) and\n```\nx = y[4]\n```\nDone [2].';
    const r = finalizeCitations(answer, CHUNKS);
    expect(r.answer).toBe(answer.replace('Done [2]', 'Done [1]'));
    expect(r.citations.map((c) => [c.n, c.chunk_id])).toEqual([[1, 2]]);
  });

  it('drops an unfinished marker at the end of a truncated (streamed) answer', () => {
    expect(finalizeCitations('Check in early [2', CHUNKS).answer).toBe('Check in early');
    expect(finalizeCitations('Check in early [2, ', CHUNKS).answer).toBe('Check in early');
    expect(finalizeCitations('Check in early [', CHUNKS).answer).toBe('Check in early');
    const r = finalizeCitations('Check in early [2] and [1', CHUNKS);
    expect(r.answer).toBe('Check in early [1] and');
    expect(r.citations.map((c) => [c.n, c.chunk_id])).toEqual([[1, 2]]);
  });

  it('picks the snippet sentence sharing most words with the citing sentence', () => {
    const r = finalizeCitations('The serial number is on the silver label [1]. Bicycles are free [2].', CHUNKS);
    expect(r.citations[0]?.snippet).toContain('The serial number is printed on the silver label behind the filter door.');
    expect(r.citations[0]?.snippet).not.toContain('under-sink');
    expect(r.citations[1]?.snippet).toBe('Bicycles travel free.');
  });

  it('uses the claim after the marker when the marker opens the sentence', () => {
    const r = finalizeCitations('[3] Use the dry-run option to preview changes.', CHUNKS);
    expect(r.citations[0]?.snippet).toContain('--dry-run to preview changes');
  });

  it('falls back to the chunk start, and bounds every snippet', () => {
    const r = finalizeCitations('Totally unrelated words [2].', CHUNKS);
    expect(r.citations[0]?.snippet).toBe(FERRY);
    const long = chunk(1, `${'Lorem ipsum dolor sit amet '.repeat(30)}.`);
    const s = finalizeCitations('Unrelated claim [1].', [long]).citations[0]?.snippet ?? '';
    expect(s.length).toBeLessThanOrEqual(SNIPPET_MAX_CHARS);
    expect(s.endsWith('…')).toBe(true);
    expect(long.text.startsWith(s.slice(0, -1).trim())).toBe(true);
  });
});

describe('bestSnippet', () => {
  it('prefers the sentence matching the first citing sentence when a chunk is cited twice', () => {
    const text = `The lamp glows teal when ready. ${'Filler words that match nothing at all here. '.repeat(6)}The collet clicks when the tubing holds.`;
    expect(bestSnippet(text, ['The lamp glows teal.', 'The collet clicks when the tubing holds.'])).toBe('The lamp glows teal when ready.');
    expect(bestSnippet(text, ['The collet clicks when the tubing holds.', 'The lamp glows teal.'])).toBe('The collet clicks when the tubing holds.');
  });

  it('extends the best sentence with neighbours that also match, within the limit', () => {
    const text = 'Intro about nothing. The ferry leaves at noon. The ferry returns at six. Unrelated closing words.';
    expect(bestSnippet(text, 'When does the ferry leave and return?')).toBe('The ferry leaves at noon. The ferry returns at six.');
    expect(bestSnippet(text, 'When does the ferry leave and return?', 30)).toBe('The ferry leaves at noon.');
  });

  it('cuts an over-long best sentence at a word boundary with an ellipsis', () => {
    const sentence = `Gardening on Vexmoor ${'needs patience and '.repeat(30)}water.`;
    const s = bestSnippet(sentence, 'Vexmoor gardening');
    expect(s.length).toBeLessThanOrEqual(SNIPPET_MAX_CHARS);
    expect(s.startsWith('Gardening on Vexmoor needs')).toBe(true);
    expect(s.endsWith('…')).toBe(true);
  });
});

describe('displaySource', () => {
  it('shows a file by its last 3 path segments, never the absolute path; URLs as they are', () => {
    expect(displaySource('/home/alice/corp/docs/manuals/x3.md')).toBe('docs/manuals/x3.md');
    expect(displaySource('/x3.md')).toBe('x3.md');
    expect(displaySource('file:///srv/data/docs/a/b.pdf')).toBe('docs/a/b.pdf');
    expect(displaySource('C:\\Users\\bob\\docs\\guide.txt')).toBe('bob/docs/guide.txt');
    expect(displaySource('https://example.com/docs/page?x=1')).toBe('https://example.com/docs/page?x=1');
  });
});
