import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConflictError } from '../../../src/core/errors.ts';
import type { LoggedResponse } from '../../../src/export/format.ts';
import { logSnapshot, planPreference, selectResponses } from '../../../src/export/select.ts';
import type { ExportFilters, PreferenceRow, SelectionStats } from '../../../src/export/select.ts';
import { LogFixture, SOURCES, templateHash } from './log-fixture.ts';
import type { Logged } from './log-fixture.ts';

let fx: LogFixture;
let rows: Record<string, Logged>;

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function select(filters: ExportFilters, pageRows = 3): Promise<{ got: LoggedResponse[]; stats: SelectionStats }> {
  const stats: SelectionStats = { matched: 0, excludedByStatus: { error: 0, cancelled: 0 } };
  const got = await collect(selectResponses(fx.store, { filters, snapshotSeq: (await logSnapshot(fx.store)).snapshotSeq, pageRows }, stats));
  return { got, stats };
}
const names = (got: LoggedResponse[]): string[] => got.map((r) => Object.entries(rows).find(([, l]) => l.id === r.id)?.[0] ?? '?');

beforeEach(() => {
  fx = LogFixture.create();
  const a = fx.conversation('ann');
  const b = fx.conversation('bob');
  rows = {};
  rows.a1 = fx.respond({ conversation: a, query: 'reset?', answer: 'Hold ten seconds.', createdAt: '2025-03-01T10:00:00.000Z' });
  rows.a2 = fx.respond({ conversation: a, query: 'E-417?', answer: 'Pump.', sources: [SOURCES.e417!], createdAt: '2025-03-02T10:00:00.000Z' });
  rows.b1 = fx.respond({ conversation: b, query: 'flash?', answer: 'kestrelctl flash.', collection: 'cli', modelBackend: 'openai', modelId: 'qwen2.5-7b', createdAt: '2025-03-03T10:00:00.000Z' });
  rows.b2 = fx.respond({ conversation: b, query: 'ferry?', answer: null, status: 'error', createdAt: '2025-03-04T10:00:00.000Z' });
  rows.b3 = fx.respond({ conversation: b, query: 'ferry again?', answer: 'The ferry lea', status: 'cancelled', createdAt: '2025-03-05T10:00:00.000Z' });
  rows.b4 = fx.respond({ conversation: b, query: 'winter?', answer: '07:15.', promptName: 'answer-v2', collection: null, createdAt: '2025-03-06T10:00:00.000Z' });
  rows.a3 = fx.respond({ conversation: a, query: 'seal?', answer: 'Check it.', createdAt: '2025-03-07T10:00:00.000Z' });
  fx.feedback(rows.a1, 1);
  fx.feedback(rows.a2, -1);
  fx.feedback(rows.b1, -1);
  fx.feedback(rows.b1, -1, 'Run kestrelctl flash --recovery.');
  // Append-only: the latest row is the current rating.
  fx.feedback(rows.a3, 1);
  fx.feedback(rows.a3, -1);
});

afterEach(() => fx.remove());

describe('selectResponses', () => {
  it('streams every ok row in log order across pages, with the current feedback', async () => {
    const { got, stats } = await select({}, 2);
    expect(names(got)).toEqual(['a1', 'a2', 'b1', 'b4', 'a3']);
    expect(stats).toEqual({ matched: 7, excludedByStatus: { error: 1, cancelled: 1 } });
    const byName = Object.fromEntries(names(got).map((n, i) => [n, got[i]]));
    expect(byName.a1?.rating).toBe(1);
    expect(byName.b1).toMatchObject({ rating: -1, correction: 'Run kestrelctl flash --recovery.' });
    expect(byName.a3).toMatchObject({ rating: -1, correction: null });
    expect(byName.b4).toMatchObject({ rating: null, turnIndex: 3, promptName: 'answer-v2' });
  });

  it('includes errored and cancelled rows on request', async () => {
    const { got, stats } = await select({ includeErrors: true });
    expect(names(got)).toEqual(['a1', 'a2', 'b1', 'b2', 'b3', 'b4', 'a3']);
    expect(stats.excludedByStatus).toEqual({ error: 0, cancelled: 0 });
    expect(got.find((r) => r.status === 'cancelled')?.answer).toBe('The ferry lea');
  });

  it('filters by time: --since inclusive, --until exclusive', async () => {
    expect(names((await select({ since: '2025-03-02T10:00:00.000Z', until: '2025-03-06T10:00:00.000Z' })).got)).toEqual(['a2', 'b1']);
    expect(names((await select({ since: '2025-03-06T10:00:00.000Z' })).got)).toEqual(['b4', 'a3']);
  });

  it('filters by effective rating (a correction counts +1, unrated 0)', async () => {
    expect(names((await select({ minRating: 1 })).got)).toEqual(['a1', 'b1']);
    expect(names((await select({ minRating: 0 })).got)).toEqual(['a1', 'b1', 'b4']);
    expect(names((await select({ minRating: -1 })).got)).toEqual(['a1', 'a2', 'b1', 'b4', 'a3']);
  });

  it('filters by collection, model and prompt (name, hash, hash prefix)', async () => {
    expect(names((await select({ collection: 'cli' })).got)).toEqual(['b1']);
    expect(names((await select({ collection: 'manuals' })).got)).toEqual(['a1', 'a2', 'a3']);
    expect(names((await select({ model: 'qwen2.5-7b' })).got)).toEqual(['b1']);
    expect(names((await select({ model: 'openai:qwen2.5-7b' })).got)).toEqual(['b1']);
    expect(names((await select({ model: 'extractive:qwen2.5-7b' })).got)).toEqual([]);
    expect(names((await select({ prompt: 'answer-v2' })).got)).toEqual(['b4']);
    const hash = templateHash('answer-v2');
    expect(names((await select({ prompt: hash })).got)).toEqual(['b4']);
    expect(names((await select({ prompt: hash.slice(0, 10).toUpperCase() })).got)).toEqual(['b4']);
    // Shorter than 8 hex digits: only a template name.
    expect(names((await select({ prompt: hash.slice(0, 6) })).got)).toEqual([]);
  });

  it('reads only up to the snapshot taken at the start', async () => {
    const snapshotSeq = (await logSnapshot(fx.store)).snapshotSeq;
    fx.respond({ conversation: rows.a1!.conversationId, query: 'later', answer: 'later answer' });
    const stats: SelectionStats = { matched: 0, excludedByStatus: { error: 0, cancelled: 0 } };
    const got = await collect(selectResponses(fx.store, { filters: {}, snapshotSeq, pageRows: 2 }, stats));
    expect(got.map((r) => r.query)).not.toContain('later');
    expect(got).toHaveLength(5);
  });
});

describe('preference selection', () => {
  it('pairs each rated-down answer with a rated-up answer to the identical prompt, round-robin', async () => {
    const c1 = fx.conversation('cat');
    const c2 = fx.conversation('dan');
    const c3 = fx.conversation('eve');
    const same = [
      { role: 'system', content: 'sys' },
      { role: 'user', content: 'Sources: [1] ...\n\nQuestion: What is E-417?' },
    ];
    const up1 = fx.respond({ conversation: c1, query: 'What is E-417?', answer: 'Coolant pressure [1].', renderedMessages: same });
    const down1 = fx.respond({ conversation: c2, query: 'What is E-417?', answer: 'No idea.', renderedMessages: same });
    const down2 = fx.respond({ conversation: c3, query: 'What is E-417?', answer: 'Ask support.', renderedMessages: same });
    // Same messages, different JSON spelling: still the same prompt.
    const down3 = fx.respond({ conversation: c3, query: 'What is E-417?', answer: 'Unknown.', renderedPromptJson: JSON.stringify(same, null, 1) });
    fx.feedback(up1, 1);
    fx.feedback(down1, -1);
    fx.feedback(down2, -1);
    fx.feedback(down3, -1);
    const selection = await planPreference(fx.store, { filters: {}, snapshotSeq: (await logSnapshot(fx.store)).snapshotSeq });
    // Rated: a1(+1) a2(-1) b1(-1) a3(-1) up1 down1 down2 down3 = 8; pairs: down1..3 each with up1.
    expect(selection.plan).toEqual({ rated: 8, ratings: { up: 2, down: 6 }, excludedByStatus: { error: 0, cancelled: 0 }, plannedRatingPairs: 3 });
    // One plan at a time per connection.
    await expect(planPreference(fx.store, { filters: {}, snapshotSeq: 0 })).rejects.toBeInstanceOf(ConflictError);
    let streamed: PreferenceRow[];
    try {
      streamed = await collect(selection.rows({ pageRows: 2 }));
    } finally {
      await selection.close();
    }
    expect(streamed.map((r) => r.down.id)).toEqual([rows.a2!.id, rows.b1!.id, rows.a3!.id, down1.id, down2.id, down3.id]);
    for (const r of streamed.slice(3)) expect(r.up?.id).toBe(up1.id);
    for (const r of streamed.slice(0, 3)) expect(r.up).toBeNull();
  });
});
