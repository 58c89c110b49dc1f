/**
 * `mneme ingest` as a real child process (issue 14, item 2): SIGINT finishes the current document,
 * prints what was stored and how to resume, exits 130; the rerun stores the rest and doctor passes.
 * Not a terminal here, so progress is the periodic summary line (the bar: ingest-progress unit test
 * and the pty case below).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, cliEnv, REPO, runCli, tempDir } from '../helpers/cli.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const FILES = 1200;

/** A corpus big enough that an ingest takes seconds with the tiny test model. */
function corpus(): string {
  const root = tempDir('mneme-corpus-');
  dirs.push(root);
  for (let i = 0; i < FILES; i++) {
    const paras = Array.from({ length: 8 }, (_, j) => `Paragraph ${j} of note ${i} talks about widget ${i * 31 + j} and gear ratio ${(i * 7 + j) % 97}. `.repeat(6));
    fs.writeFileSync(path.join(root, `note-${String(i).padStart(4, '0')}.md`), `# Note ${i}\n\n${paras.join('\n\n')}\n`);
  }
  return root;
}

function liveDocuments(dbFile: string): number {
  if (!fs.existsSync(dbFile)) return 0;
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT count(*) FROM documents WHERE deleted_at IS NULL').pluck().get() as number;
  } catch {
    return 0;
  } finally {
    db.close();
  }
}

describe('mneme ingest and SIGINT', () => {
  it('stops after the current document, says what was stored and how to resume, exits 130; the rerun finishes the job', async () => {
    const root = corpus();
    const dataDir = tempDir();
    dirs.push(dataDir);
    const env = cliEnv({ MNEME_DATA_DIR: dataDir });
    const child = spawn(process.execPath, [BIN, 'ingest', root, '--collection', 'notes'], { env, cwd: REPO });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? -1 : 0))));
    const dbFile = path.join(dataDir, 'mneme.sqlite');
    const deadline = Date.now() + 60_000;
    while (liveDocuments(dbFile) === 0 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    expect(child.exitCode, `ingest finished before it could be interrupted: ${stderr}`).toBeNull();
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(130);
    expect(stderr).toContain('stopping after the current document');
    const stored = liveDocuments(dbFile);
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThan(FILES);
    const m = /interrupted: stored (\d+) added and (\d+) updated documents \((\d+) chunks\)/.exec(stderr);
    expect(m, stderr).not.toBeNull();
    expect(Number(m![1])).toBe(stored);
    expect(stderr).toContain(`run the same command again to resume (unchanged files cost only a hash): mneme ingest ${root} --collection notes`);
    expect(stdout).toMatch(/documents seen/);

    const again = runCli(['ingest', root, '--collection', 'notes', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    const s = again.json as { documents_added: number; documents_unchanged: number };
    expect(s.documents_added + s.documents_unchanged).toBe(FILES);
    expect(s.documents_unchanged).toBe(stored);
    const doctor = runCli(['doctor'], env);
    expect(doctor.code, doctor.stdout).toBe(0);
  }, 180_000);
});
