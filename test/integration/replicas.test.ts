/**
 * Several `mneme serve` replicas on one PostgreSQL behave as one service (issue 12): any replica
 * answers any user, feedback through A for an answer served by B works, an ingest is visible to every
 * replica within 2 s, 20 clients see no 5xx, every completed response has its prediction-log row,
 * and kill -9 of one replica loses no row of a completed response while clients retry on the other.
 * Real processes, a real PostgreSQL (MNEME_TEST_DATABASE_URL), bounded in time.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engineRunsRequired, findPostgresTestServer } from '../store/postgres-env.ts';
import { BIN, cliEnv, REPO, runCli, runCliAsync, tempDir } from '../helpers/cli.ts';

const postgres = await findPostgresTestServer();
/** Clients asking at once. */
const CLIENTS = 20;
/** The bounded load window, in ms. */
const LOAD_MS = 20_000;
/** Longest a replica may take to cite a document ingested elsewhere, in ms (the bound). */
const VISIBLE_WITHIN_MS = 2_000;

interface Replica {
  child: ChildProcess;
  url: string;
  exited: Promise<NodeJS.Signals | number | null>;
}

async function startReplica(env: Record<string, string>): Promise<Replica> {
  const dataDir = tempDir('mneme-replica-');
  const child = spawn(process.execPath, [BIN, 'serve', '--data-dir', dataDir, '--port', '0'], { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearInterval(t);
        resolve(m[1]!);
      }
    }, 50);
    void exited.then(() => {
      clearInterval(t);
      reject(new Error(`replica exited before listening: ${err}`));
    });
  });
  return { child, url, exited };
}

const ask = (url: string, key: string, message: string, signal?: AbortSignal) =>
  fetch(`${url}/v1/chat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ message }),
    signal: signal ?? AbortSignal.timeout(30_000),
  });

const QUESTIONS = ['What does error E-417 mean?', 'How does OrbiSync resolve conflicts?', 'When does the Tidewater ferry leave?', 'What does kestrelctl do?'];

const suite = postgres.server ? describe : engineRunsRequired() ? describe : describe.skip;

suite('two serve replicas on one PostgreSQL', () => {
  let dbUrl = '';
  let env: Record<string, string> = {};
  let key = '';
  let a: Replica;
  let b: Replica;

  beforeAll(async () => {
    if (!postgres.server) throw new Error(`CI is set but PostgreSQL is not usable: ${postgres.reason}`);
    dbUrl = await postgres.server.createDatabase();
    env = cliEnv({ MNEME_DATABASE_URL: dbUrl, MNEME_RATE_LIMIT_PER_MIN: '0', MNEME_FEATURES_INTERVAL_S: '2' });
    const seed = runCli(['ingest', path.join(REPO, 'test/fixtures/docs'), '--data-dir', tempDir(), '--json'], env);
    expect(seed.code, seed.stderr).toBe(0);
    const user = runCli(['users', 'create', '--name', 'replica-user', '--json', '--data-dir', tempDir()], env);
    expect(user.code, user.stderr).toBe(0);
    key = (user.json as { api_key: string }).api_key;
    [a, b] = await Promise.all([startReplica(env), startReplica(env)]);
  }, 120_000);

  afterAll(async () => {
    for (const r of [a, b]) r?.child.kill('SIGKILL');
    await Promise.all([a?.exited, b?.exited]);
    await postgres.server?.dropCreatedDatabases();
  });

  it('answers on either replica; feedback through A for an answer served by B works', async () => {
    const res = await ask(b.url, key, 'What does error E-417 mean?');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { id: string; citations: Array<{ source: string }> };
    expect(body.citations.length).toBeGreaterThan(0);
    const fb = await fetch(`${a.url}/v1/feedback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ response_id: body.id, rating: 1 }),
    });
    expect(fb.status).toBeLessThan(300);
  });

  it('20 clients for 20 s with an ingest and a kill -9: no 5xx, every completed response logged, new document cited by both', async () => {
    const completed: string[] = [];
    const statuses: Record<number, number> = {};
    const retried = { n: 0 };
    let bAlive = true;
    const deadline = Date.now() + LOAD_MS;
    const client = async (c: number) => {
      for (let i = 0; Date.now() < deadline; i++) {
        const order = (c + i) % 2 === 0 && bAlive ? [b, a] : [a, b];
        for (const r of order) {
          try {
            const res = await ask(r.url, key, QUESTIONS[(c + i) % QUESTIONS.length]!);
            statuses[res.status] = (statuses[res.status] ?? 0) + 1;
            const body = (await res.json()) as { id?: string };
            if (res.status === 200 && body.id) completed.push(body.id);
            break;
          } catch {
            // The replica died under this request: retry on the other one (the client's job).
            retried.n++;
          }
        }
      }
    };
    const load = Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));

    // An ingest during the run, against the database (no replica involved).
    await new Promise((r) => setTimeout(r, 3_000));
    const docs = tempDir('mneme-late-');
    fs.writeFileSync(path.join(docs, 'zorblax.md'), '# Zorblax calibration\n\nThe zorblax coupling is calibrated with a torque of 17 newton metres.\n');
    const ingest = await runCliAsync(['ingest', docs, '--data-dir', tempDir(), '--json'], env);
    expect(ingest.code, ingest.stderr).toBe(0);
    const ingested = Date.now();
    const citesIt = async (r: Replica) => {
      for (;;) {
        const res = await ask(r.url, key, 'How is the zorblax coupling calibrated?');
        const body = (await res.json()) as { citations?: Array<{ source: string }> };
        if (body.citations?.some((x) => x.source.endsWith('zorblax.md'))) return Date.now() - ingested;
        if (Date.now() - ingested > 10_000) return Number.POSITIVE_INFINITY;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const [lagA, lagB] = await Promise.all([citesIt(a), citesIt(b)]);
    expect(lagA).toBeLessThanOrEqual(VISIBLE_WITHIN_MS);
    expect(lagB).toBeLessThanOrEqual(VISIBLE_WITHIN_MS);

    // Kill one replica mid-run; clients retry on the survivor.
    await new Promise((r) => setTimeout(r, 3_000));
    bAlive = false;
    b.child.kill('SIGKILL');
    expect(await b.exited).toBe('SIGKILL');
    await load;

    const fiveXx = Object.entries(statuses).filter(([s]) => Number(s) >= 500);
    expect(fiveXx).toEqual([]);
    expect(completed.length).toBeGreaterThan(50);
    const db = new pg.Client({ connectionString: dbUrl });
    await db.connect();
    try {
      const r = await db.query<{ id: string }>('SELECT id FROM responses WHERE id = ANY($1)', [completed]);
      const logged = new Set(r.rows.map((x) => x.id));
      const missing = completed.filter((id) => !logged.has(id));
      expect(missing).toEqual([]);
    } finally {
      await db.end();
    }
  }, 120_000);
});
