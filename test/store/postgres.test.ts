/**
 * PostgreSQL-engine specifics (the shared corpus contract runs in engines.test.ts): checksummed
 * migrations under an advisory lock, the change feed's commit order across replicas, the feed head,
 * and pgvector's HNSW index serving filtered dense search. Needs MNEME_TEST_DATABASE_URL (see
 * postgres-env.ts): skipped with the reason printed when unset, a failure when CI is set.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.ts';
import { calibrateStoreSearch, recalibrateStoreIfGrown } from '../../src/core/index-store.ts';
import { HybridRetriever } from '../../src/chat/retrieve.ts';
import type { NewChunk, NewDocument } from '../../src/core/store/corpus.ts';
import { migrationChecksum, POSTGRES_MIGRATIONS_DIR, PostgresConnection } from '../../src/core/store/postgres/connection.ts';
import { hnswIndexName, pgToVector, vectorToPg } from '../../src/core/store/postgres/corpus.ts';
import { openPostgresStore } from '../../src/core/store/postgres/index.ts';
import { tempDir } from '../helpers/cli.ts';
import { engineRunsRequired, findPostgresTestServer } from './postgres-env.ts';

const postgres = await findPostgresTestServer();
afterAll(async () => {
  await postgres.server?.dropCreatedDatabases();
});

function copyMigrations(): string {
  const dir = tempDir('mneme-pg-migrations-');
  for (const f of fs.readdirSync(POSTGRES_MIGRATIONS_DIR)) fs.copyFileSync(path.join(POSTGRES_MIGRATIONS_DIR, f), path.join(dir, f));
  return dir;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

let n = 0;
const doc = (collection: string, name: string): NewDocument => ({
  collection,
  sourceUri: `/docs/${name}`,
  contentSha256: `sha-${name}-${++n}`,
  title: name,
  kind: 'text/plain',
  bytes: 1,
});
const chunk = (ord: number, text: string, vector?: Float32Array): NewChunk => ({ ord, text, headingPath: '', tokenCount: 1, contentSha256: `h-${text}`, vector });
function unit(dim: number, salt: number): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = Math.sin(salt * 13.1 + i * 0.7);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

if (!postgres.server) {
  if (engineRunsRequired()) {
    it('PostgreSQL engine tests run in CI (MNEME_TEST_DATABASE_URL must point at a reachable server)', () => {
      throw new Error(`CI is set but the PostgreSQL engine cannot be tested: ${postgres.reason}`);
    });
  } else {
    console.warn(`[postgres engine] skipping: ${postgres.reason}`);
    describe.skip(`PostgreSQL engine (skipped: ${postgres.reason})`, () => {
      it('needs a PostgreSQL server', () => undefined);
    });
  }
} else {
  const server = postgres.server;

  describe('PostgresConnection migrations', () => {
    it('migrates once, recording each file with its sha256; a second open applies nothing', async () => {
      const url = await server.createDatabase();
      const c = await PostgresConnection.open(url);
      const rows = await c.rows<{ name: string; sha256: string }>('SELECT name, sha256 FROM schema_migrations ORDER BY name');
      expect(rows.map((r) => r.name)).toEqual(fs.readdirSync(POSTGRES_MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).sort());
      for (const r of rows) expect(r.sha256).toBe(migrationChecksum(fs.readFileSync(path.join(POSTGRES_MIGRATIONS_DIR, r.name), 'utf8')));
      await c.close();
      const again = await PostgresConnection.open(url);
      expect(await again.rows('SELECT name FROM schema_migrations')).toHaveLength(rows.length);
      await again.close();
    });

    it('refuses to start when an applied migration was edited, naming the file; a CRLF checkout is no edit', async () => {
      const migrations = copyMigrations();
      const url = await server.createDatabase();
      await (await PostgresConnection.open(url, { migrationsDir: migrations })).close();
      const file = path.join(migrations, '030_corpus.sql');
      const original = fs.readFileSync(file, 'utf8');
      fs.writeFileSync(file, original.replace(/\n/g, '\r\n'));
      await (await PostgresConnection.open(url, { migrationsDir: migrations })).close();
      fs.writeFileSync(file, `${original}\n-- an innocent-looking edit\n`);
      const err = await PostgresConnection.open(url, { migrationsDir: migrations }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain('030_corpus.sql');
      expect((err as Error).message).toContain('edited after it was applied');
    });

    it('refuses a database migrated by a newer mneme', async () => {
      const migrations = copyMigrations();
      const url = await server.createDatabase();
      fs.writeFileSync(path.join(migrations, '999_future.sql'), 'CREATE TABLE future_thing (x integer);');
      await (await PostgresConnection.open(url, { migrationsDir: migrations })).close();
      fs.rmSync(path.join(migrations, '999_future.sql'));
      await expect(PostgresConnection.open(url, { migrationsDir: migrations })).rejects.toThrow(/999_future\.sql/);
    });

    it('a failing migration is rolled back, named, and not recorded', async () => {
      const migrations = copyMigrations();
      const url = await server.createDatabase();
      fs.writeFileSync(path.join(migrations, '998_broken.sql'), 'CREATE TABLE half_done (x integer); SELECT no_such_function();');
      const err = await PostgresConnection.open(url, { migrationsDir: migrations }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain('998_broken.sql');
      const left = await withClient(url, async (c) => ({
        table: (await c.query("SELECT to_regclass('half_done') AS t")).rows[0].t as string | null,
        recorded: (await c.query("SELECT count(*)::int AS n FROM schema_migrations WHERE name = '998_broken.sql'")).rows[0].n as number,
      }));
      expect(left).toEqual({ table: null, recorded: 0 });
    });

    it('several replicas starting at once on an empty database: one migrates, all open', async () => {
      const url = await server.createDatabase();
      const conns = await Promise.all(Array.from({ length: 4 }, () => PostgresConnection.open(url, { max: 2 })));
      const rows = await conns[0]!.rows<{ name: string }>('SELECT name FROM schema_migrations');
      expect(rows).toHaveLength(fs.readdirSync(POSTGRES_MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).length);
      await Promise.all(conns.map((c) => c.close()));
    });
  });

  describe('PostgreSQL corpus engine', () => {
    it('vectors travel through pgvector exactly (every float32 read back bit for bit)', async () => {
      const s = await openPostgresStore(await server.createDatabase());
      try {
        const v = new Float32Array([0.1, -1e-7, 3.4028234663852886e38, 1 / 3, 2 ** -126, 2 ** -149, -123456.789]);
        const r = await s.corpus.replaceDocument(doc('c', 'v'), [chunk(0, 'v', v)], null, 'm');
        const back = (await s.corpus.vectorsOf('m', [r.vectorsAdded[0]![0]])).get(r.vectorsAdded[0]![0])!;
        expect(Array.from(back)).toEqual(Array.from(v));
        expect(Array.from(pgToVector(vectorToPg(v)))).toEqual(Array.from(v));
      } finally {
        await s.close();
      }
    });

    it('the feed head is the highest committed seq: a writer still in its transaction is not counted, truncation keeps it', async () => {
      const url = await server.createDatabase();
      const s = await openPostgresStore(url);
      try {
        const r = await s.corpus.replaceDocument(doc('c', 'a'), [chunk(0, 'alpha')], null, null);
        const head = (await s.corpus.feedBounds()).head;
        expect(head).toBeGreaterThan(0);
        await withClient(url, async (c) => {
          await c.query('BEGIN');
          await c.query("INSERT INTO chunks (document_id, ord, text, heading_path, token_count, content_sha256, tsv) VALUES ($1, 1, 'beta', '', 1, 'h', mneme_chunk_tsv('a', '', 'beta'))", [r.documentId]);
          // The in-flight change holds a sequence number already; a reader must not treat it as applied.
          expect((await s.corpus.feedBounds()).head).toBe(head);
          await c.query('COMMIT');
        });
        const after = (await s.corpus.feedBounds()).head;
        expect(after).toBeGreaterThan(head);
        expect(await s.corpus.truncateFeed(after)).toBeGreaterThan(0);
        expect(await s.corpus.feedBounds()).toEqual({ head: after, first: null });
        await s.corpus.replaceDocument(doc('c', 'b'), [chunk(0, 'gamma')], null, null);
        expect((await s.corpus.feedBounds()).first).toBeGreaterThan(after);
      } finally {
        await s.close();
      }
    });

    it('two replicas writing at once: a reader following the feed by seq misses no change', async () => {
      const url = await server.createDatabase();
      const [a, b, reader] = await Promise.all([openPostgresStore(url), openPostgresStore(url), openPostgresStore(url)]);
      try {
        const seen = new Set<number>();
        let applied = 0;
        let writing = true;
        const follow = (async () => {
          for (;;) {
            const last = !writing;
            for (const ch of await reader.corpus.changesSince(applied, 500)) {
              if (ch.op === 'chunk+') seen.add(ch.chunkId);
              applied = ch.seq;
            }
            if (last) return;
            await new Promise((r) => setImmediate(r));
          }
        })();
        const write = (s: typeof a, who: string) =>
          Promise.all(Array.from({ length: 4 }, async (_, w) => {
            for (let i = 0; i < 10; i++) await s.corpus.replaceDocument(doc('c', `${who}-${w}-${i}`), [chunk(0, `t ${who} ${w} ${i}`), chunk(1, 'u')], null, null);
          }));
        await Promise.all([write(a, 'a'), write(b, 'b')]);
        writing = false;
        await follow;
        const all = (await reader.corpus.chunkSources('c')).map((x) => x.id);
        expect(all).toHaveLength(160);
        expect(all.filter((id) => !seen.has(id))).toEqual([]);
      } finally {
        await Promise.all([a.close(), b.close(), reader.close()]);
      }
    });

    it('dense search goes through the model\'s HNSW index; a filter to a small collection still fills `limit`', async () => {
      const url = await server.createDatabase();
      const s = await openPostgresStore(url);
      const dim = 8;
      try {
        for (let d = 0; d < 3; d++) {
          const chunks = Array.from({ length: 1000 }, (_, i) => chunk(i, `big ${d} ${i}`, unit(dim, d * 1000 + i)));
          await s.corpus.replaceDocument(doc('big', `big-${d}`), chunks, null, 'm');
        }
        const small: number[] = [];
        for (let i = 0; i < 6; i++) small.push((await s.corpus.replaceDocument(doc('small', `small-${i}`), [chunk(0, `small ${i}`, unit(dim, 90_000 + i))], null, 'm')).vectorsAdded[0]![0]);
        // Created after the vectors: the index is built in bulk over them.
        await s.corpus.createGeneration({ modelId: 'm', dimension: dim, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 64, hnswEfSearch: 40 }, 'active');
        await withClient(url, (c) => c.query('ANALYZE'));
        const scans = () =>
          withClient(url, async (c) => Number((await c.query('SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1', [hnswIndexName('m', dim)])).rows[0]?.idx_scan ?? -1));
        const before = await scans();
        expect(before).toBeGreaterThanOrEqual(0);
        // ef_search 40 candidates near the big collection hold no small chunk: only an iterative scan finds 5.
        const hits = await s.corpus.searchVector('m', unit(dim, 3), { limit: 5, collection: 'small' });
        expect(hits).toHaveLength(5);
        expect(hits.every((h) => small.includes(h.chunkId))).toBe(true);
        const top = await s.corpus.searchVector('m', unit(dim, 1003), { limit: 3 });
        expect(top[0]!.score).toBeCloseTo(1, 5);
        // A session's index statistics reach the others when it ends (or within seconds): close, then look.
        await s.close();
        const deadline = Date.now() + 5_000;
        let after = await scans();
        while (after <= before && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          after = await scans();
        }
        expect(after).toBeGreaterThan(before);
      } finally {
        await s.close();
      }
    });

    it('calibrates pgvector\'s ef_search as the HNSW file\'s is: the smallest ef reaching the recall becomes searchVector\'s default', async () => {
      const url = await server.createDatabase();
      const s = await openPostgresStore(url);
      const dim = 24;
      let seed = 11;
      const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
      const randomUnit = () => {
        const v = Float32Array.from({ length: dim }, () => rand() - 0.5);
        const norm = Math.hypot(...v);
        return v.map((x) => x / norm);
      };
      try {
        for (let d = 0; d < 4; d++) {
          await s.corpus.replaceDocument(doc('c', `cal-${d}`), Array.from({ length: 600 }, (_, i) => chunk(i, `cal ${d} ${i}`, randomUnit())), null, 'm');
        }
        // A sparse graph over random vectors: a short candidate list misses neighbours.
        const meta = await s.corpus.createGeneration({ modelId: 'm', dimension: dim, pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 4, hnswEfConstruction: 8, hnswEfSearch: 11 }, 'active');
        // As an ingest's end: statistics, so the planner takes the HNSW index over an exact scan (with
        // none it guesses a few hundred rows and sorts them: recall 1 at every ef).
        await s.corpus.optimizeFullText();
        const cal = await calibrateStoreSearch(s, meta, { ladder: [11, 40, 400], target: 0.95, queries: 100 });
        expect(cal).not.toBeNull();
        expect(cal!.vectors).toBe(2400);
        expect(cal!.ef, `recall ${cal!.recall}`).toBeGreaterThan(11);
        expect(cal!.recall).toBeGreaterThanOrEqual(0.95);
        expect((await s.corpus.activeGeneration())!.calibration).toEqual(cal);
        // searchVector without an ef now searches at the calibrated one, not at the generation's 11.
        let differs = 0;
        for (let i = 0; i < 20; i++) {
          const q = randomUnit();
          const byDefault = await s.corpus.searchVector('m', q, { limit: 11 });
          expect(byDefault).toEqual(await s.corpus.searchVector('m', q, { limit: 11, efSearch: cal!.ef }));
          if (JSON.stringify(byDefault) !== JSON.stringify(await s.corpus.searchVector('m', q, { limit: 11, efSearch: 11 }))) differs++;
        }
        expect(differs).toBeGreaterThan(0);
        // A server's dense search: the calibrated ef, or the one MNEME_HNSW_EF_SEARCH forces.
        // A query whose neighbours differ between the two efs, so the comparison tells them apart.
        let q = randomUnit();
        for (let i = 0; i < 100 && JSON.stringify(await s.corpus.searchVector('m', q, { limit: 11, efSearch: 11 })) === JSON.stringify(await s.corpus.searchVector('m', q, { limit: 11, efSearch: cal!.ef })); i++) q = randomUnit();
        for (const [override, ef] of [[null, cal!.ef], [11, 11]] as const) {
          const retriever = new HybridRetriever({ store: s, embedder: null, index: { meta, hnsw: null, feedSeq: 0, efSearchOverride: override }, syncIntervalMs: 60_000 });
          try {
            expect(await retriever.searchDense(q, 11), `override ${override}`).toEqual(await s.corpus.searchVector('m', q, { limit: 11, efSearch: ef }));
          } finally {
            retriever.close();
          }
        }
        // Grown by less than CALIBRATION_GROWTH_FACTOR: an ingest's end leaves it.
        expect(await recalibrateStoreIfGrown(s, meta)).toBeNull();
      } finally {
        await s.close();
      }
    });

    it('activating another model drops the old model\'s HNSW index with its vectors', async () => {
      const url = await server.createDatabase();
      const s = await openPostgresStore(url);
      try {
        const g = { pooling: 'mean', normalized: true, maxTokens: 16, hnswM: 16, hnswEfConstruction: 64, hnswEfSearch: 40 };
        await s.corpus.createGeneration({ ...g, modelId: 'A', dimension: 4 }, 'active');
        const b = await s.corpus.createGeneration({ ...g, modelId: 'B/with "quotes"', dimension: 6 }, 'building');
        const indexes = () => withClient(url, async (c) => (await c.query("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' AND indexname LIKE 'embeddings_hnsw_%' ORDER BY 1")).rows.map((r) => r.indexname as string));
        expect(await indexes()).toEqual([hnswIndexName('A', 4), hnswIndexName('B/with "quotes"', 6)].sort());
        await s.corpus.activateGeneration(b.generation);
        expect(await indexes()).toEqual([hnswIndexName('B/with "quotes"', 6)]);
      } finally {
        await s.close();
      }
    });
  });
}
