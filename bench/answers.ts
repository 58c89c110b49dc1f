/**
 * Answer quality on the PostgreSQL 15 manual: retrieval hit@1, hit@5 and MRR@10 on the hand-labelled
 * questions of bench/pgdoc-questions.json, the same for the follow-up questions (asked after their
 * previous question, retrieval query built like the chat pipeline builds it), and the abstention rate
 * through the real app (`POST /v1/chat`, `finish_reason: "no_evidence"`) on the off-topic questions
 * and on the on-topic ones (wrong abstentions).
 *
 *   node --import tsx bench/answers.ts CORPUS_DIR [--model none|PATH] [--exclude GLOB]... [--data-dir DIR]
 *
 * CORPUS_DIR: the manual's html directory. Downloads nothing itself; get it once with
 *   cd bench/.work && apt-get download postgresql-doc-15 && dpkg-deb -x postgresql-doc-15_*.deb pgdoc
 *   → bench/.work/pgdoc/usr/share/doc/postgresql-doc-15/html
 * --model: the embedding model (default none = BM25 only; a model directory gives hybrid figures).
 * --exclude: passed to `mneme ingest --exclude` (repeatable).
 * --data-dir: reuse/keep a data dir (default: a fresh one under bench/.work, removed at the end).
 * --database-url: an empty scratch PostgreSQL database: the same run on the PostgreSQL engine.
 * --show-answers: print each on-topic answer (text, cited pages, the checks below) on stderr.
 *
 * Answer proxy (`answers`): for each on-topic answer that does not abstain, whether its first citation
 * is one of the question's labelled pages (`first_cited_relevant`), and, for the questions with an
 * `answer_contains` list (a short exact fact: "4MB", "five full minutes"), whether the answer text
 * contains one of them (`contains_fact`). A proxy: an answer can cite the right page with the wrong
 * sentence; the hand judgement in bench/README.md is the real measure.
 * `held_out`: the same measures on the questions written after the last tuning (never tuned on).
 * Prints one JSON line on stdout; progress on stderr.
 */
import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { retrievalQuery } from '../src/chat/follow-up.ts';
import { HybridRetriever } from '../src/chat/retrieve.ts';
import { createApp } from '../src/chat/http/app.ts';
import { buildServerDeps } from '../src/chat/http/wiring.ts';
import { createUser } from '../src/chat/users.ts';
import { ingestCommand } from '../src/commands/ingest.ts';
import { loadConfig } from '../src/core/config.ts';

/** Retrieval depth for MRR (MRR@10). */
const MRR_DEPTH = 10;

interface QuestionSet {
  /** `answer_contains`: short exact facts (case-insensitive) a right answer quotes, any one suffices. */
  on_topic: Array<{ q: string; relevant: string[]; answer_contains?: string[] }>;
  follow_ups: Array<{ previous: string; q: string; relevant: string[] }>;
  off_topic: string[];
  /** Written after the last tuning of the answerer and thresholds, never used to tune: reported apart. */
  held_out?: QuestionSet['on_topic'];
  off_topic_held_out?: string[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: 'none' },
    exclude: { type: 'string', multiple: true },
    'data-dir': { type: 'string' },
    /** A scratch PostgreSQL database (empty): run everything on the PostgreSQL engine instead of SQLite. */
    'database-url': { type: 'string' },
    /** Also print every on-topic answer (text, cited pages, checks) as JSON lines on stderr, for judging by hand. */
    'show-answers': { type: 'boolean', default: false },
  },
});
const corpus = positionals[0];
if (!corpus || !fs.existsSync(corpus)) throw new Error('usage: bench/answers.ts CORPUS_DIR (the html directory of postgresql-doc-15)');
const here = path.dirname(new URL(import.meta.url).pathname);
const set = JSON.parse(fs.readFileSync(path.join(here, 'pgdoc-questions.json'), 'utf8')) as QuestionSet;
const work = path.join(here, '.work');
fs.mkdirSync(work, { recursive: true });
const keep = values['data-dir'] !== undefined;
const dataDir = values['data-dir'] ?? fs.mkdtempSync(path.join(work, 'answers-'));
const env: Record<string, string> = {
  MNEME_DATA_DIR: dataDir,
  MNEME_OFFLINE: '1',
  MNEME_EMBED_MODEL: values.model ?? 'none',
  MNEME_RATE_LIMIT_PER_MIN: '0',
  MNEME_AUTH_FAIL_PER_MIN: '0',
  MNEME_FEATURES_INTERVAL_S: '0',
  ...(values['database-url'] ? { MNEME_DATABASE_URL: values['database-url'] } : {}),
};
const sink = (w: (s: string) => void) => new Writable({ write: (c, _e, cb) => (w(String(c)), cb()) });

async function ingest(): Promise<number> {
  const t0 = performance.now();
  let out = '';
  const args = [corpus!, '--json', ...(values.exclude ?? []).flatMap((g) => ['--exclude', g])];
  const code = await ingestCommand.run(args, { stdout: sink((s) => (out += s)), stderr: sink(() => {}), env, isTty: false });
  if (code !== 0) throw new Error(`ingest failed (${code})`);
  const s = JSON.parse(out) as { documents_added: number };
  process.stderr.write(`ingested ${s.documents_added} documents in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return s.documents_added;
}

/** 1-based rank of the first relevant page among the retrieved sources, null when absent. */
function rankOf(sources: string[], relevant: string[]): number | null {
  const seen: string[] = [];
  for (const s of sources) {
    const base = path.basename(s);
    if (!seen.includes(base)) seen.push(base);
  }
  const i = seen.findIndex((b) => relevant.includes(b));
  return i < 0 ? null : i + 1;
}

function summarize(ranks: Array<number | null>) {
  const n = ranks.length;
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    questions: n,
    hit_at_1: r3(ranks.filter((r) => r === 1).length / n),
    hit_at_5: r3(ranks.filter((r) => r !== null && r <= 5).length / n),
    mrr_at_10: r3(ranks.reduce<number>((s, r) => s + (r !== null && r <= MRR_DEPTH ? 1 / r : 0), 0) / n),
  };
}

interface ChatBody {
  answer?: string;
  finish_reason?: string;
  citations?: Array<{ n: number; source: string }>;
}

interface AnswerCheck {
  q: string;
  abstained: boolean;
  /** Cited pages (file names) in citation order. */
  cited: string[];
  first_cited_relevant: boolean;
  /** null when the question has no answer_contains list. */
  contains_fact: boolean | null;
}

/** The automatic answer proxy for one on-topic answer (see the module comment). Pure. */
function checkAnswer(question: QuestionSet['on_topic'][number], body: ChatBody): AnswerCheck {
  const cited = [...(body.citations ?? [])].sort((a, b) => a.n - b.n).map((c) => path.basename(c.source));
  const text = (body.answer ?? '').toLowerCase();
  const facts = question.answer_contains ?? [];
  return {
    q: question.q,
    abstained: body.finish_reason === 'no_evidence',
    cited,
    first_cited_relevant: cited[0] !== undefined && question.relevant.includes(cited[0]),
    contains_fact: facts.length === 0 ? null : facts.some((f) => text.includes(f.toLowerCase())),
  };
}

function summarizeAnswers(checks: AnswerCheck[]) {
  const withFact = checks.filter((c) => c.contains_fact !== null);
  return {
    questions: checks.length,
    first_cited_relevant: checks.filter((c) => c.first_cited_relevant).length,
    with_answer_contains: withFact.length,
    contains_fact: withFact.filter((c) => c.contains_fact === true).length,
    wrong: checks.filter((c) => c.abstained || !c.first_cited_relevant || c.contains_fact === false).map((c) => c.q),
  };
}

async function main(): Promise<void> {
  await ingest();
  const config = loadConfig(env, { host: '127.0.0.1', port: 0 });
  const deps = await buildServerDeps(config);
  const app = createApp(deps);
  const server = await new Promise<http.Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // A new user per run: a reused --data-dir already has the earlier runs' users.
  const key = (await createUser(deps.store, { name: `bench-${Date.now()}`, admin: false })).apiKey;
  try {
    // Retrieval, through the server's own retriever (document-level: a page counts once, at its best chunk).
    const ranks: Array<number | null> = [];
    const misses: Array<{ q: string; rank: number | null; top: string[] }> = [];
    for (const { q, relevant } of set.on_topic) {
      const r = await deps.retriever.retrieve({ query: q, topK: 20 });
      const sources = r.chunks.map((c) => c.source);
      const rank = rankOf(sources, relevant);
      ranks.push(rank);
      if (rank !== 1) misses.push({ q, rank, top: [...new Set(sources.map((s) => path.basename(s)))].slice(0, 3) });
    }
    // Ablations (BM25 only, same store): without the document-level list, without document weights, without both.
    const ablation = async (opts: { documentCandidates?: number; documentWeights?: boolean }) => {
      const retriever = new HybridRetriever({ store: deps.store, embedder: null, index: null, syncIntervalMs: 0, ...opts });
      const out: Array<number | null> = [];
      for (const { q, relevant } of set.on_topic) out.push(rankOf((await retriever.retrieve({ query: q, topK: 20 })).chunks.map((c) => c.source), relevant));
      retriever.close();
      return summarize(out);
    };
    const ablations = {
      bm25_plain: await ablation({ documentCandidates: 0, documentWeights: false }),
      bm25_weights_only: await ablation({ documentCandidates: 0 }),
      bm25_document_list_only: await ablation({ documentWeights: false }),
      bm25_both: await ablation({}),
    };
    const followRanks: Array<number | null> = [];
    const followRaw: Array<number | null> = [];
    for (const f of set.follow_ups) {
      const query = retrievalQuery(f.q, [{ role: 'user', content: f.previous }]);
      followRanks.push(rankOf((await deps.retriever.retrieve({ query, topK: 20 })).chunks.map((c) => c.source), f.relevant));
      followRaw.push(rankOf((await deps.retriever.retrieve({ query: f.q, topK: 20 })).chunks.map((c) => c.source), f.relevant));
    }
    // Abstention through the real app.
    const chat = async (message: string): Promise<ChatBody> => {
      const res = await fetch(`${url}/v1/chat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ message }),
      });
      const body = (await res.json()) as ChatBody;
      if (res.status !== 200) throw new Error(`/v1/chat ${res.status}: ${JSON.stringify(body)}`);
      return body;
    };
    const offReasons = (await Promise.all(set.off_topic.map(chat))).map((b) => b.finish_reason ?? null);
    const onReasons: Array<string | null> = [];
    const checks: AnswerCheck[] = [];
    for (const question of set.on_topic) {
      const body = await chat(question.q);
      onReasons.push(body.finish_reason ?? null);
      const check = checkAnswer(question, body);
      checks.push(check);
      if (values['show-answers']) process.stderr.write(`${JSON.stringify({ ...check, answer: body.answer })}\n`);
    }
    // The held-out questions: the same measures, reported apart (see QuestionSet.held_out).
    const heldRanks: Array<number | null> = [];
    const heldChecks: AnswerCheck[] = [];
    for (const question of set.held_out ?? []) {
      heldRanks.push(rankOf((await deps.retriever.retrieve({ query: question.q, topK: 20 })).chunks.map((c) => c.source), question.relevant));
      const body = await chat(question.q);
      const check = checkAnswer(question, body);
      heldChecks.push(check);
      if (values['show-answers']) process.stderr.write(`${JSON.stringify({ held_out: true, ...check, answer: body.answer })}\n`);
    }
    const heldOff = await Promise.all((set.off_topic_held_out ?? []).map(async (q) => (await chat(q)).finish_reason ?? null));
    const heldOut =
      heldChecks.length === 0
        ? null
        : {
            retrieval: summarize(heldRanks),
            answers: summarizeAnswers(heldChecks),
            abstention: {
              off_topic_abstained: heldOff.filter((r) => r === 'no_evidence').length,
              off_topic: heldOff.length,
              on_topic_wrongly_abstained: heldChecks.filter((c) => c.abstained).length,
              on_topic: heldChecks.length,
            },
          };
    const measured = [...offReasons, ...onReasons].some((r) => r === 'no_evidence');
    process.stdout.write(
      `${JSON.stringify({
        mode: deps.retriever.mode,
        model: values.model,
        exclude: values.exclude ?? [],
        retrieval: summarize(ranks),
        ablations,
        follow_ups: summarize(followRanks),
        follow_ups_message_alone: summarize(followRaw),
        abstention: measured
          ? {
              off_topic_abstained: offReasons.filter((r) => r === 'no_evidence').length,
              off_topic: offReasons.length,
              on_topic_wrongly_abstained: onReasons.filter((r) => r === 'no_evidence').length,
              on_topic: onReasons.length,
            }
          : 'not measured (no answer carried finish_reason "no_evidence": abstention not available in this build)',
        answers: summarizeAnswers(checks),
        held_out: heldOut,
        misses,
      })}\n`,
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await deps.queue.close({ cancelInFlight: true });
    await deps.close();
    if (!keep) fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
