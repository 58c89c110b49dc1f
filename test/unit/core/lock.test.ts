import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError } from '../../../src/core/errors.ts';
import { acquireLock } from '../../../src/core/lock.ts';
import { tempDir } from '../../helpers/cli.ts';

describe('acquireLock', () => {
  it('is exclusive while held and free after release', async () => {
    const dir = tempDir();
    const a = await acquireLock(dir, 'ingest', 'test');
    await expect(acquireLock(dir, 'ingest', 'other')).rejects.toBeInstanceOf(ConflictError);
    a.release();
    const b = await acquireLock(dir, 'ingest', 'test');
    b.release();
    expect(fs.existsSync(path.join(dir, 'ingest.lock'))).toBe(false);
  });

  it('takes over a lock whose process is gone', async () => {
    const dir = tempDir();
    // A pid that surely exited: a child we ran to completion.
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
    fs.writeFileSync(path.join(dir, 'ingest.lock'), JSON.stringify({ pid: dead, host: (await import('node:os')).hostname(), started_at: '', command: 'x' }));
    const l = await acquireLock(dir, 'ingest', 'test');
    l.release();
  });

  it('takes over a half-written lock file', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'ingest.lock'), '{"pid":');
    const l = await acquireLock(dir, 'ingest', 'test');
    l.release();
  });

  it('waits for a live holder when asked', async () => {
    const dir = tempDir();
    const a = await acquireLock(dir, 'ingest', 'test');
    setTimeout(() => a.release(), 300);
    const t0 = Date.now();
    const b = await acquireLock(dir, 'ingest', 'test', 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    b.release();
  });
});
