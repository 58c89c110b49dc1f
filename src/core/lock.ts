/**
 * A per-data-dir exclusive lock file for writers that must not run twice at once (ingest, reindex).
 * A lock left by a killed process (its pid is gone) is taken over.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConflictError } from './errors.ts';

/** Poll interval while waiting for a lock, in ms. */
export const LOCK_POLL_MS = 250;

interface LockInfo {
  pid: number;
  host: string;
  started_at: string;
  command: string;
}

export interface Lock {
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryAcquire(file: string, command: string): LockInfo | null {
  const info: LockInfo = { pid: process.pid, host: os.hostname(), started_at: new Date().toISOString(), command };
  try {
    fs.writeFileSync(file, JSON.stringify(info), { flag: 'wx' });
    return null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder: LockInfo | null = null;
  try {
    holder = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
  } catch {
    // Unreadable or half-written lock: its writer died between create and write.
  }
  if (holder && (holder.host !== os.hostname() || alive(holder.pid))) return holder;
  // Stale: remove it and race for it again (another process may win; that's fine).
  fs.rmSync(file, { force: true });
  return tryAcquire(file, command);
}

/**
 * Takes `<dataDir>/<name>.lock`.
 * @param waitMs how long to wait for a live holder, in ms (0 = fail at once).
 * @throws ConflictError naming the holder's pid and command when the lock stays taken.
 */
export async function acquireLock(dataDir: string, name: string, command: string, waitMs = 0): Promise<Lock> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, `${name}.lock`);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const holder = tryAcquire(file, command);
    if (!holder) break;
    if (Date.now() >= deadline) {
      throw new ConflictError(
        `another ${holder.command} (pid ${holder.pid}, started ${holder.started_at}) is using ${dataDir}; wait for it to finish or pass --wait`,
        { details: { pid: holder.pid } },
      );
    }
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    try {
      const holder = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo;
      if (holder.pid === process.pid) fs.rmSync(file, { force: true });
    } catch {
      // Already gone.
    }
  };
  process.on('exit', release);
  return { release };
}
