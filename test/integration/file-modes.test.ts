/**
 * The data dir holds users' questions, answers and API key hashes: it is created 0700, the database
 * (and its -wal/-shm), the vector index and export outputs are 0600. Real ingest (tiny BERT), real
 * server answer, real export.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportCommand } from '../../src/commands/export.ts';
import { bufferIo, ingestFixtures, postJson, startTestServer, tempDir, testEnv } from './http-helpers.ts';

const mode = (p: string) => fs.statSync(p).mode & 0o777;

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

describe('file modes', () => {
  it('data dir 0700; database, -wal/-shm and index files 0600; export outputs 0600', async () => {
    const dataDir = path.join(tempDir(), 'fresh', 'data');
    const env = testEnv(dataDir);
    await ingestFixtures(env);
    expect(mode(dataDir)).toBe(0o700);
    const srv = await startTestServer(env);
    try {
      const key = await srv.key('olga');
      expect((await postJson(`${srv.url}/v1/chat`, key, { message: 'What does kestrelctl do?' })).status).toBe(200);
      const db = path.join(dataDir, 'mneme.sqlite');
      expect(mode(db)).toBe(0o600);
      for (const side of ['-wal', '-shm']) if (fs.existsSync(db + side)) expect(mode(db + side), side).toBe(0o600);
      const indexFiles = filesUnder(dataDir).filter((f) => !f.startsWith(db) && !f.endsWith('.lock'));
      expect(indexFiles.length).toBeGreaterThan(0);
      for (const f of indexFiles) expect(mode(f), f).toBe(0o600);
      for (const d of fs.readdirSync(dataDir, { withFileTypes: true }).filter((x) => x.isDirectory())) {
        expect(mode(path.join(dataDir, d.name)), d.name).toBe(0o700);
      }
    } finally {
      await srv.stop();
    }
    const outDir = tempDir();
    const out = path.join(outDir, 'sft.jsonl');
    const io = bufferIo(env);
    // The test server answers extractively (no language model): keep those answers so files are written.
    expect(await exportCommand.run(['--format', 'sft', '--out', out, '--include-extractive', '--data-dir', dataDir], io), io.err()).toBe(0);
    const written = filesUnder(outDir);
    expect(written.length).toBeGreaterThan(0);
    for (const f of written) expect(mode(f), f).toBe(0o600);
  }, 60_000);
});
