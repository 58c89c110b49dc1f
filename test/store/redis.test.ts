/**
 * Redis (issue 12, item 2) against a real server (MNEME_TEST_REDIS_URL, see redis-env.ts; skipped with
 * the reason printed when unset/unreachable, a failure when CI is set): one online feature store suite
 * run against the SQL-backed store and the Redis one, the Redis store's versioning / tombstones /
 * read-through, the materializer's copy to Redis, the Lua token bucket (burst, refill, two replicas
 * sharing a bucket) and corpus-change pub/sub. Every test uses its own key prefix and deletes its keys.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { MnemeError } from '../../src/core/errors.ts';
import { SqlOnlineFeatureStore } from '../../src/core/online-features.ts';
import type { FeatureValue, OnlineFeatureStore } from '../../src/core/online-features.ts';
import { closeRedis, openRedis, waitReady } from '../../src/core/store/redis/connection.ts';
import { CorpusNotifier } from '../../src/core/store/redis/notify.ts';
import { ERASE_TOMBSTONE_SECONDS, RedisOnlineFeatureStore } from '../../src/core/store/redis/online-features.ts';
import { RedisTokenBucketLimiter } from '../../src/core/store/redis/rate-limit.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import type { SqliteStore } from '../../src/core/store/sqlite/index.ts';
import { TokenBucketLimiter } from '../../src/chat/rate-limit.ts';
import { eraseUser } from '../../src/chat/users.ts';
import { materializeFeatures } from '../../src/features/materialize.ts';
import { OnlineFeatureReader, OnlineFeatureSync } from '../../src/features/online.ts';
import { dropPrefix, findRedisTestServer, randomPrefix } from './redis-env.ts';
import { engineRunsRequired } from './postgres-env.ts';

const redis = await findRedisTestServer();
/** A Redis nobody listens on: connections are refused (a real failure, not a fake). */
const DEAD_REDIS_URL = 'redis://127.0.0.1:1';
const T0 = Date.parse('2025-03-01T00:00:00.000Z');

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempStore(): SqliteStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-redis-'));
  const store = openSqliteStore(path.join(dir, 'mneme.sqlite'));
  cleanups.push(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

async function createUsers(store: SqliteStore, n: number): Promise<number[]> {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const key = randomUUID().replace(/-/g, '');
    ids.push((await store.users.create({ name: `u${i}_${key.slice(0, 6)}`, apiKeyHash: key.padEnd(64, '0'), keyPrefix: key.slice(0, 8), isAdmin: false, createdAt: new Date(T0).toISOString() })).id);
  }
  return ids;
}

/** A client of the test server with a fresh prefix; its keys are deleted and the client closed after the test. */
async function redisClient(): Promise<{ client: Redis; prefix: string }> {
  const client = openRedis(redis.url!);
  await waitReady(client);
  const prefix = randomPrefix();
  cleanups.push(async () => {
    await dropPrefix(client, prefix);
    await closeRedis(client);
  });
  return { client, prefix };
}

function deadClient(): Redis {
  const client = openRedis(DEAD_REDIS_URL);
  cleanups.push(() => closeRedis(client));
  return client;
}

/** Values of every kind a feature can have, with floats that only survive an exact encoding. */
function sampleValues(seed: number): Record<string, FeatureValue> {
  const vector = Array.from({ length: 384 }, (_, i) => Math.sin(seed * 1000 + i) / 3);
  return {
    count: seed,
    ratio: 0.1 + 0.2,
    tiny: 5e-324,
    big: Number.MAX_SAFE_INTEGER,
    negative: -1.25e-7,
    text: `héllo "quoted" \n ✓ ${seed}`,
    missing: null,
    interest_vector: vector,
    top_collections: ['docs', 'wiki'],
    empty: [],
    by_collection: { docs: 3, wiki: 0.5 },
  };
}

interface OnlineUnderTest {
  online: OnlineFeatureStore;
  users: number[];
}

/** The same suite for every online store. */
function onlineStoreContract(make: (nUsers: number) => Promise<OnlineUnderTest>): void {
  it('round-trips every value exactly (vectors stay arrays of the same float64 values)', async () => {
    const { online, users } = await make(2);
    const values = sampleValues(7);
    await online.write(users[0]!, values);
    const back = await online.read(users[0]!);
    expect(back).toEqual(values);
    expect(Array.isArray(back.interest_vector)).toBe(true);
    const v = back.interest_vector as number[];
    (values.interest_vector as number[]).forEach((x, i) => expect(Object.is(v[i], x)).toBe(true));
    expect(back.ratio).toBe(0.1 + 0.2);
    expect(back.tiny).toBe(5e-324);
    expect(await online.read(users[1]!)).toEqual({});
  });

  it('writes merge per feature and overwrite the named ones', async () => {
    const { online, users } = await make(1);
    const u = users[0]!;
    await online.write(u, { a: 1, b: 'x' });
    await online.write(u, { b: 'y', c: [1, 2] });
    expect(await online.read(u)).toEqual({ a: 1, b: 'y', c: [1, 2] });
  });

  it('writeMany writes each user; erase removes one user only', async () => {
    const { online, users } = await make(3);
    await online.writeMany(users.map((userId, i) => ({ userId, values: sampleValues(i) })));
    for (const [i, u] of users.entries()) expect(await online.read(u)).toEqual(sampleValues(i));
    await online.erase(users[1]!);
    expect(await online.read(users[1]!)).toEqual({});
    expect(await online.read(users[0]!)).toEqual(sampleValues(0));
    expect(await online.read(users[2]!)).toEqual(sampleValues(2));
  });

  it('concurrent writers: 20 users × 10 features written at once, none lost', async () => {
    const { online, users } = await make(20);
    const writes: Array<Promise<void>> = [];
    for (const u of users) for (let f = 0; f < 10; f++) writes.push(online.write(u, { [`f${f}`]: [u, f, u * f + 0.5] }));
    await Promise.all(writes);
    for (const u of users) {
      const got = await online.read(u);
      expect(Object.keys(got).sort()).toEqual(Array.from({ length: 10 }, (_, f) => `f${f}`).sort());
      for (let f = 0; f < 10; f++) expect(got[`f${f}`]).toEqual([u, f, u * f + 0.5]);
    }
  });
}

describe('online feature store contract: sql', () => {
  onlineStoreContract(async (n) => {
    const store = tempStore();
    return { online: new SqlOnlineFeatureStore(store), users: await createUsers(store, n) };
  });
});

if (redis.url === null) {
  if (engineRunsRequired()) {
    describe('redis', () => {
      it('is reachable (CI is set: Redis must be tested)', () => {
        throw new Error(`CI is set but Redis cannot be tested: ${redis.reason}`);
      });
    });
  } else {
    console.warn(`[redis] skipping: ${redis.reason}`);
    describe.skip(`redis (skipped: ${redis.reason})`, () => {
      it('needs a Redis server', () => {});
    });
  }
} else {
  describe('online feature store contract: redis', () => {
    onlineStoreContract(async (n) => {
      const { client, prefix } = await redisClient();
      return { online: new RedisOnlineFeatureStore({ client, prefix }), users: Array.from({ length: n }, (_, i) => 1000 + i) };
    });
  });

  describe('RedisOnlineFeatureStore', () => {
    it('keeps one hash per user: field = feature, value = JSON', async () => {
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      await online.write(42, { clicks: 3, tags: ['a'] });
      expect(await client.hget(`${prefix}:features:42`, 'clicks')).toBe('3');
      expect(await client.hget(`${prefix}:features:42`, 'tags')).toBe('["a"]');
      await expect(online.write(42, { '@v': 1 })).rejects.toThrow(/may not start with "@"/);
    });

    it('skips a write older than the version the user holds', async () => {
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      await online.writeMany([{ userId: 1, values: { x: 'new' } }], 5);
      await online.writeMany([{ userId: 1, values: { x: 'old' } }], 3);
      expect(await online.read(1)).toEqual({ x: 'new' });
      await online.writeMany([{ userId: 1, values: { x: 'same generation' } }], 5);
      expect(await online.read(1)).toEqual({ x: 'same generation' });
      await online.write(1, { x: 'unversioned' });
      await online.writeMany([{ userId: 1, values: { x: 'older again' } }], 4);
      expect(await online.read(1)).toEqual({ x: 'unversioned' });
    });

    it('erase leaves a tombstone that refuses racing writes and fills', async () => {
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      await online.write(9, { a: 1 });
      await online.erase(9);
      expect(await online.readOrMiss(9)).toBeNull();
      await online.writeMany([{ userId: 9, values: { a: 2 } }], 100);
      expect(await online.fill(9, { a: 3 })).toBe(false);
      expect(await online.readOrMiss(9)).toBeNull();
      const ttl = await client.ttl(`${prefix}:features-erased:9`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(ERASE_TOMBSTONE_SECONDS);
    });

    it('fill writes only a missing user, at a version any materialized write beats', async () => {
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      expect(await online.fill(5, {})).toBe(true);
      expect(await online.readOrMiss(5)).toEqual({}); // an empty vector is cached, not a miss
      expect(await online.fill(5, { a: 1 })).toBe(false);
      await online.writeMany([{ userId: 5, values: { a: 2 } }], 1);
      expect(await online.read(5)).toEqual({ a: 2 });
    });

    it('clear and invalidate remove only this prefix / these users', async () => {
      const { client, prefix } = await redisClient();
      const other = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      const neighbour = new RedisOnlineFeatureStore({ client: other.client, prefix: other.prefix });
      await online.writeMany(Array.from({ length: 2500 }, (_, i) => ({ userId: i + 1, values: { n: i } })));
      await neighbour.write(1, { n: -1 });
      await online.invalidate([1, 2]);
      expect(await online.readOrMiss(1)).toBeNull();
      expect(await online.read(3)).toEqual({ n: 2 });
      await online.clear();
      expect(await online.readOrMiss(2500)).toBeNull();
      expect(await neighbour.read(1)).toEqual({ n: -1 });
    });
  });

  describe('OnlineFeatureReader (redis in front of sql)', () => {
    it('a miss reads SQL and fills Redis; later reads come from Redis', async () => {
      const store = tempStore();
      const [u] = await createUsers(store, 1);
      await new SqlOnlineFeatureStore(store).write(u!, { a: [1.5, 2] });
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      const reader = new OnlineFeatureReader({ store, online });
      expect(await reader.read(u!)).toEqual({ a: [1.5, 2] });
      await expect.poll(() => online.readOrMiss(u!)).toEqual({ a: [1.5, 2] });
      await online.write(u!, { a: 'from redis' });
      expect(await reader.read(u!)).toEqual({ a: 'from redis' });
    });

    it('a Redis error falls back to SQL, counted every time, logged once per minute', async () => {
      const store = tempStore();
      const [u] = await createUsers(store, 1);
      await new SqlOnlineFeatureStore(store).write(u!, { a: 1 });
      let fallbacks = 0;
      const warnings: string[] = [];
      let now = T0;
      const reader = new OnlineFeatureReader({
        store,
        online: new RedisOnlineFeatureStore({ client: deadClient(), prefix: randomPrefix() }),
        onFallback: () => fallbacks++,
        logger: { warn: (msg) => warnings.push(msg) },
        now: () => now,
      });
      expect(await reader.read(u!)).toEqual({ a: 1 });
      expect(await reader.read(u!)).toEqual({ a: 1 });
      expect(fallbacks).toBe(2);
      expect(warnings).toHaveLength(1);
      now += 61_000;
      await reader.read(u!);
      expect(warnings).toHaveLength(2);
    });
  });

  describe('materializer → Redis', () => {
    async function logResponses(store: SqliteStore, users: number[], perUser: number): Promise<void> {
      for (const u of users) {
        const conversationId = `conv_${randomUUID()}`;
        for (let t = 0; t < perUser; t++) {
          const outcome = await store.predictions.write({
            id: `resp_${randomUUID()}`, userId: u, conversationId, newConversation: t === 0, turnIndex: t,
            createdAt: new Date(T0 + (u * 100 + t) * 60_000).toISOString(), endpoint: 'chat', request: { message: 'q' },
            query: `question ${t} about things`, queryVector: Float32Array.from([u, t, 1]), history: [], collection: t % 2 ? 'docs' : null,
            topK: 5, retrieved: [], features: { precomputed: {}, on_demand: {} }, promptName: 'answer', promptSha256: 'x',
            renderedPrompt: [], modelBackend: 'extractive', modelId: 'extractive', sampling: null, answer: 'An answer [1].',
            citations: [], timings: {}, promptTokens: null, completionTokens: null, status: 'ok', errorCode: null, errorMessage: null,
          });
          if (!outcome.written) throw new Error('log row not written');
        }
      }
    }

    it('copies each changed user vector after the SQL commit; Redis equals SQL; erase removes the hash', async () => {
      const store = tempStore();
      const users = await createUsers(store, 5);
      await logResponses(store, users, 3);
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      const sync = new OnlineFeatureSync(online, store);
      await materializeFeatures(store, { online: sync, batchRows: 4 });
      for (const u of users) {
        const sql = await store.features.onlineValues(u);
        expect(Object.keys(sql).length).toBeGreaterThan(0);
        expect(await online.readOrMiss(u)).toEqual(sql);
      }
      // A second run with new rows for one user: its whole vector is rewritten, at a newer version.
      await logResponses(store, users.slice(0, 1), 2);
      await materializeFeatures(store, { online: sync });
      expect(await online.read(users[0]!)).toEqual(await store.features.onlineValues(users[0]!));
      expect(Number(await client.hget(`${prefix}:features:${users[0]}`, '@v'))).toBeGreaterThan(Number(await client.hget(`${prefix}:features:${users[1]}`, '@v')));
      // A rebuild clears Redis first, then refills it.
      await client.hset(`${prefix}:features:999999`, 'stale', '1');
      await materializeFeatures(store, { online: sync, rebuild: true });
      expect(await online.readOrMiss(999999)).toBeNull();
      expect(await online.read(users[2]!)).toEqual(await store.features.onlineValues(users[2]!));

      await eraseUser(store, users[3]!, online);
      expect(await client.exists(`${prefix}:features:${users[3]}`)).toBe(0);
      expect(await store.users.findByName('nobody')).toBeNull();
      expect(await store.features.onlineValues(users[3]!)).toEqual({});
    });

    it('a failed copy throws after the SQL commit and is retried by the next run', async () => {
      const store = tempStore();
      const users = await createUsers(store, 2);
      await logResponses(store, users, 2);
      const { client, prefix } = await redisClient();
      const online = new RedisOnlineFeatureStore({ client, prefix });
      const sync = new OnlineFeatureSync(online, store);
      await materializeFeatures(store, { online: sync });
      await logResponses(store, users, 1);
      // A key of the wrong type makes Redis fail the user's write (WRONGTYPE): a real server-side failure.
      await client.set(`${prefix}:features:${users[0]}`, 'not a hash');
      const err = await materializeFeatures(store, { online: sync }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MnemeError);
      expect((err as MnemeError).code).toBe('online_features_stale');
      expect(sync.pending()).toBe(2);
      const sqlAfter = await store.features.onlineValues(users[1]!);
      expect((await store.features.watermarks()).responsesSeq).toBe(6); // the SQL batch stands
      await client.del(`${prefix}:features:${users[0]}`);
      await materializeFeatures(store, { online: sync }); // nothing new to fold: only the retry
      expect(sync.pending()).toBe(0);
      expect(await online.read(users[1]!)).toEqual(sqlAfter);
      expect(await online.read(users[0]!)).toEqual(await store.features.onlineValues(users[0]!));
    });

    it('a Redis that is down fails the copy after the SQL commit (nothing rolled back)', async () => {
      const store = tempStore();
      const users = await createUsers(store, 2);
      await logResponses(store, users, 2);
      const sync = new OnlineFeatureSync(new RedisOnlineFeatureStore({ client: deadClient(), prefix: randomPrefix() }), store);
      const err = await materializeFeatures(store, { online: sync }).catch((e: unknown) => e);
      expect((err as MnemeError).code).toBe('online_features_stale');
      expect(sync.pending()).toBe(3); // both users and the clear of the first (rebuilding) batch
      expect((await store.features.watermarks()).responsesSeq).toBe(4);
    });
  });

  describe('RedisTokenBucketLimiter (Lua)', () => {
    it('allows a burst of perMinute, then refuses with Retry-After; refills over time', async () => {
      const { client, prefix } = await redisClient();
      let now = T0;
      const limiter = new RedisTokenBucketLimiter({ client, prefix, perMinute: 6, now: () => now });
      const remaining: number[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await limiter.take('user:1');
        expect(r.ok).toBe(true);
        if (r.ok) remaining.push(r.remaining);
      }
      expect(remaining).toEqual([5, 4, 3, 2, 1, 0]);
      expect(await limiter.take('user:1')).toEqual({ ok: false, retryAfterSeconds: 10 });
      await expect(limiter.consume('user:1')).rejects.toMatchObject({ code: 'rate_limited', retryAfterSeconds: 10 });
      expect((await limiter.take('user:2')).ok).toBe(true); // other keys have their own bucket
      now += 10_000; // one token back (6 per minute)
      expect(await limiter.peek('user:1')).toEqual({ ok: true, remaining: 1 });
      expect((await limiter.take('user:1')).ok).toBe(true);
      expect((await limiter.take('user:1')).ok).toBe(false);
    });

    it('two limiter instances (two replicas, two connections) share one bucket', async () => {
      const a = await redisClient();
      const bClient = openRedis(redis.url!);
      cleanups.push(() => closeRedis(bClient));
      await waitReady(bClient);
      const replicaA = new RedisTokenBucketLimiter({ client: a.client, prefix: a.prefix, perMinute: 20 });
      const replicaB = new RedisTokenBucketLimiter({ client: bClient, prefix: a.prefix, perMinute: 20 });
      // 60 requests at once, spread over both replicas: exactly the burst gets through (atomic take).
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? replicaA : replicaB).take('user:7')));
      expect(results.filter((r) => r.ok)).toHaveLength(20);
      const ttl = await a.client.pttl(`${a.prefix}:ratelimit:user:7`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(61_000 + 1000);
    });

    it('perMinute 0 never limits; a Redis failure falls back to the local bucket and is reported', async () => {
      const { client, prefix } = await redisClient();
      const off = new RedisTokenBucketLimiter({ client, prefix, perMinute: 0 });
      expect((await off.take('k')).ok).toBe(true);
      const errors: Error[] = [];
      const down = new RedisTokenBucketLimiter({
        client: deadClient(),
        perMinute: 2,
        fallback: new TokenBucketLimiter({ perMinute: 2 }),
        onError: (e) => errors.push(e),
      });
      expect((await down.take('k')).ok).toBe(true);
      expect((await down.take('k')).ok).toBe(true);
      expect((await down.take('k')).ok).toBe(false);
      expect(errors.length).toBe(3);
    });
  });

  describe('CorpusNotifier (pub/sub)', () => {
    it('a notice published on one connection reaches a subscriber on another', async () => {
      const pub = await redisClient();
      const subClient = openRedis(redis.url!);
      cleanups.push(() => closeRedis(subClient));
      const publisher = new CorpusNotifier({ client: pub.client, prefix: pub.prefix });
      const subscriber = new CorpusNotifier({ client: subClient, prefix: pub.prefix });
      cleanups.push(() => subscriber.close());
      const heard: Array<number | null> = [];
      let pokes = 0;
      const unsubscribe = await subscriber.subscribe((head) => {
        heard.push(head);
        pokes++;
      });
      expect(await publisher.publish(41)).toBe(1);
      await publisher.publish(42);
      await expect.poll(() => heard).toEqual([41, 42]);
      expect(pokes).toBe(2);
      await unsubscribe();
      expect(await publisher.publish(43)).toBe(0);
      // Another prefix's notices are not heard.
      const stranger = new CorpusNotifier({ client: pub.client, prefix: randomPrefix() });
      expect(await stranger.publish(1)).toBe(0);
    });

    it('follow keeps retrying while Redis is unreachable and reports each failure', async () => {
      const errors: Error[] = [];
      const notifier = new CorpusNotifier({ client: deadClient() });
      const stop = notifier.follow(() => {}, (e) => errors.push(e));
      await expect.poll(() => errors.length, { timeout: 5000 }).toBeGreaterThan(0);
      await stop();
      await notifier.close();
    });
  });
}
