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

  it('a refused second try in the holding process keeps the lock held for other processes', async () => {
    const dir = tempDir();
    const a = await acquireLock(dir, 'ingest', 'serve upload 1');
    // What a second concurrent upload in `mneme serve` does. POSIX drops a process's fcntl locks on
    // a file when any descriptor of it is closed: the try must not open and close the lock file.
    await expect(acquireLock(dir, 'ingest', 'serve upload 2')).rejects.toBeInstanceOf(ConflictError);
    const probe = `import { tryExclusiveFileLock } from ${JSON.stringify(path.resolve('src/core/store/lock.ts'))};
      process.stdout.write(tryExclusiveFileLock(${JSON.stringify(path.join(dir, 'ingest.lock.db'))}) === null ? 'refused' : 'taken');`;
    const other = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { encoding: 'utf8' });
    expect(other.stdout, other.stderr).toBe('refused');
    a.release();
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
