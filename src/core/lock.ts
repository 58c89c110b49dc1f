/**
 * A per-data-dir exclusive lock for writers that must not run twice at once (ingest, reindex, eval).
 *
 * The lock itself is an OS-level file lock on `<dataDir>/<name>.lock.db`, held through SQLite's
 * `BEGIN EXCLUSIVE` for the whole run (src/core/store/lock.ts): it can never be held twice, a second
 * taker is refused at once, and the OS releases it when the holder dies, so a killed run leaves
 * nothing to clean up and there is no stale-lock takeover to race on.
 *
 * Who holds it is recorded beside it, in `<dataDir>/<name>.lock` (JSON: pid, host, started_at,
 * command; written atomically once the lock is held, removed before it is released). It is only
 * information for the error message: a leftover from a killed run is simply overwritten.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConflictError } from './errors.ts';
import { tryExclusiveFileLock } from './store/lock.ts';

/** Poll interval while waiting for a lock, in ms. */
export const LOCK_POLL_MS = 250;
/** How long a refused taker waits for the new holder to record itself, in ms. */
const HOLDER_INFO_WAIT_MS = 500;
const HOLDER_INFO_POLL_MS = 25;

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

function readHolder(file: string): LockInfo | null {
  try {
    const info = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockInfo>;
    return typeof info.pid === 'number' ? (info as LockInfo) : null;
  } catch {
    return null;
  }
}

/**
 * The recorded holder of a lock we were refused. Right after a takeover the file may still name
 * the previous (dead) holder or be missing for a moment: wait briefly for the new one to record
 * itself, then report what is there.
 */
async function currentHolder(infoFile: string): Promise<LockInfo | null> {
  const deadline = Date.now() + HOLDER_INFO_WAIT_MS;
  for (;;) {
    const holder = readHolder(infoFile);
    const current = holder !== null && (holder.host !== os.hostname() || alive(holder.pid));
    if (current || Date.now() >= deadline) return holder;
    await new Promise((r) => setTimeout(r, HOLDER_INFO_POLL_MS));
  }
}

/** Writes `info` to `file` atomically (temp file + rename), owner-only. */
function writeHolder(file: string, info: LockInfo): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(info), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/**
 * Takes the `<name>` lock of `dataDir` (creating the directory 0700 if needed).
 * @param command who takes it, for the holder record ("mneme ingest").
 * @param waitMs how long to wait for a live holder, in ms (0 = fail at once).
 * @throws ConflictError naming the holder's pid and command when the lock stays taken.
 */
export async function acquireLock(dataDir: string, name: string, command: string, waitMs = 0): Promise<Lock> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lockFile = path.join(dataDir, `${name}.lock.db`);
  const infoFile = path.join(dataDir, `${name}.lock`);
  const deadline = Date.now() + waitMs;
  let held = tryExclusiveFileLock(lockFile);
  while (!held) {
    if (Date.now() >= deadline) {
      const holder = await currentHolder(infoFile);
      const who = holder ? `${holder.command} (pid ${holder.pid}, started ${holder.started_at})` : 'process';
      throw new ConflictError(`another ${who} is using ${dataDir}; wait for it to finish or pass --wait`, {
        details: holder ? { pid: holder.pid } : undefined,
      });
    }
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    held = tryExclusiveFileLock(lockFile);
  }
  const lock = held;
  try {
    writeHolder(infoFile, { pid: process.pid, host: os.hostname(), started_at: new Date().toISOString(), command });
  } catch (err) {
    lock.release();
    throw err;
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    // The record goes first: once the lock is free, the next holder writes its own.
    if (readHolder(infoFile)?.pid === process.pid) fs.rmSync(infoFile, { force: true });
    lock.release();
  };
  process.on('exit', release);
  return { release };
}
