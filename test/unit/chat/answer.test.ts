/**
 * answerTurn around its dependencies: real SQLite (temp dir), the real prompt template, the real
 * extractive model behind the real GenerationQueue; a hand-written retriever returning chosen chunks
 * (retrieval itself is tested in retrieve.test.ts) and a hand-written feature reader.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/core/config.ts';
import { loadConfig } from '../../../src/core/config.ts';
import type { SqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { openSqliteStore } from '../../../src/core/store/sqlite/index.ts';
import { CancelledError, ContextOverflowError, NotFoundError, UpstreamError } from '../../../src/core/errors.ts';
import { ExtractiveChatModel } from '../../../src/core/llm/extractive.ts';
import { PromptStore } from '../../../src/core/prompts.ts';
import type { AnswerDeps } from '../../../src/chat/answer.ts';
import { answerTurn, promptTokens } from '../../../src/chat/answer.ts';
import type { Logger } from '../../../src/chat/log.ts';
import { ChatMetrics } from '../../../src/chat/metrics.ts';
import { GenerationQueue } from '../../../src/chat/queue.ts';
import type { RetrieveRequest, RetrievedChunk, Retriever, RetrieveResult } from '../../../src/chat/types.ts';
import type { User } from '../../../src/chat/users.ts';
import { createUser, eraseUser } from '../../../src/chat/users.ts';

function chunk(i: number, words: number): RetrievedChunk {
  return {
    chunkId: 100 + i,
    documentId: 10 + i,
    collection: 'default',
    source: `/docs/doc${i}.md`,
    title: `Doc ${i}`,
    headingPath: `Section ${i}`,
    text: `Passage ${i} says the Halcyon filter lasts six months. ` + 'filler '.repeat(words),
    contentSha256: `sha${i}`,
    score: 1 / (i + 1),
    bm25Rank: i + 1,
    denseRank: null,
  };
}

class ListRetriever implements Retriever {
  calls: RetrieveRequest[] = [];
  constructor(
    private readonly chunks: RetrievedChunk[],
    private readonly fail: Error | null = null,
  ) {}
  async retrieve(req: RetrieveRequest): Promise<RetrieveResult> {
    this.calls.push(req);
    if (this.fail) throw this.fail;
    return {
      chunks: this.chunks.slice(0, req.topK),
      mode: 'hybrid',
      queryVector: new Float32Array([0.5, 0.25]),
      timings: { embed_ms: 1, bm25_ms: 1, dense_ms: 1, fuse_ms: 1 },
    };
  }
}

describe('answerTurn', () => {
  let store: SqliteStore;
  /** Probe handle on the same file (reads only). */
  let db: Database.Database;
  let user: User;
  let model: ExtractiveChatModel;
  let warnings: Array<[string, Record<string, unknown> | undefined]>;
  const logger: Logger = { info: () => {}, warn: (m, f) => warnings.push([m, f]), error: () => {} };

  beforeEach(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-'));
    store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
    db = new Database(store.file);
    model = new ExtractiveChatModel();
    warnings = [];
  });
  beforeEach(async () => {
    user = (await createUser(store, { name: 'uma' })).user;
  });
  afterEach(async () => {
    db.close();
    await store.close();
  });

  function deps(retriever: Retriever, env: Record<string, string> = {}, extra: Partial<AnswerDeps> = {}): AnswerDeps & { config: Config } {
    const config = loadConfig({ MNEME_DATA_DIR: path.dirname(store.file), ...env });
    return {
      store,
      retriever,
      model,
      generator: new GenerationQueue({ model, maxQueued: 4 }),
      prompt: PromptStore.load().get('answer'),
      config,
      metrics: new ChatMetrics(),
      logger,
      ...extra,
    };
  }
  const input = (message: string, more: Record<string, unknown> = {}) => ({ user, endpoint: 'chat' as const, message, topK: 5, request: { message }, ...more });
  const rows = () => db.prepare('SELECT * FROM responses ORDER BY seq').all() as Array<Record<string, any>>;

  it('drops the lowest-ranked chunks that do not fit the context budget, and logs which', async () => {
    const chunks = [0, 1, 2, 3, 4].map((i) => chunk(i, 150));
    const d = deps(new ListRetriever(chunks), { MNEME_LLM_CONTEXT_TOKENS: '1400', MNEME_LLM_MAX_TOKENS: '256' });
    const a = await answerTurn(d, input('How long does the Halcyon filter last?'), { signal: new AbortController().signal });
    const row = rows()[0]!;
    const logged = JSON.parse(row.retrieved_json) as Array<{ chunk_id: number; in_context: boolean }>;
    const kept = logged.filter((c) => c.in_context).length;
    expect(logged.map((c) => c.chunk_id)).toEqual(chunks.map((c) => c.chunkId));
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(5);
    // A prefix: passage numbers never change.
    expect(logged.map((c) => c.in_context)).toEqual(logged.map((_, i) => i < kept));
    const rendered = JSON.parse(row.rendered_prompt_json) as Array<{ role: 'system' | 'user'; content: string }>;
    expect(promptTokens(rendered, (t) => model.countTokens(t))).toBeLessThanOrEqual(1400 - 256);
    expect(rendered[1]!.content).toContain(`[${kept}] Doc ${kept - 1}`);
    expect(rendered[1]!.content).not.toContain(`[${kept + 1}]`);
    expect(warnings).toEqual([['context budget: dropped retrieved chunks', expect.objectContaining({ dropped_chunk_ids: chunks.slice(kept).map((c) => c.chunkId) })]]);
    expect(await d.metrics!.contextDropped.get()).toBe(5 - kept);
    // Citations only point into what the model saw.
    for (const c of a.citations) expect(c.n).toBeLessThanOrEqual(kept);
  });

  it('drops the oldest history first when the question and history do not fit', async () => {
    const long = 'word '.repeat(300);
    const history = [
      { role: 'user' as const, content: `oldest ${long}` },
      { role: 'assistant' as const, content: `old answer ${long}` },
      { role: 'user' as const, content: 'recent question' },
      { role: 'assistant' as const, content: 'recent answer' },
    ];
    const d = deps(new ListRetriever([chunk(0, 5)]), { MNEME_LLM_CONTEXT_TOKENS: '900', MNEME_LLM_MAX_TOKENS: '256' });
    await answerTurn(d, input('And then?', { history }), { signal: new AbortController().signal });
    const row = rows()[0]!;
    const used = JSON.parse(row.history_json) as Array<{ content: string }>;
    expect(used.map((m) => m.content)).toEqual(['recent question', 'recent answer']);
    expect(row.rendered_prompt_json).toContain('User: recent question');
    expect(row.rendered_prompt_json).not.toContain('oldest');
  });

  it('a question that cannot fit the window is a ContextOverflowError, logged as an error row', async () => {
    const d = deps(new ListRetriever([chunk(0, 5)]), { MNEME_LLM_CONTEXT_TOKENS: '600', MNEME_LLM_MAX_TOKENS: '256' });
    await expect(answerTurn(d, input('why '.repeat(400)), { signal: new AbortController().signal })).rejects.toBeInstanceOf(ContextOverflowError);
    expect(rows()).toEqual([expect.objectContaining({ status: 'error', error_code: 'context_overflow', answer: null })]);
  });

  it('writes exactly one row whatever fails: retrieval error, cancellation, upstream error', async () => {
    const failing = deps(new ListRetriever([], new UpstreamError('index exploded')));
    await expect(answerTurn(failing, input('q1'), { signal: new AbortController().signal })).rejects.toThrow('index exploded');
    const aborted = new AbortController();
    aborted.abort();
    await expect(answerTurn(deps(new ListRetriever([chunk(0, 5)])), input('q2'), { signal: aborted.signal })).rejects.toBeInstanceOf(CancelledError);
    const generator = { run: async () => Promise.reject(new UpstreamError('llm down')) };
    await expect(answerTurn(deps(new ListRetriever([chunk(0, 5)]), {}, { generator }), input('q3'), { signal: new AbortController().signal })).rejects.toThrow('llm down');
    expect(rows().map((r) => [r.query, r.status, r.error_code])).toEqual([
      ['q1', 'error', 'upstream_error'],
      ['q2', 'cancelled', 'cancelled'],
      ['q3', 'error', 'upstream_error'],
    ]);
    // No transcript messages for failed turns: they must not become history.
    expect(db.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
  });

  it('an abort that lands while generating counts as cancelled even if the backend finishes', async () => {
    const controller = new AbortController();
    const generator = {
      run: async () => {
        controller.abort();
        return { text: 'done anyway [1]', promptTokens: 1, completionTokens: 3, finishReason: 'stop' as const };
      },
    };
    await expect(answerTurn(deps(new ListRetriever([chunk(0, 5)]), {}, { generator }), input('q'), { signal: controller.signal })).rejects.toBeInstanceOf(CancelledError);
    expect(rows()[0]).toMatchObject({ status: 'cancelled' });
  });

  it('unknown or foreign conversation: NotFoundError and no row', async () => {
    const other = (await createUser(store, { name: 'vic' })).user;
    const d = deps(new ListRetriever([chunk(0, 5)]));
    const first = await answerTurn(d, { ...input('mine'), user: other }, { signal: new AbortController().signal });
    await expect(answerTurn(d, input('x', { conversationId: first.conversation_id }), { signal: new AbortController().signal })).rejects.toBeInstanceOf(NotFoundError);
    await expect(answerTurn(d, input('x', { conversationId: 'conv_missing' }), { signal: new AbortController().signal })).rejects.toBeInstanceOf(NotFoundError);
    expect(rows()).toHaveLength(1);
  });

  it('reads online features, personalizes retrieval and the prompt, and logs both feature kinds', async () => {
    const retriever = new ListRetriever([chunk(0, 5)]);
    const values = { engaged_documents: [10], top_collections: ['manuals'], preferred_answer_length: 80, messages_total: 12 };
    const d = deps(retriever, { MNEME_PERSONALIZATION_WEIGHT: '0.7' }, { features: { getOnlineFeatures: async (id) => (id === user.id ? values : {}) } });
    await answerTurn(d, input('How long does the filter last?'), { signal: new AbortController().signal });
    expect(retriever.calls[0]!.personalization).toMatchObject({ weight: 0.7, engagedDocuments: [10], topCollections: ['manuals'] });
    const row = rows()[0]!;
    const features = JSON.parse(row.features_json);
    expect(features.precomputed).toEqual(values);
    expect(features.on_demand).toMatchObject({ turn_index: 0, is_follow_up: 0, question_tokens: expect.any(Number) });
    expect(JSON.parse(row.rendered_prompt_json)[0].content).toContain('Preferred answer length: short (about 80 words).');
    expect(Array.from(new Float32Array(new Uint8Array(row.query_vector).buffer))).toEqual([0.5, 0.25]);

    // A failing feature store degrades to no personalization instead of failing the answer.
    const broken = deps(new ListRetriever([chunk(0, 5)]), {}, {
      features: {
        getOnlineFeatures: async () => {
          throw new Error('disk on fire');
        },
      },
    });
    const a = await answerTurn(broken, input('again'), { signal: new AbortController().signal });
    expect(a.answer.length).toBeGreaterThan(0);
    expect(warnings.some(([m]) => m.startsWith('feature store read failed'))).toBe(true);
  });

  it('a user erased while their answer runs: the log row is dropped on purpose and counted, nothing of theirs is written', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const generating = new Promise<void>((r) => (started = r));
    const generator = {
      run: async () => {
        started();
        await held;
        return { text: 'The filter lasts six months [1].', promptTokens: 1, completionTokens: 6, finishReason: 'stop' as const };
      },
    };
    const d = deps(new ListRetriever([chunk(0, 5)]), {}, { generator });
    const pending = answerTurn(d, input('How long does the filter last?'), { signal: new AbortController().signal });
    await generating;
    expect(await eraseUser(store, user.id)).toMatchObject({ users: 1 });
    release();
    const a = await pending;
    expect(a.answer).toContain('six months');
    expect(db.prepare('SELECT count(*) FROM responses').pluck().get()).toBe(0);
    expect(db.prepare('SELECT count(*) FROM conversations').pluck().get()).toBe(0);
    expect(db.prepare('SELECT count(*) FROM messages').pluck().get()).toBe(0);
    expect(await d.metrics!.logRowsDropped.get({ reason: 'user_erased' })).toBe(1);
    expect(await d.metrics!.render()).toMatch(/^mneme_log_rows_dropped_total\{reason="user_erased"\} 1$/m);

    // A new user who got the erased user's id is not the erased user: a stale row is still dropped.
    const again = (await createUser(store, { name: 'uma2' })).user;
    expect(again.id).toBe(user.id);
    const stale = deps(new ListRetriever([chunk(0, 5)]));
    await answerTurn(stale, input('late'), { signal: new AbortController().signal });
    expect(db.prepare('SELECT count(*) FROM responses').pluck().get()).toBe(0);
    await answerTurn(stale, { ...input('mine'), user: again }, { signal: new AbortController().signal });
    expect(db.prepare('SELECT user_id FROM responses').pluck().all()).toEqual([again.id]);
  });

  it('request content that cannot be serialized still gets its row (placeholders instead)', async () => {
    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 100_000; i++) deep = { x: deep };
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const request = { message: 'q', deep, cyclic, big: 10n };
    await answerTurn(deps(new ListRetriever([chunk(0, 5)])), input('q', { request }), { signal: new AbortController().signal });
    const row = rows()[0]!;
    expect(row.status).toBe('ok');
    const logged = JSON.parse(row.request_json);
    expect(logged.message).toBe('q');
    expect(logged.big).toBe('10');
    expect(logged.cyclic).toEqual({ a: 1, self: '[circular]' });
    expect(row.request_json).toContain('[too deeply nested]');
  });

  it('without a feature store there is no personalization at all', async () => {
    const retriever = new ListRetriever([chunk(0, 5)]);
    await answerTurn(deps(retriever), input('q'), { signal: new AbortController().signal });
    expect(retriever.calls[0]!.personalization).toBeUndefined();
    expect(JSON.parse(rows()[0]!.features_json).precomputed).toEqual({});
  });
});
