/**
 * Online feature reads from Redis (issue 12): `--users` users × `--features` features written to
 * Redis hashes through RedisOnlineFeatureStore.writeMany (the materializer's path: one Lua script
 * per user, pipelined), then the latency of `--reads` random-user reads, one at a time, through the
 * chat path (OnlineFeatureReader → HGETALL + JSON decode of every value), and with `--concurrency`
 * reads in flight. Compared against the published Feast + Redis online read p99 of 1.5 ms.
 *
 *   MNEME_BENCH_REDIS_URL=redis://127.0.0.1:6379 node --import tsx bench/redis-features.ts
 *        [--users 100000] [--features 50] [--reads 10000] [--concurrency 16]
 *
 * Uses a random key prefix and deletes every key it wrote at the end. Progress goes to stderr; the
 * last stdout line is one JSON object of figures (with the load average: the machine may be shared).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { FeatureValue, OnlineFeatureWrite } from '../src/core/online-features.ts';
import { closeRedis, openRedis, waitReady } from '../src/core/store/redis/connection.ts';
import { RedisOnlineFeatureStore } from '../src/core/store/redis/online-features.ts';
import { openSqliteStore } from '../src/core/store/sqlite/index.ts';
import { OnlineFeatureReader } from '../src/features/online.ts';

/** The published Feast + Redis online read p99 this is compared against, in ms. */
const FEAST_REDIS_P99_MS = 1.5;
/** Users per writeMany call while seeding. */
const SEED_CHUNK_USERS = 5000;

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '100000' },
    features: { type: 'string', default: '50' },
    reads: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '16' },
  },
});
const num = (k: keyof typeof args) => {
  const v = Number(args[k]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer`);
  return v;
};
const USERS = num('users');
const FEATURES = num('features');
const READS = num('reads');
const CONCURRENCY = num('concurrency');
const URL_VAR = 'MNEME_BENCH_REDIS_URL';
const url = process.env[URL_VAR] ?? process.env.MNEME_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const log = (msg: string) => process.stderr.write(`[bench/redis-features] ${msg}\n`);

/** Deterministic PRNG (same as bench/features.ts) so runs are comparable. */
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
const round3 = (x: number) => Math.round(x * 1000) / 1000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
function summary(lat: number[]) {
  lat.sort((a, b) => a - b);
  return { p50_ms: round3(percentile(lat, 50)), p99_ms: round3(percentile(lat, 99)), p999_ms: round3(percentile(lat, 99.9)), max_ms: round3(lat[lat.length - 1]!), mean_ms: round3(lat.reduce((s, x) => s + x, 0) / lat.length) };
}

/** bench/features.ts's value mix: mostly numbers, every 10th a 5-id list, every 25th a short string list. */
function vector(names: string[]): Record<string, FeatureValue> {
  const out: Record<string, FeatureValue> = {};
  names.forEach((name, j) => {
    out[name] = j % 25 === 24 ? ['docs', 'faq', 'ops'].slice(0, 1 + randInt(3)) : j % 10 === 9 ? Array.from({ length: 5 }, () => randInt(100000)) : round3(rand() * 1000);
  });
  return out;
}

async function seed(online: RedisOnlineFeatureStore, names: string[]): Promise<number> {
  const t = performance.now();
  for (let first = 1; first <= USERS; first += SEED_CHUNK_USERS) {
    const entries: OnlineFeatureWrite[] = [];
    for (let u = first; u < first + SEED_CHUNK_USERS && u <= USERS; u++) entries.push({ userId: u, values: vector(names) });
    await online.writeMany(entries, 1);
  }
  return (performance.now() - t) / 1000;
}

async function sequentialReads(reader: OnlineFeatureReader): Promise<number[]> {
  for (let i = 0; i < 2000; i++) await reader.read(1 + randInt(USERS)); // warm-up (JIT, connection)
  const lat: number[] = [];
  for (let i = 0; i < READS; i++) {
    const u = 1 + randInt(USERS);
    const t = performance.now();
    const f = await reader.read(u);
    lat.push(performance.now() - t);
    if (Object.keys(f).length !== FEATURES) throw new Error(`user ${u}: ${Object.keys(f).length} features, expected ${FEATURES} (a miss went to SQL?)`);
  }
  return lat;
}

async function concurrentReads(reader: OnlineFeatureReader): Promise<{ lat: number[]; seconds: number }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < READS) {
      next++;
      const t = performance.now();
      await reader.read(1 + randInt(USERS));
      lat.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { lat, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  const client = openRedis(url);
  await waitReady(client);
  const prefix = `mnemebench${randomBytes(4).toString('hex')}`;
  const online = new RedisOnlineFeatureStore({ client, prefix });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-redis-bench-'));
  // The SQL store behind the reader stays empty: every read must be a Redis hit.
  const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
  let misses = 0;
  const reader = new OnlineFeatureReader({ store, online, onFallback: () => misses++ });
  const names = Array.from({ length: FEATURES }, (_, j) => `feature_${String(j).padStart(2, '0')}`);
  try {
    const memBefore = Number((await client.info('memory')).match(/used_memory:(\d+)/)?.[1] ?? 0);
    log(`seeding ${USERS} users × ${FEATURES} features under ${prefix}:`);
    const seedSeconds = await seed(online, names);
    const memAfter = Number((await client.info('memory')).match(/used_memory:(\d+)/)?.[1] ?? 0);
    log(`seeded in ${seedSeconds.toFixed(1)} s; ${READS} sequential reads`);
    const cpu0 = process.cpuUsage();
    const sequential = summary(await sequentialReads(reader));
    const cpu = process.cpuUsage(cpu0);
    log(`${READS} reads with ${CONCURRENCY} in flight`);
    const conc = await concurrentReads(reader);
    const result = {
      bench: 'redis-features',
      users: USERS,
      features: FEATURES,
      reads: READS,
      seed_users_per_s: Math.round(USERS / seedSeconds),
      redis_bytes_per_user: Math.round((memAfter - memBefore) / USERS),
      read_sequential: { ...sequential, client_cpu_us_per_read: Math.round((cpu.user + cpu.system) / READS) },
      read_concurrent: { concurrency: CONCURRENCY, ...summary(conc.lat), reads_per_s: Math.round(READS / conc.seconds) },
      fallbacks: misses,
      feast_redis_p99_ms: FEAST_REDIS_P99_MS,
      p99_vs_feast: round3(sequential.p99_ms / FEAST_REDIS_P99_MS),
      loadavg_1m: round3(os.loadavg()[0]!),
      cores: os.availableParallelism(),
      redis_version: (await client.info('server')).match(/redis_version:(\S+)/)?.[1] ?? null,
      node: process.version,
    };
    console.log(JSON.stringify(result));
  } finally {
    await online.clear();
    await client.unlink(`${prefix}:features:0`);
    await closeRedis(client);
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
