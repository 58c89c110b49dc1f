/**
 * Releases on a real server (issue 15): the initial release on the first start, `release` on every
 * /v1/chat and /v1/chat/completions response and on every log row, the admin buttons, and promote /
 * rollback under load (20 clients, bounded): no non-2xx, every row carries the release that
 * answered it (its prompt hash and top_k are that release's), answers in flight finish on the
 * release they started with. Plus the CLI: creation refused for a missing part, list/diff, and the
 * regression gate (refuses a worse candidate; --force promotes and is audited).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelease } from '../../src/chat/releases.ts';
import { main } from '../../src/cli.ts';
import { PROMPTS_DIR } from '../../src/core/prompts.ts';
import type { FakeLlm, TestServer } from './http-helpers.ts';
import { authHeaders, bufferIo, ingestFixtures, postJson, startFakeLlm, startTestServer, tempDir, testEnv } from './http-helpers.ts';

/** Length of the load phase, in ms (bounded: the changes happen inside it). */
const LOAD_MS = 12_000;
const CLIENTS = 20;
const QUESTIONS = [
  'Which part number is the Halcyon X3 filter cartridge?',
  'How long should a new cartridge be flushed?',
  'What does kestrelctl do?',
  'How does OrbiSync resolve conflicts?',
  'When does the Tidewater ferry leave on Sundays?',
  'What grows in Vexmoor lunar gardens?',
];

/** A copy of prompts/answer.md with one more instruction: another template hash. */
function variantPromptFile(dir: string): string {
  const file = path.join(dir, 'answer.md');
  const text = fs.readFileSync(path.join(PROMPTS_DIR, 'answer.md'), 'utf8').replace('## system\n', '## system\nAnswer in one short paragraph.\n');
  fs.writeFileSync(file, text);
  return file;
}

async function waitUntil(fn: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function run(env: Record<string, string>, ...args: string[]): Promise<{ code: number; out: string; err: string; json: any }> {
  const io = bufferIo(env);
  const code = await main(['releases', ...args], io);
  const last = io.out().trim().split('\n').pop() ?? '';
  let json: unknown;
  try {
    json = JSON.parse(last);
  } catch {
    json = undefined;
  }
  return { code, out: io.out(), err: io.err(), json };
}

describe('releases on a running server', () => {
  let srv: TestServer;
  let llm: FakeLlm;
  let env: Record<string, string>;
  let admin: string;
  beforeAll(async () => {
    // A slow-ish LLM (15 ms per word, ~20 words) so answers overlap the release changes.
    llm = await startFakeLlm({ kind: 'answer', text: `${'word '.repeat(19)}done [1].`, tokenDelayMs: 15 });
    env = testEnv(tempDir(), { MNEME_LLM: `openai:${llm.url}`, MNEME_LLM_MODEL: 'fake' });
    await ingestFixtures(env);
    srv = await startTestServer(env);
    admin = await srv.key('root', true);
  }, 120_000);
  afterAll(async () => {
    await srv?.stop();
    await llm?.close();
  });

  it('the first start created the live release "initial" from the configuration; responses and log rows name it', async () => {
    const list = await run(env, 'list', '--json');
    expect(list.code).toBe(0);
    expect(list.json).toEqual([
      expect.objectContaining({ name: 'initial', state: 'live', created_by: 'system', created_at: expect.any(String), parts: expect.objectContaining({ llm: expect.objectContaining({ spec: `openai:${llm.url}` }) }) }),
    ]);
    const key = await srv.key('first');
    const chat = await postJson(`${srv.url}/v1/chat`, key, { message: QUESTIONS[0] });
    expect(chat.status).toBe(200);
    expect(chat.body.release).toBe('initial');
    expect(chat.headers.get('mneme-release')).toBe('initial');
    const comp = await postJson(`${srv.url}/v1/chat/completions`, key, { messages: [{ role: 'user', content: QUESTIONS[1] }] });
    expect(comp.status).toBe(200);
    expect(comp.body.release).toBe('initial');
    expect(comp.body.mneme.release).toBe('initial');
    const rows = srv.db.prepare('SELECT release, arm FROM responses WHERE id IN (?, ?)').all(chat.body.id, comp.body.id);
    expect(rows).toEqual([{ release: 'initial', arm: 'live' }, { release: 'initial', arm: 'live' }]);
    // Streams say it too: the SSE done event and every completion chunk.
    const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: authHeaders(key), body: JSON.stringify({ stream: true, messages: [{ role: 'user', content: QUESTIONS[2] }] }) });
    const chunks = (await res.text()).split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)));
    expect(chunks.length).toBeGreaterThan(2);
    for (const c of chunks) expect(c.release).toBe('initial');
  });

  it('promote and rollback under load: no non-2xx, every row carries the release that answered it, in-flight answers finish on their release', async () => {
    const v2 = await createRelease(srv.deps.store, srv.config, { name: 'v2', promptFile: variantPromptFile(tempDir()), sets: ['retrieval.top_k=3'], actor: 'test' });
    const initial = (await srv.deps.store.releases.get('initial'))!;
    const expected: Record<string, { sha: string; topK: number }> = {
      initial: { sha: initial.parts.prompt.sha256, topK: initial.parts.retrieval.top_k },
      v2: { sha: v2.parts.prompt.sha256, topK: 3 },
    };
    expect(expected.initial!.sha).not.toBe(expected.v2!.sha);
    const keys = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => srv.key(`load${i}`)));
    const done: Array<{ id: string; release: string; status: number; t0: number; t1: number }> = [];
    const statuses = new Map<number, number>();
    const deadline = Date.now() + LOAD_MS;
    const client = async (c: number) => {
      for (let i = 0; Date.now() < deadline; i++) {
        const t0 = Date.now();
        const completions = (c + i) % 3 === 0;
        const r = completions
          ? await postJson(`${srv.url}/v1/chat/completions`, keys[c]!, { messages: [{ role: 'user', content: QUESTIONS[(c + i) % QUESTIONS.length] }] })
          : await postJson(`${srv.url}/v1/chat`, keys[c]!, { message: QUESTIONS[(c + i) % QUESTIONS.length] });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        done.push({ id: r.body?.id, release: r.body?.release, status: r.status, t0, t1: Date.now() });
      }
    };
    const changes: Array<{ what: string; before: number; after: number }> = [];
    const change = async (what: string, fn: () => Promise<unknown>) => {
      const before = Date.now();
      await fn();
      changes.push({ what, before, after: Date.now() });
    };
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const operator = async () => {
      await sleep(1500);
      // As the CLI would (another process writing the store): the server picks it up by polling.
      await change('canary', () => run(env, 'canary', 'v2', '--share', '50', '--reason', 'try v2'));
      await sleep(3000);
      await change('promote', async () => expect((await postJson(`${srv.url}/v1/admin/releases/promote`, admin, { reason: 'green' })).status).toBe(200));
      await sleep(3000);
      await change('rollback', async () => expect((await postJson(`${srv.url}/v1/admin/releases/rollback`, admin, { reason: 'red' })).status).toBe(200));
    };
    await Promise.all([...Array.from({ length: CLIENTS }, (_, c) => client(c)), operator()]);

    expect([...statuses.keys()]).toEqual([200]);
    // Enough answers to span the three changes (a loaded 2-core CI machine answers ~5–15 per second here).
    expect(done.length).toBeGreaterThanOrEqual(CLIENTS);
    const seen = new Set(done.map((d) => d.release));
    expect(seen).toEqual(new Set(['initial', 'v2']));
    const row = srv.db.prepare('SELECT release, arm, prompt_sha256, top_k FROM responses WHERE id = ?');
    for (const d of done) {
      const r = row.get(d.id) as { release: string; arm: string; prompt_sha256: string; top_k: number };
      expect(r.release, d.id).toBe(d.release);
      expect(r.prompt_sha256, d.id).toBe(expected[d.release]!.sha);
      expect(r.top_k, d.id).toBe(expected[d.release]!.topK);
    }
    // Between promote and rollback every new request is answered by v2; after the rollback by initial.
    const promote = changes.find((c) => c.what === 'promote')!;
    const rollback = changes.find((c) => c.what === 'rollback')!;
    const between = done.filter((d) => d.t0 > promote.after && d.t0 < rollback.before);
    // A few answers suffice to show the switch (a heavily loaded machine answered only 8 in this window).
    expect(between.length).toBeGreaterThanOrEqual(3);
    expect(new Set(between.map((d) => d.release))).toEqual(new Set(['v2']));
    const afterRollback = done.filter((d) => d.t0 > rollback.after);
    expect(afterRollback.length).toBeGreaterThanOrEqual(3);
    expect(new Set(afterRollback.map((d) => d.release))).toEqual(new Set(['initial']));
    // In flight across the rollback: started on v2, finished after initial was live again — still v2.
    const inFlight = done.filter((d) => d.t0 > promote.after && d.t0 < rollback.before && d.t1 > rollback.after);
    expect(inFlight.length).toBeGreaterThan(0);
    for (const d of inFlight) expect(d.release).toBe('v2');

    // Every change is an audit row: who, when, from, to, why.
    const events = (await srv.deps.store.releases.events(10)).map((e) => [e.action, e.from, e.to, e.actor.split(':')[0], e.reason]);
    expect(events.slice(0, 4)).toEqual([
      ['rollback', 'v2', 'initial', 'admin', 'red'],
      ['promote', 'initial', 'v2', 'admin', 'green'],
      ['canary', null, 'v2', 'cli', 'try v2'],
      ['create', null, 'v2', 'test', null],
    ]);
  }, 180_000);
});

describe('releases CLI', () => {
  let srv: TestServer;
  let env: Record<string, string>;
  beforeAll(async () => {
    env = testEnv(tempDir());
    await ingestFixtures(env);
    srv = await startTestServer(env);
  }, 120_000);
  afterAll(async () => {
    await srv?.stop();
  });

  it('create refuses a release whose parts are missing, with the reason; list, show and diff', async () => {
    const gone = await run(env, 'create', '--name', 'broken', '--prompt', '/nonexistent/answer.md');
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/prompt file \/nonexistent\/answer\.md does not exist/);
    const noModel = await run(env, 'create', '--name', 'broken', '--llm', 'gguf:/nonexistent/model.gguf');
    expect(noModel.code).toBe(1);
    expect(noModel.err).toMatch(/chat model file \/nonexistent\/model\.gguf does not exist/);
    const badSet = await run(env, 'create', '--name', 'broken', '--set', 'retrieval.top_k=0');
    expect(badSet.code).toBe(2);
    expect((await run(env, 'list', '--json')).json.map((r: { name: string }) => r.name)).toEqual(['initial']);

    const ok = await run(env, 'create', '--name', 'wide', '--set', 'retrieval.top_k=10', '--set', 'llm.temperature=0', '--json');
    expect(ok.code, ok.err).toBe(0);
    expect(ok.json).toMatchObject({ name: 'wide', state: 'draft', version: 2, parts: { retrieval: { top_k: 10 }, llm: { temperature: 0 } } });
    const diff = await run(env, 'diff', 'initial', 'wide', '--json');
    expect(diff.json.differences).toEqual([
      { key: 'llm.temperature', a: 0.2, b: 0 },
      { key: 'retrieval.top_k', a: 6, b: 10 },
    ]);
    const show = await run(env, 'show', 'wide');
    expect(show.out).toMatch(/retrieval {2}hybrid top_k 10/);
    expect((await run(env, 'show', 'nope')).code).toBe(1);
  });

  it('regression gate: a candidate with a worse retrieval setting is refused; --force promotes and is audited', async () => {
    // A log of rated answers: thumbs-up on answers of the live release (their cited chunks are relevant).
    const key = await srv.key('rater');
    for (const q of QUESTIONS) {
      const r = await postJson(`${srv.url}/v1/chat`, key, { message: q });
      expect(r.status).toBe(200);
      expect((await postJson(`${srv.url}/v1/feedback`, key, { response_id: r.body.id, rating: 1 })).status).toBeLessThan(300);
    }
    // Dense only with the random-weight test encoder: far worse than hybrid on these questions.
    const worse = await run(env, 'create', '--name', 'worse', '--from', 'initial', '--set', 'retrieval.mode=dense');
    expect(worse.code, worse.err).toBe(0);
    expect((await run(env, 'canary', 'worse', '--share', '10')).code).toBe(0);
    // The gate's numbers: `eval --regression` scores both on the log's questions, without the LLM.
    const io = bufferIo(env);
    expect(await main(['eval', '--regression', '--json'], io), io.err()).toBe(0);
    const scores = JSON.parse(io.out().trim().split('\n').pop()!);
    // Answers that cited nothing give no case.
    expect(scores.queries).toBeGreaterThanOrEqual(3);
    expect(scores.sources).toEqual({ thumbs_up: scores.queries, correction: 0 });
    expect(scores.releases.map((r: { release: string }) => r.release)).toEqual(['initial', 'worse']);
    // Worse on at least one of the gate's two scores (with 3–6 cases on 17 chunks, a random dense
    // ranking may still put the relevant chunk in the top 5: hit@5 can tie, MRR@10 cannot).
    const [live, cand] = scores.releases as Array<{ 'hit@5': number; 'mrr@10': number }>;
    expect(cand!['hit@5']).toBeLessThanOrEqual(live!['hit@5']);
    expect(cand!['mrr@10']).toBeLessThan(live!['mrr@10']);
    const refused = await run(env, 'promote');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/promotion refused: candidate worse is worse than live initial on \d+ logged questions: (hit@5|mrr@10)/);
    expect((await srv.deps.store.releases.get('worse'))?.state).toBe('candidate');

    const forced = await run(env, 'promote', '--force', '--reason', 'I know better', '--json');
    expect(forced.code, forced.err).toBe(0);
    expect(forced.json).toMatchObject({ action: 'promote', from: 'initial', to: 'worse', forced: true, reason: 'I know better', gate: { passed: false } });
    const [last] = await srv.deps.store.releases.events(1);
    expect(last).toMatchObject({ action: 'promote', forced: true, reason: 'I know better' });
    const gate = (last!.detail as { gate: { live: { 'mrr@10': number }; candidate: { 'mrr@10': number } } }).gate;
    expect(gate.live['mrr@10']).toBeGreaterThan(gate.candidate['mrr@10']);
    const back = await run(env, 'rollback', '--json');
    expect(back.json).toMatchObject({ action: 'rollback', from: 'worse', to: 'initial' });
  }, 180_000);

  it('export --release NAME keeps that release\'s answers; the manifest lists the releases of its rows', async () => {
    const key = await srv.key('exporter');
    expect((await run(env, 'promote', 'worse', '--force')).code).toBe(0);
    // The CLI wrote the store; the server follows within its refresh interval.
    await waitUntil(async () => srv.deps.releases.serving().live === 'worse');
    const w = await postJson(`${srv.url}/v1/chat`, key, { message: 'Which tides does the Tidewater ferry avoid in winter?' });
    expect(w.body.release).toBe('worse');
    const exportRun = async (...args: string[]) => {
      const out = path.join(tempDir(), 'sft.jsonl');
      const io = bufferIo(env);
      const code = await main(['export', '--format', 'sft', '--out', out, '--include-extractive', '--min-rating=-1', '--val-fraction', '0', ...args], io);
      expect(code, io.err()).toBe(0);
      return JSON.parse(fs.readFileSync(`${out}.manifest.json`, 'utf8')) as { filters: { release: string | null }; releases: Array<{ name: string; examples: number }>; counts: { examples: number } };
    };
    const all = await exportRun();
    expect(all.filters.release).toBeNull();
    expect(all.releases.map((r) => r.name).sort()).toEqual(['initial', 'worse']);
    const only = await exportRun('--release', 'initial');
    expect(only.filters.release).toBe('initial');
    expect(only.releases).toEqual([{ name: 'initial', examples: only.counts.examples }]);
    expect(only.counts.examples).toBeLessThan(all.counts.examples);
  }, 180_000);
});

describe('releases and a changed configuration', () => {
  it('a restart with another configuration makes it a release and promotes it (audited); an unchanged one leaves promotions alone', async () => {
    const env = testEnv(tempDir(), { MNEME_EMBED_MODEL: 'none' });
    let srv = await startTestServer(env);
    await srv.stop();
    srv = await startTestServer({ ...env, MNEME_LLM_TEMPERATURE: '0.7' });
    try {
      const live = (await srv.deps.store.releases.list()).find((r) => r.state === 'live')!;
      expect(live.name).toMatch(/^config-[0-9a-f]{8}$/);
      expect(live.parts.llm.temperature).toBe(0.7);
      const [promoted] = await srv.deps.store.releases.events(1);
      expect(promoted).toMatchObject({ action: 'promote', from: 'initial', to: live.name, actor: 'system' });
      expect(promoted!.reason).toMatch(/configuration changed since release initial/);
      await createRelease(srv.deps.store, srv.config, { name: 'ops', sets: ['retrieval.top_k=9'], actor: 'test' });
    } finally {
      await srv.stop();
    }
    expect((await run(env, 'promote', 'ops')).code).toBe(0);
    srv = await startTestServer({ ...env, MNEME_LLM_TEMPERATURE: '0.7' });
    try {
      expect(srv.deps.releases.serving().live).toBe('ops');
      const key = await srv.key('u');
      expect((await postJson(`${srv.url}/v1/chat`, key, { message: 'hello there' })).body.release).toBe('ops');
    } finally {
      await srv.stop();
    }
  }, 180_000);
});
