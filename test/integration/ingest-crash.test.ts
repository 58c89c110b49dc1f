import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { BIN, cliEnv, REPO, runCli, tempDir } from '../helpers/cli.ts';

function makeCorpus(n: number): string {
  const dir = tempDir('mneme-crash-corpus-');
  for (let i = 0; i < n; i++) {
    const body = Array.from({ length: 12 }, (_, j) => `Section ${j} of note ${i} covers subject ${(i * 7 + j) % 31} in some depth. `.repeat(6)).join('\n\n');
    fs.writeFileSync(path.join(dir, `note-${String(i).padStart(4, '0')}.md`), `# Note ${i}\n\n${body}\n`);
  }
  return dir;
}

function countDocs(dataDir: string): number {
  const file = path.join(dataDir, 'mneme.sqlite');
  if (!fs.existsSync(file)) return 0;
  try {
    const db = new Database(file, { readonly: true, timeout: 1000 });
    try {
      return (db.prepare('SELECT count(*) AS n FROM documents').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

function chunkStats(dataDir: string): { chunks: number; docs: number; dupes: number; orphans: number; vectors: number } {
  const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
  try {
    const one = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    return {
      chunks: one('SELECT count(*) AS n FROM chunks'),
      docs: one('SELECT count(*) AS n FROM documents WHERE deleted_at IS NULL'),
      dupes: one('SELECT count(*) AS n FROM (SELECT document_id, ord FROM chunks GROUP BY document_id, ord HAVING count(*) > 1)'),
      orphans: one('SELECT count(*) AS n FROM chunks WHERE document_id NOT IN (SELECT id FROM documents WHERE deleted_at IS NULL)'),
      vectors: one('SELECT count(*) AS n FROM embeddings'),
    };
  } finally {
    db.close();
  }
}

describe('kill -9 during ingestion', () => {
  it('a rerun completes, doctor passes, and nothing is duplicated or orphaned', async () => {
    const corpus = makeCorpus(400);
    const dataDir = tempDir();
    const child = spawn(process.execPath, [BIN, 'ingest', corpus, '--data-dir', dataDir, '--json'], { env: cliEnv(), cwd: REPO, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // Kill it once some documents are committed but (with 400 files) well before the end.
    let docs = 0;
    // Up to 90 s: on a loaded 2-core machine the first window (model load + embedding) can take long.
    for (let i = 0; i < 3600; i++) {
      docs = countDocs(dataDir);
      if (docs > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill('SIGKILL');
    const signal = await exited;
    expect(signal).toBe('SIGKILL');
    const partial = countDocs(dataDir);
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(400);

    // The killed run left its lock behind: the rerun must take it over, not refuse.
    const rerun = runCli(['ingest', corpus, '--data-dir', dataDir, '--json']);
    expect(rerun.code, rerun.stderr).toBe(0);
    const s = rerun.json as { documents_added: number; documents_unchanged: number };
    expect(s.documents_added + s.documents_unchanged).toBe(400);
    const doctor = runCli(['doctor', '--data-dir', dataDir, '--json']);
    expect(doctor.code, doctor.stdout).toBe(0);

    // Same totals as an uninterrupted ingest of the same corpus.
    const clean = tempDir();
    expect(runCli(['ingest', corpus, '--data-dir', clean]).code).toBe(0);
    const got = chunkStats(dataDir);
    const want = chunkStats(clean);
    expect(got.dupes).toBe(0);
    expect(got.orphans).toBe(0);
    expect(got.docs).toBe(400);
    expect(got.chunks).toBe(want.chunks);
    expect(got.vectors).toBe(want.vectors);
  }, 180_000);
});

/** A JSON file of `n` records: the chunker keeps one chunk per record, so it is one huge document. */
function hugeJson(n: number, variant: string): string {
  const dir = tempDir('mneme-huge-');
  const records = Array.from({ length: n }, (_, i) => ({ text: `Record ${i} (${variant}) describes valve ${i % 97} and gauge ${(i * 13) % 89}.` }));
  fs.writeFileSync(path.join(dir, 'records.json'), JSON.stringify(records));
  return dir;
}

function stagingRows(dataDir: string): number {
  try {
    const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true, timeout: 1000 });
    try {
      return (db.prepare("SELECT count(*) AS n FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.source_uri LIKE 'staging:%'").get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

function chunkSet(dataDir: string): { texts: string[]; vectors: string[] } {
  const db = new Database(path.join(dataDir, 'mneme.sqlite'), { readonly: true });
  try {
    const rows = db
      .prepare(
        `SELECT c.text AS text, hex(e.vector) AS v FROM chunks c JOIN documents d ON d.id = c.document_id
         LEFT JOIN embeddings e ON e.chunk_id = c.id WHERE d.deleted_at IS NULL ORDER BY c.ord`,
      )
      .all() as Array<{ text: string; v: string | null }>;
    return { texts: rows.map((r) => r.text), vectors: rows.map((r) => r.v ?? '') };
  } finally {
    db.close();
  }
}

describe('kill -9 inside the bounded transactions of one huge document', () => {
  it('leaves the old version or the new one, never half; a rerun equals a clean run; doctor passes', async () => {
    const records = 3500; // 3.5 bounded transactions of DOC_TX_MAX_CHUNKS
    const corpus = hugeJson(records, 'v1');
    const dataDir = tempDir();
    const child = spawn(process.execPath, [BIN, 'ingest', corpus, '--data-dir', dataDir], { env: cliEnv(), cwd: REPO, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    let staged = 0;
    for (let i = 0; i < 2400 && staged === 0; i++) {
      staged = stagingRows(dataDir);
      if (staged === 0) await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // Killed between two bounded transactions: part of the staging copy exists, nothing is visible.
    expect(staged).toBeGreaterThan(0);
    expect(chunkSet(dataDir).texts).toEqual([]);

    const rerun = runCli(['ingest', corpus, '--data-dir', dataDir, '--json']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(stagingRows(dataDir)).toBe(0);
    const doctor = runCli(['doctor', '--data-dir', dataDir, '--json']);
    expect(doctor.code, doctor.stdout).toBe(0);

    const clean = tempDir();
    expect(runCli(['ingest', corpus, '--data-dir', clean]).code).toBe(0);
    const got = chunkSet(dataDir);
    const want = chunkSet(clean);
    expect(got.texts).toHaveLength(records);
    expect(got.texts).toEqual(want.texts);
    expect(got.vectors).toEqual(want.vectors);
  }, 180_000);
});
