/**
 * Runs every store contract suite against every engine. SQLite always runs; further engines join
 * the list when their test server is configured (a skipped engine says why).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/core/store/index.ts';
import { DOC_TX_MAX_CHUNKS } from '../../src/core/store/sqlite/corpus.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import { DOC_TX_MAX_CHUNKS as PG_DOC_TX_MAX_CHUNKS } from '../../src/core/store/postgres/corpus.ts';
import { openPostgresStore } from '../../src/core/store/postgres/index.ts';
import type { ChatEngineUnderTest } from './contract/chat.ts';
import type { EngineUnderTest } from './contract/corpus.ts';
import { corpusStoreContract } from './contract/corpus.ts';
import { chatStoreContract } from './contract/chat.ts';
import { featureExportContract } from './contract/features.ts';
import { releaseStoreContract } from './contract/releases.ts';
import { documentsContract } from './contract/documents.ts';
import { collectionsContract } from './contract/collections.ts';
import { apiKeyContract } from './contract/api-keys.ts';
import { jobLivenessContract } from './contract/job-liveness.ts';
import { engineRunsRequired, findPostgresTestServer } from './postgres-env.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A second handle on the same database (another process or replica), for cross-process cases. */
interface Twinnable {
  makePair(): Promise<[Store, Store]>;
}

export const ENGINES: Array<EngineUnderTest & ChatEngineUnderTest & Twinnable> = [
  {
    name: 'sqlite',
    boundedChunks: DOC_TX_MAX_CHUNKS,
    async make() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-store-'));
      dirs.push(dir);
      return openSqliteStore(path.join(dir, 'mneme.sqlite'));
    },
    async makePair() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-store-'));
      dirs.push(dir);
      const file = path.join(dir, 'mneme.sqlite');
      return [openSqliteStore(file), openSqliteStore(file)];
    },
  },
];

// PostgreSQL (issue 12): when MNEME_TEST_DATABASE_URL is set and reachable; every make() is a fresh
// database on that server, dropped after the file. It runs every contract SQLite runs.
const postgres = await findPostgresTestServer();
afterAll(async () => {
  await postgres.server?.dropCreatedDatabases();
});
if (postgres.server) {
  const server = postgres.server;
  ENGINES.push({
    name: 'postgres',
    boundedChunks: PG_DOC_TX_MAX_CHUNKS,
    nativeVectorSearch: true,
    async make() {
      return openPostgresStore(await server.createDatabase());
    },
    async makePair() {
      const url = await server.createDatabase();
      return [await openPostgresStore(url), await openPostgresStore(url)];
    },
  });
} else if (engineRunsRequired()) {
  describe('postgres: store contracts', () => {
    it('runs in CI (MNEME_TEST_DATABASE_URL must point at a reachable server)', () => {
      throw new Error(`CI is set but the PostgreSQL engine cannot be tested: ${postgres.reason}`);
    });
  });
} else {
  console.warn(`[store engines] skipping PostgreSQL: ${postgres.reason}`);
  describe.skip(`postgres: store contracts (skipped: ${postgres.reason})`, () => {
    it('needs a PostgreSQL server', () => undefined);
  });
}

for (const engine of ENGINES) {
  describe(`${engine.name}: corpus store contract`, () => corpusStoreContract(engine));
  describe(`${engine.name}: users, conversations, predictions, monitoring contract`, () => chatStoreContract(engine));
  describe(`${engine.name}: features and exports contract`, () => featureExportContract(engine));
  describe(`${engine.name}: releases contract`, () => releaseStoreContract(engine));
  describe(`${engine.name}: documents and jobs contract`, () => documentsContract(engine));
  describe(`${engine.name}: collections access contract`, () => collectionsContract(engine));
  describe(`${engine.name}: API keys contract`, () => apiKeyContract(engine));
  describe(`${engine.name}: job liveness contract`, () => jobLivenessContract(engine));
}

for (const engine of ENGINES) {
  describe(`${engine.name}: leases across processes`, () => {
    it('a lease is held by one store at a time, released by release(), per name', async () => {
      const [a, b] = await engine.makePair();
      try {
        const held = await a.tryLease('writer');
        expect(held).not.toBeNull();
        expect(await b.tryLease('writer')).toBeNull();
        const other = await b.tryLease('materializer');
        expect(other).not.toBeNull();
        await held!.release();
        await held!.release(); // idempotent
        const next = await b.tryLease('writer');
        expect(next).not.toBeNull();
        expect(await a.tryLease('writer')).toBeNull();
        await next!.release();
        await other!.release();
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
}
