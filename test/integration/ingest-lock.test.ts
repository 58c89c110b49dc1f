/**
 * The ingest lock can never be held twice: 8 `mneme ingest` processes started at once on a data dir
 * whose lock was left behind by a killed ingest → exactly one proceeds, the 7 others exit 1 naming
 * its pid; with --wait they run one after another instead. Real processes, real kill -9.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, REPO, cliEnv, tempDir } from '../helpers/cli.ts';

/** Processes racing for the lock. */
const RACERS = 8;
/** Documents in the corpus: enough that the winner still holds the lock while the others start. */
const DOCS = 300;

interface Run {
  pid: number;
  code: number;
  stderr: string;
  stdout: string;
}

function start(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: cliEnv(), cwd: REPO });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ pid: child.pid!, code: code ?? -1, stdout, stderr })));
  return { child, done };
}

/** A pid that surely exited: a child run to completion. */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => c.on('close', r));
  return c.pid!;
}

function corpus(): string {
  const dir = tempDir('mneme-lock-corpus-');
  for (let i = 0; i < DOCS; i++) fs.writeFileSync(path.join(dir, `doc-${i}.md`), `# Doc ${i}\n\n${`Paragraph ${i} about topic ${i % 7}. `.repeat(60)}\n`);
  return dir;
}

/** Starts an ingest, waits until it holds the lock, kills it with SIGKILL: its lock record stays behind. */
async function leaveStaleLock(docs: string, dataDir: string): Promise<number> {
  const victim = start(['ingest', docs, '--data-dir', dataDir, '--json']);
  const info = path.join(dataDir, 'ingest.lock');
  for (let i = 0; i < 400 && !fs.existsSync(info); i++) await new Promise((r) => setTimeout(r, 25));
  expect(fs.existsSync(info)).toBe(true);
  victim.child.kill('SIGKILL');
  await victim.done;
  const stale = JSON.parse(fs.readFileSync(info, 'utf8')) as { pid: number };
  expect(stale.pid).toBe(victim.child.pid);
  return stale.pid;
}

describe('ingest lock', () => {
  it(`${RACERS} ingests at once on a stale lock: exactly one proceeds, the others exit 1 naming its pid`, async () => {
    const docs = corpus();
    const dataDir = tempDir();
    const dead = await leaveStaleLock(docs, dataDir);
    const runs = await Promise.all(Array.from({ length: RACERS }, () => start(['ingest', docs, '--data-dir', dataDir, '--json']).done));
    const winners = runs.filter((r) => r.code === 0);
    expect(winners.length, runs.map((r) => `${r.code}: ${r.stderr}`).join('\n')).toBe(1);
    const winner = winners[0]!;
    expect(JSON.parse(winner.stdout.trim().split('\n').pop()!).documents_added).toBeGreaterThan(0);
    for (const r of runs.filter((x) => x !== winner)) {
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`another mneme ingest (pid ${winner.pid},`);
      expect(r.stderr).not.toContain(`pid ${dead},`);
    }
    // Released when the winner ended: the record is gone, the next ingest runs.
    expect(fs.existsSync(path.join(dataDir, 'ingest.lock'))).toBe(false);
  }, 180_000);

  it('with --wait they run one after another, never together', async () => {
    const docs = corpus();
    const dataDir = tempDir();
    await leaveStaleLock(docs, dataDir);
    const runs = await Promise.all(Array.from({ length: 3 }, () => start(['ingest', docs, '--wait', '--data-dir', dataDir, '--json']).done));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const summaries = runs.map((r) => JSON.parse(r.stdout.trim().split('\n').pop()!) as { documents_added: number; documents_unchanged: number });
    // One of them ingested what the killed run left; the others found everything unchanged.
    expect(summaries.filter((s) => s.documents_unchanged === DOCS)).toHaveLength(2);
  }, 180_000);

  it('never held twice: 8 processes try at the same instants, a killed holder\'s record left before each round', async () => {
    const dataDir = tempDir();
    const rounds = 12;
    const roundMs = 400;
    const startAt = Date.now() + 4000; // past every racer's start-up
    const racers = Array.from({ length: RACERS }, () =>
      spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'test/integration/lock-racer.ts'), dataDir, String(startAt), String(roundMs), String(rounds)], { cwd: REPO }),
    );
    const outputs = racers.map((c) => {
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      return new Promise<string>((resolve) => c.on('close', () => resolve(out)));
    });
    // Before each round, after the previous holder released: the record a SIGKILLed holder leaves.
    const dead = await deadPid();
    for (let r = 0; r < rounds; r++) {
      const at = startAt + r * roundMs - roundMs * 0.2;
      await new Promise((res) => setTimeout(res, Math.max(0, at - Date.now())));
      fs.writeFileSync(path.join(dataDir, 'ingest.lock'), JSON.stringify({ pid: dead, host: os.hostname(), started_at: '', command: 'mneme ingest' }));
    }
    const held = (await Promise.all(outputs))
      .flatMap((o) => o.split('\n').filter((l) => l.startsWith('got ')))
      .map((l) => {
        const [, round, from, until] = l.split(' ').map(Number);
        return { round: round!, from: from!, until: until! };
      })
      .sort((a, b) => a.from - b.from);
    // Never held twice: each holding time (measured inside the real one, in ms) starts at or after
    // the previous one ended. A per-round count would also fail on a racer that started late and
    // took a past round's lock after its holder released it (seen once on a loaded CI machine).
    for (let i = 1; i < held.length; i++) expect(held[i]!.from, JSON.stringify(held.slice(i - 1, i + 1))).toBeGreaterThanOrEqual(held[i - 1]!.until);
    // And the lock was taken in every round: the stale records never blocked anyone.
    const taken = new Set(held.map((h) => h.round));
    expect([...taken].sort((a, b) => a - b)).toEqual(Array.from({ length: rounds }, (_, r) => r));
  }, 60_000);
});
