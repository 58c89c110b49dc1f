/**
 * Runs every store contract suite against every engine. SQLite always runs; further engines join
 * the list when their test server is configured (a skipped engine says why).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe } from 'vitest';
import { DOC_TX_MAX_CHUNKS } from '../../src/core/store/sqlite/corpus.ts';
import { openSqliteStore } from '../../src/core/store/sqlite/index.ts';
import type { EngineUnderTest } from './contract/corpus.ts';
import { corpusStoreContract } from './contract/corpus.ts';
import { chatStoreContract } from './contract/chat.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

export const ENGINES: EngineUnderTest[] = [
  {
    name: 'sqlite',
    boundedChunks: DOC_TX_MAX_CHUNKS,
    async make() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mneme-store-'));
      dirs.push(dir);
      return openSqliteStore(path.join(dir, 'mneme.sqlite'));
    },
  },
];

for (const engine of ENGINES) {
  describe(`${engine.name}: corpus store contract`, () => corpusStoreContract(engine));
  describe(`${engine.name}: users, conversations, predictions, monitoring contract`, () => chatStoreContract(engine));
}
