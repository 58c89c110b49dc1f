/**
 * `mneme migrate --to postgres://…` end to end: a SQLite data dir built with the real CLI and app
 * (fixture corpus ingested with tiny BERT, a pruned document's tombstone, users created by the CLI,
 * questions and feedback through the in-process server, features materialized, one export), copied
 * into a fresh PostgreSQL database (one per test) by the real command. Checked: every table's count
 * and checksum, counts and key columns again through independent SQL on both sides, sequences past
 * SQLite's AUTOINCREMENT high-water marks, a refused rerun and --force, an API key created before the
 * migration against the PostgreSQL-backed app, and the citations of 20 fixed questions in BM25-only
 * mode on both engines (the overlap is printed; floors below are what was measured, minus margin).
 *
 * Needs MNEME_TEST_DATABASE_URL (skips with the reason printed when unset or unreachable, fails in CI).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.ts';
import { exportCommand } from '../../src/commands/export.ts';
import { featuresCommand } from '../../src/commands/features.ts';
import { usersCommand } from '../../src/commands/users.ts';
import { openPostgresStore } from '../../src/core/store/postgres/index.ts';
import { engineRunsRequired, findPostgresTestServer } from '../store/postgres-env.ts';
import type { PostgresTestServer } from '../store/postgres-env.ts';
import type { TestServer } from './http-helpers.ts';
import { bufferIo, FIXTURE_DOCS, ingestFixtures, postJson, startTestServer, tempDir, testEnv } from './http-helpers.ts';

const availability = await findPostgresTestServer();
if (availability.reason !== null) {
  if (engineRunsRequired()) throw new Error(`migrate tests must run in CI: ${availability.reason}`);
  console.warn(`[migrate.test] skipping: ${availability.reason}`);
}

/** 20 fixed questions about the fixture corpus. */
const QUESTIONS = [
  'How do I reset the Halcyon X3?',
  'What does error E-417 mean?',
  'What is the Lumacore lamp fault E-502?',
  'Why does the status ring stay red?',
  'How do I flush a new cartridge?',
  'How do I pair the purifier with Wi-Fi?',
  'How do I set the water hardness profile?',
  'What does kestrelctl status show?',
  'How do I list stations with kestrelctl?',
  'How do I replay readings the gateway spooled?',
  'How many hours of readings does the gateway keep?',
  'What is Orbisync?',
  'Which regions does the Orbisync vault use?',
  'How often does the Orbisync agent upload changed blocks?',
  'When does the winter ferry timetable start?',
  'Which ferries sail to Marrowby Island?',
  'Does the ferry stop at Saltreach Holm?',
  'What should I plant at the full moon?',
  'When are the frost dates in the Vexmoor valley?',
  'What is the seed-saving log format?',
];

/**
 * Measured on this corpus (see the printed line), over several runs while the retriever and the
 * extractive answerer changed under it: the same first citation for 17–20/20 questions (3–4 questions
 * have no citation on either engine and count as agreeing), the same list for 18–20/20 (differences
 * seen: "How do I reset the Halcyon X3?", and an order swap of two tied chunks for a kestrelctl
 * question), mean Jaccard of the first 5 citations 0.967–1.000. The floors sit one disagreement below
 * the worst run.
 */
const TOP1_AGREEMENT_FLOOR = 0.8;
const JACCARD5_FLOOR = 0.9;

interface Citation {
  chunk_id: number;
}

async function run(args: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  const io = bufferIo(env);
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

function lastJson(out: string): any {
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

/** Builds the SQLite data dir: corpus (+ a tombstone), users, log, feedback, features, an export. */
async function buildDataDir(dataDir: string): Promise<{ env: Record<string, string>; aliceKey: string; responseIds: string[] }> {
  const env = testEnv(dataDir);
  await ingestFixtures(env);
  // A second collection whose last document is pruned: a tombstone, and chunk ids past the live maximum.
  const extra = tempDir('mneme-extra-');
  fs.copyFileSync(path.join(FIXTURE_DOCS, 'orbisync-faq.jsonl'), path.join(extra, 'faq-copy.jsonl'));
  fs.writeFileSync(path.join(extra, 'zz-gone.md'), '# Gone\n\nA document that will be pruned after ingestion.\n');
  expect((await run(['ingest', extra, '--collection', 'extra', '--json'], env)).code).toBe(0);
  fs.rmSync(path.join(extra, 'zz-gone.md'));
  expect((await run(['ingest', extra, '--collection', 'extra', '--prune', '--json'], env)).code).toBe(0);

  const create = async (name: string, admin = false) => {
    const io = bufferIo(env);
    expect(await usersCommand.run(['create', '--name', name, ...(admin ? ['--admin'] : []), '--json'], io)).toBe(0);
    return lastJson(io.out()).api_key as string;
  };
  const aliceKey = await create('alice');
  const bobKey = await create('bob');
  await create('root', true);

  const srv = await startTestServer(env);
  const responseIds: string[] = [];
  try {
    let conversation: string | undefined;
    for (const [i, q] of QUESTIONS.slice(0, 6).entries()) {
      const key = i % 2 === 0 ? aliceKey : bobKey;
      const r = await postJson(`${srv.url}/v1/chat`, key, { message: q, ...(i === 2 && conversation ? { conversation_id: conversation } : {}) });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      if (i === 0) conversation = r.body.conversation_id;
      responseIds.push(r.body.id);
      const rating = i % 3 === 0 ? -1 : 1;
      const fb = await postJson(`${srv.url}/v1/feedback`, key, { response_id: r.body.id, rating, ...(rating < 0 ? { correction: `Corrected answer ${i} [1].` } : {}) });
      expect(fb.status).toBe(201);
    }
  } finally {
    await srv.stop();
  }
  expect(await featuresCommand.run(['materialize', '--json'], bufferIo(env))).toBe(0);
  const exportIo = bufferIo(env);
  fs.mkdirSync(path.join(dataDir, 'exports'));
  expect(await exportCommand.run(['--format', 'sft', '--out', path.join(dataDir, 'exports', 'sft.jsonl'), '--json'], exportIo), exportIo.err()).toBe(0);
  return { env, aliceKey, responseIds };
}

/** Asks every question through `srv` (BM25-only) and returns the cited chunk ids per question. */
async function citations(srv: TestServer, key: string): Promise<number[][]> {
  const out: number[][] = [];
  for (const q of QUESTIONS) {
    const r = await postJson(`${srv.url}/v1/chat`, key, { message: q });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.retrieval_mode).toBe('bm25');
    out.push((r.body.citations as Citation[]).map((c) => c.chunk_id));
  }
  return out;
}

function jaccard(a: number[], b: number[]): number {
  const A = new Set(a);
  const B = new Set(b);
  const union = new Set([...A, ...B]);
  if (union.size === 0) return 1;
  return [...A].filter((x) => B.has(x)).length / union.size;
}

describe.skipIf(availability.reason !== null)('mneme migrate (SQLite → PostgreSQL)', () => {
  const server = availability.server as PostgresTestServer;
  let dataDir: string;
  let built: Awaited<ReturnType<typeof buildDataDir>>;

  beforeAll(async () => {
    dataDir = tempDir('mneme-migrate-');
    built = await buildDataDir(dataDir);
  }, 180_000);
  afterAll(async () => {
    await server?.dropCreatedDatabases();
  });

  it('copies every table with equal counts and checksums, keeps ids and key bytes, and refuses a rerun unless --force', async () => {
    const url = await server.createDatabase();
    const r = await run(['migrate', '--to', url, '--data-dir', dataDir, '--json'], built.env);
    expect(r.code, r.err).toBe(0);
    const summary = lastJson(r.out);
    const tables = summary.tables as Record<string, { rows: number; sha256: string; ok: boolean }>;
    for (const [name, t] of Object.entries(tables)) expect(t.ok, name).toBe(true);
    expect(summary.feed.starts_fresh).toBe(true);

    // Independent counts on both sides (plain SQL, not the migrate code).
    const lite = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const pgCount = async (sql: string) => Number((await client.query(sql)).rows[0].n);
      for (const name of Object.keys(tables)) {
        const where = name === 'watermarks' ? "WHERE name <> 'features.generation'" : '';
        const n = lite.prepare(`SELECT count(*) FROM ${name} ${where}`).pluck().get() as number;
        expect(tables[name]!.rows, name).toBe(n);
        expect(await pgCount(`SELECT count(*) AS n FROM ${name} ${where}`), name).toBe(n);
      }
      // Every table the scenario should have filled is non-empty.
      for (const name of ['users', 'documents', 'chunks', 'embeddings', 'index_meta', 'ingest_runs', 'conversations', 'responses', 'messages', 'feedback',
        'feature_user_state', 'feature_history', 'feature_online', 'watermarks', 'settings', 'export_runs', 'export_run_users']) {
        expect(tables[name]!.rows, name).toBeGreaterThan(0);
      }
      expect(lite.prepare('SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL').pluck().get()).toBeGreaterThan(0);

      // Byte-exact secrets and vectors, same ids.
      const hmacLite = lite.prepare("SELECT value FROM settings WHERE name = 'export.user_hash_key'").pluck().get() as Buffer;
      const hmacPg = (await client.query("SELECT value FROM settings WHERE name = 'export.user_hash_key'")).rows[0].value as Buffer;
      expect(hmacPg.equals(hmacLite)).toBe(true);
      const sumsLite = lite.prepare('SELECT user_id, interest_sum FROM feature_user_state ORDER BY user_id').all() as Array<{ user_id: number; interest_sum: Buffer | null }>;
      const sumsPg = (await client.query('SELECT user_id::int AS user_id, interest_sum FROM feature_user_state ORDER BY user_id')).rows;
      expect(sumsPg.map((x) => [x.user_id, x.interest_sum?.toString('hex') ?? null])).toEqual(sumsLite.map((x) => [x.user_id, x.interest_sum?.toString('hex') ?? null]));
      expect(sumsLite.some((x) => x.interest_sum !== null)).toBe(true);
      const logLite = lite.prepare('SELECT seq, id FROM responses ORDER BY seq').all();
      expect((await client.query('SELECT seq::int AS seq, id FROM responses ORDER BY seq')).rows).toEqual(logLite);
      const usersLite = lite.prepare('SELECT id, api_key_hash, created_at FROM users ORDER BY id').all();
      const usersPg = (await client.query('SELECT id::int AS id, api_key_hash, created_at FROM users ORDER BY id')).rows.map((u) => ({ ...u, created_at: (u.created_at as Date).toISOString() }));
      expect(usersPg).toEqual(usersLite);

      // Sequences continue past SQLite's high-water marks (a deleted chunk's id is never reused).
      const highWater = Object.fromEntries((lite.prepare('SELECT name, seq FROM sqlite_sequence').all() as Array<{ name: string; seq: number }>).map((x) => [x.name, x.seq]));
      expect(highWater.chunks).toBeGreaterThan(lite.prepare('SELECT max(id) FROM chunks').pluck().get() as number);
      expect(await pgCount("SELECT last_value AS n FROM chunks_id_seq")).toBe(highWater.chunks);
      expect(await pgCount("SELECT last_value AS n FROM responses_seq_seq")).toBe(highWater.responses);
      // Full text was computed on insert for every chunk; the feed starts empty.
      expect(await pgCount('SELECT count(*) AS n FROM chunks WHERE tsv IS NULL OR length(tsv) = 0')).toBe(0);
      expect(await pgCount('SELECT count(*) AS n FROM corpus_changes')).toBe(0);
    } finally {
      lite.close();
      await client.end();
    }

    const again = await run(['migrate', '--to', url, '--data-dir', dataDir], built.env);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already holds mneme data/);
    expect(again.err).toContain(new URL(url).host);
    const forced = await run(['migrate', '--to', url, '--data-dir', dataDir, '--force', '--json'], built.env);
    expect(forced.code, forced.err).toBe(0);
    const forcedSummary = lastJson(forced.out);
    expect(forcedSummary.forced).toBe(true);
    for (const [name, t] of Object.entries(forcedSummary.tables as typeof tables)) expect(t.sha256, name).toBe(tables[name]!.sha256);
  }, 120_000);

  it('verifies what PostgreSQL stored: a row altered on the way fails the checksum and nothing is committed', async () => {
    const url = await server.createDatabase();
    const store = await openPostgresStore(url);
    await store.close();
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      // A target that silently changes data on insert (as a lossy type or a stray trigger would).
      await client.query(`CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.key_prefix := NEW.key_prefix || 'x'; RETURN NEW; END $$`);
      await client.query('CREATE TRIGGER tamper BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION tamper()');
      const r = await run(['migrate', '--to', url, '--data-dir', dataDir, '--json'], built.env);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/verification failed for users\b/);
      const summary = lastJson(r.out);
      expect(summary.tables.users.ok).toBe(false);
      expect(summary.tables.users.target_rows).toBe(summary.tables.users.rows);
      expect(summary.tables.documents.ok).toBe(true);
      // Rolled back: the target is still empty.
      for (const t of ['users', 'documents', 'chunks', 'responses']) expect(Number((await client.query(`SELECT count(*) AS n FROM ${t}`)).rows[0].n), t).toBe(0);
    } finally {
      await client.end();
    }
  }, 120_000);

  it('serves the migrated data: an old key authenticates, old responses take feedback, and BM25-only citations match SQLite', async () => {
    const url = await server.createDatabase();
    const r = await run(['migrate', '--to', url, '--data-dir', dataDir, '--json'], built.env);
    expect(r.code, r.err).toBe(0);

    const lite = await startTestServer(testEnv(dataDir, { MNEME_EMBED_MODEL: 'none' }));
    let liteCitations: number[][];
    try {
      liteCitations = await citations(lite, built.aliceKey);
    } finally {
      await lite.stop();
    }
    const pgSrv = await startTestServer(testEnv(tempDir('mneme-pg-app-'), { MNEME_EMBED_MODEL: 'none', MNEME_DATABASE_URL: url }));
    try {
      expect(pgSrv.deps.store.engine).toBe('postgres');
      // The key was created (and hashed) on SQLite before the migration.
      const convs = await fetch(`${pgSrv.url}/v1/conversations`, { headers: { authorization: `Bearer ${built.aliceKey}` } });
      expect(convs.status).toBe(200);
      const fb = await postJson(`${pgSrv.url}/v1/feedback`, built.aliceKey, { response_id: built.responseIds[0], rating: 1 });
      expect(fb.status, JSON.stringify(fb.body)).toBe(201);
      const pgCitations = await citations(pgSrv, built.aliceKey);

      let top1 = 0;
      let jac = 0;
      let identical = 0;
      let uncited = 0;
      const differing: string[] = [];
      pgCitations.forEach((p, i) => {
        const l = liteCitations[i]!;
        // Same first citation (two answers without any citation agree too: no passage matched on either engine).
        if (p[0] === l[0]) top1 += 1;
        if (p.length === 0 || l.length === 0) uncited += 1;
        if (JSON.stringify(p) === JSON.stringify(l)) identical += 1;
        else differing.push(`${QUESTIONS[i]} (postgres ${JSON.stringify(p)}, sqlite ${JSON.stringify(l)})`);
        jac += jaccard(p.slice(0, 5), l.slice(0, 5));
      });
      const n = QUESTIONS.length;
      console.log(
        `[migrate.test] BM25-only citations, PostgreSQL (ts_rank_cd) vs SQLite (bm25) on ${n} questions: ` +
          `top-1 agreement ${top1}/${n} (${(top1 / n).toFixed(2)}), mean Jaccard@5 ${(jac / n).toFixed(3)}, identical lists ${identical}/${n}, questions without citations on either side ${uncited}` +
          (differing.length > 0 ? `; differing: ${differing.join('; ')}` : ''),
      );
      expect(top1 / n).toBeGreaterThanOrEqual(TOP1_AGREEMENT_FLOOR);
      expect(jac / n).toBeGreaterThanOrEqual(JACCARD5_FLOOR);
    } finally {
      await pgSrv.stop();
    }
  }, 120_000);
});
