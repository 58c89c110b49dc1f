/**
 * User feature store benchmark (real SQLite files in a temp dir, synthetic rows written directly).
 *
 *   node --import tsx bench/features.ts [--users 100000] [--features 50] [--reads 10000]
 *        [--log-users 20000] [--responses 200000] [--feedback 50000] [--dim 384] [--join-rows 100000]
 *        [--only online|materialize]
 *
 * 1. Online read: `--users` users × `--features` features in feature_online; latency of
 *    FeatureStore.getOnlineFeatures (read + JSON decode of every value) for `--reads` random users.
 * 2. Materialization: `--responses` prediction-log rows (with `--dim`-d query vectors; 0 = none) and
 *    `--feedback` ratings over `--log-users` users; throughput of a full run from an empty store, then
 *    of an incremental run over 5% more rows. Also the online read of the real feature vector it made.
 * 3. Point-in-time join of `--join-rows` random (user, time) rows over the history of step 2: all
 *    features, and the 11 without the interest vector.
 * CPU seconds are reported beside wall seconds: on a shared machine they are the stable figure.
 *
 * Progress goes to stderr; the last stdout line is one JSON object of figures.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type Database from 'better-sqlite3';
import { openSqliteStore } from '../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../src/core/store/sqlite/index.ts';
import { materializeFeatures } from '../src/features/materialize.ts';
import { FeatureStore } from '../src/features/store.ts';

/** Seeding writes rows directly through the store connection's raw handle (benchmarks may). */
type Db = Database.Database;

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '100000' },
    features: { type: 'string', default: '50' },
    reads: { type: 'string', default: '10000' },
    'log-users': { type: 'string', default: '20000' },
    responses: { type: 'string', default: '200000' },
    feedback: { type: 'string', default: '50000' },
    dim: { type: 'string', default: '384' },
    'join-rows': { type: 'string', default: '100000' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const num = (k: keyof typeof args) => {
  const v = Number(args[k]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${k} must be a non-negative integer`);
  return v;
};
const USERS = num('users');
const FEATURES = num('features');
const READS = num('reads');
const LOG_USERS = num('log-users');
const RESPONSES = num('responses');
const FEEDBACK = num('feedback');
const DIM = num('dim');
const JOIN_ROWS = num('join-rows');
const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const LOG_SPAN_MS = 60 * 86_400_000;

const log = (msg: string) => process.stderr.write(`[bench/features] ${msg}\n`);

/** Deterministic PRNG so runs are comparable. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(1234);
const randInt = (n: number) => Math.floor(rand() * n);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const round3 = (x: number) => Math.round(x * 1000) / 1000;
/** CPU seconds (user + system) of this process since `from`: robust to other load on a shared machine. */
const cpuSeconds = (from: NodeJS.CpuUsage) => {
  const c = process.cpuUsage(from);
  return round3((c.user + c.system) / 1e6);
};

function insertUsers(db: Db, n: number): void {
  const ins = db.prepare('INSERT INTO users (id, name, api_key_hash, key_prefix, is_admin, created_at) VALUES (?, ?, ?, ?, 0, ?)');
  db.transaction(() => {
    for (let i = 1; i <= n; i++) ins.run(i, `user${i}`, i.toString(16).padStart(64, '0'), 'mn_bench', new Date(T0).toISOString());
  })();
}

async function timeReads(store: FeatureStore, users: number, reads: number, minFeatures: number): Promise<{ p50_ms: number; p99_ms: number; max_ms: number; mean_ms: number }> {
  for (let i = 0; i < 1000; i++) await store.getOnlineFeatures(1 + randInt(users)); // warm-up (JIT, statement cache)
  const lat: number[] = [];
  let checked = 0;
  for (let i = 0; i < reads; i++) {
    const u = 1 + randInt(users);
    const t = performance.now();
    const f = await store.getOnlineFeatures(u);
    lat.push(performance.now() - t);
    if (Object.keys(f).length >= minFeatures) checked++;
  }
  if (checked < reads * 0.9) throw new Error(`only ${checked}/${reads} reads returned at least ${minFeatures} features`);
  lat.sort((a, b) => a - b);
  return { p50_ms: round3(percentile(lat, 50)), p99_ms: round3(percentile(lat, 99)), max_ms: round3(lat[lat.length - 1]!), mean_ms: round3(lat.reduce((s, x) => s + x, 0) / lat.length) };
}

/** Step 1: users × features rows straight into feature_online. */
async function onlineBench(dir: string) {
  const seed = openSqliteStore(path.join(dir, 'online.sqlite'));
  const db = seed.connection.db;
  let t = performance.now();
  insertUsers(db, USERS);
  const ins = db.prepare('INSERT INTO feature_online (user_id, feature, value_json, event_time) VALUES (?, ?, ?, ?)');
  const names = Array.from({ length: FEATURES }, (_, j) => `feature_${String(j).padStart(2, '0')}`);
  // A realistic mix: mostly numbers, every 10th a short id list, every 25th a short string list.
  const value = (j: number) =>
    j % 25 === 24 ? JSON.stringify(['docs', 'faq', 'ops'].slice(0, 1 + randInt(3))) : j % 10 === 9 ? JSON.stringify(Array.from({ length: 5 }, () => randInt(100000))) : String(round3(rand() * 1000));
  const eventTime = new Date(T0).toISOString();
  for (let start = 1; start <= USERS; start += 10_000) {
    db.transaction(() => {
      for (let u = start; u < Math.min(start + 10_000, USERS + 1); u++) for (let j = 0; j < FEATURES; j++) ins.run(u, names[j], value(j), eventTime);
    })();
  }
  const loadSeconds = (performance.now() - t) / 1000;
  seed.connection.checkpoint();
  await seed.close();
  log(`online: ${USERS} users × ${FEATURES} features loaded in ${loadSeconds.toFixed(1)} s`);
  const reopened = openSqliteStore(path.join(dir, 'online.sqlite'));
  const store = new FeatureStore({ store: reopened });
  t = performance.now();
  const reads = await timeReads(store, USERS, READS, FEATURES);
  log(`online: ${READS} reads p50 ${reads.p50_ms} ms p99 ${reads.p99_ms} ms (${((performance.now() - t) / 1000).toFixed(2)} s)`);
  await reopened.close();
  return { users: USERS, features: FEATURES, reads: READS, ...reads, load_seconds: round3(loadSeconds) };
}

/** Appends `responses` + `feedback` synthetic log rows (times increasing with seq from `fromMs`). */
function writeLog(db: Db, responses: number, feedback: number, fromMs: number, spanMs: number): void {
  const collections = ['docs', 'faq', 'ops', 'hr', 'eng'];
  const docCount = db.prepare('SELECT count(*) FROM documents').pluck().get() as number;
  const insResp = db.prepare(
    `INSERT INTO responses (id, user_id, conversation_id, turn_index, created_at, endpoint, request_json, query, query_vector, history_json, collection,
       top_k, retrieved_json, features_json, prompt_name, prompt_sha256, rendered_prompt_json, model_backend, model_id, sampling_json, answer,
       citations_json, timings_json, status)
     VALUES (?, ?, ?, ?, ?, 'chat', '{}', ?, ?, '[]', ?, 5, '[]', '{}', 'answer', 'x', '[]', 'extractive', 'extractive', '{}', ?, ?, '{}', ?)`,
  );
  const insFb = db.prepare('INSERT INTO feedback (response_id, user_id, rating, correction, created_at) VALUES (?, ?, ?, ?, ?)');
  const firstSeq = ((db.prepare('SELECT max(seq) FROM responses').pluck().get() as number | null) ?? 0) + 1;
  const vec = new Float32Array(DIM);
  const answers = [20, 60, 120, 250, 400].map((n) => Array.from({ length: n }, (_, i) => `w${i}`).join(' ') + ' [1].');
  const owners: number[] = [];
  db.transaction(() => {
    for (let i = 0; i < responses; i++) {
      const user = 1 + randInt(LOG_USERS);
      owners.push(user);
      const at = new Date(fromMs + Math.floor((i / responses) * spanMs)).toISOString();
      let vector: Buffer | null = null;
      if (DIM > 0) {
        for (let k = 0; k < DIM; k++) vec[k] = rand() * 2 - 1;
        vector = Buffer.from(vec.buffer.slice(0));
      }
      const cites = Array.from({ length: 1 + randInt(3) }, (_, n) => ({ n: n + 1, document_id: 1 + randInt(docCount), chunk_id: 1, source: '/x', title: 't', score: 0.5, snippet: 's' }));
      insResp.run(
        `resp_${firstSeq + i}`,
        user,
        `conv_${user}`,
        i % 7,
        at,
        `how do I configure thing number ${randInt(1000)} with option ${randInt(50)}?`,
        vector,
        rand() < 0.3 ? collections[randInt(collections.length)]! : null,
        answers[randInt(answers.length)]!,
        JSON.stringify(cites),
        rand() < 0.95 ? 'ok' : 'error',
      );
    }
    for (let i = 0; i < feedback; i++) {
      const seq = firstSeq + randInt(responses);
      const user = owners[seq - firstSeq]!;
      const respAt = Date.parse(new Date(fromMs + Math.floor(((seq - firstSeq) / responses) * spanMs)).toISOString());
      const at = new Date(Math.max(respAt, fromMs + Math.floor((i / feedback) * spanMs)) + 1000).toISOString();
      insFb.run(`resp_${seq}`, user, rand() < 0.7 ? 1 : -1, rand() < 0.1 ? 'a shorter answer please with just the command' : null, at);
    }
  })();
}

async function materializeBench(dir: string) {
  const file = path.join(dir, 'log.sqlite');
  const sqlite: SqliteStore = openSqliteStore(file);
  const db = sqlite.connection.db;
  insertUsers(db, LOG_USERS);
  const now = new Date(T0).toISOString();
  db.transaction(() => {
    const conv = db.prepare('INSERT INTO conversations (id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?)');
    for (let u = 1; u <= LOG_USERS; u++) conv.run(`conv_${u}`, u, now, now);
    const doc = db.prepare("INSERT INTO documents (collection, source_uri, content_sha256, title, kind, bytes, ingested_at, updated_at) VALUES (?, ?, 'x', 't', 'text/plain', 1, ?, ?)");
    for (let d = 0; d < 500; d++) doc.run(['docs', 'faq', 'ops', 'hr', 'eng'][d % 5]!, `/d/${d}`, now, now);
  })();
  let t = performance.now();
  writeLog(db, RESPONSES, FEEDBACK, T0, LOG_SPAN_MS);
  log(`materialize: wrote ${RESPONSES} responses (${DIM}-d vectors) + ${FEEDBACK} feedback in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  let cpu = process.cpuUsage();
  const full = await materializeFeatures(sqlite);
  const fullCpu = cpuSeconds(cpu);
  const fullRows = full.responses + full.feedback;
  log(`materialize: full run ${fullRows} rows in ${full.seconds.toFixed(2)} s → ${Math.round(fullRows / full.seconds)} rows/s, ${full.historyRows} history rows`);

  const moreResponses = Math.round(RESPONSES * 0.05);
  const moreFeedback = Math.round(FEEDBACK * 0.05);
  writeLog(db, moreResponses, moreFeedback, T0 + LOG_SPAN_MS, LOG_SPAN_MS / 20);
  cpu = process.cpuUsage();
  const inc = await materializeFeatures(sqlite);
  const incCpu = cpuSeconds(cpu);
  const incRows = inc.responses + inc.feedback;
  log(`materialize: incremental run ${incRows} rows in ${inc.seconds.toFixed(2)} s → ${Math.round(incRows / inc.seconds)} rows/s`);

  const historyTotal = db.prepare('SELECT count(*) FROM feature_history').pluck().get() as number;
  sqlite.connection.checkpoint();
  const store = new FeatureStore({ store: sqlite });
  const featureCount = (db.prepare('SELECT count(DISTINCT feature) FROM feature_online').pluck().get() as number) ?? 0;
  // Users with a rating have every feature, the others the responses group (7).
  const realReads = await timeReads(store, LOG_USERS, READS, 7);

  // Step 3: point-in-time join.
  const rows = Array.from({ length: JOIN_ROWS }, () => ({ userId: 1 + randInt(LOG_USERS), time: new Date(T0 + randInt(LOG_SPAN_MS * 1.05)).toISOString() }));
  t = performance.now();
  cpu = process.cpuUsage();
  const joined = await store.pointInTimeJoin(rows);
  const joinSeconds = (performance.now() - t) / 1000;
  const joinCpu = cpuSeconds(cpu);
  let nonEmpty = 0;
  for (const r of joined) if (Object.keys(r).length > 0) nonEmpty++;
  // Spot-check correctness against the single-user read.
  for (let i = 0; i < 200; i++) {
    const k = randInt(JOIN_ROWS);
    if (JSON.stringify(joined[k]) !== JSON.stringify(await store.getFeaturesAsOf(rows[k]!.userId, rows[k]!.time))) throw new Error(`join row ${k} differs from getFeaturesAsOf`);
  }
  log(`join: ${JOIN_ROWS} rows in ${joinSeconds.toFixed(2)} s (${nonEmpty} with values) over ${historyTotal} history rows`);
  const scalarFeatures = (db.prepare("SELECT DISTINCT feature FROM feature_online WHERE feature != 'interest_vector'").pluck().all() as string[]);
  t = performance.now();
  cpu = process.cpuUsage();
  await store.pointInTimeJoin(rows, { features: scalarFeatures });
  const scalarJoinSeconds = (performance.now() - t) / 1000;
  const scalarJoinCpu = cpuSeconds(cpu);
  log(`join without the vector: ${JOIN_ROWS} rows in ${scalarJoinSeconds.toFixed(2)} s`);
  await sqlite.close();
  return {
    materialize: {
      log_users: LOG_USERS,
      query_vector_dim: DIM,
      full: { rows: fullRows, responses: full.responses, feedback: full.feedback, seconds: round3(full.seconds), cpu_seconds: fullCpu, rows_per_s: Math.round(fullRows / full.seconds), history_rows: full.historyRows },
      incremental: { rows: incRows, seconds: round3(inc.seconds), cpu_seconds: incCpu, rows_per_s: Math.round(incRows / inc.seconds), history_rows: inc.historyRows },
      history_rows_total: historyTotal,
      db_mb: Math.round(fs.statSync(file).size / 1e6),
    },
    online_real_vector: { users: LOG_USERS, features: featureCount, ...realReads, note: `the ${featureCount} materialized features incl. a ${DIM}-d interest_vector` },
    point_in_time_join: {
      rows: JOIN_ROWS,
      seconds: round3(joinSeconds),
      cpu_seconds: joinCpu,
      rows_with_values: nonEmpty,
      history_rows: historyTotal,
      without_vector: { features: scalarFeatures.length, seconds: round3(scalarJoinSeconds), cpu_seconds: scalarJoinCpu },
    },
  };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-bench-features-'));
try {
  const online = args.only === 'materialize' ? undefined : await onlineBench(dir);
  const rest = args.only === 'online' ? {} : await materializeBench(dir);
  const out = { bench: 'features', node: process.version, cpus: os.availableParallelism(), loadavg_1m: round3(os.loadavg()[0]!), online, ...rest };
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  if (!args.keep) fs.rmSync(dir, { recursive: true, force: true });
  else log(`kept ${dir}`);
}
