/**
 * An exclusive, OS-level, per-file lock held through SQLite: the lock file is a (empty) SQLite
 * database opened with better-sqlite3 and kept in a `BEGIN EXCLUSIVE` transaction for as long as
 * the lock is held. SQLite takes the operating system's file lock (POSIX fcntl on Unix), so:
 * - it can never be held twice, across processes or within one (SQLite tracks its own connections);
 * - it is released by the OS when the holder dies, however it dies (kill -9 included): there is no
 *   "stale lock" to detect or delete, hence no takeover race;
 * - a second taker gets SQLITE_BUSY at once (busy_timeout 0).
 * The file is never deleted (deleting a lock file while someone holds it would let a third process
 * lock a new file of the same name).
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';

/** Mode of the lock file: owner read/write only. */
const LOCK_FILE_MODE = 0o600;

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}

/**
 * Creates `file` (0600) unless it exists. An existing file is not opened: POSIX drops every fcntl
 * lock a process holds on a file when it closes any descriptor of that file, so an open + close
 * here would silently release this process's own lock if it already held it.
 */
function createIfMissing(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, 'wx', LOCK_FILE_MODE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * Takes the exclusive lock on `file` (created 0600 if missing), or returns null at once when
 * another connection (any process) holds it.
 * @throws Error when the file cannot be opened or is not a SQLite database.
 */
export function trySqliteFileLock(file: string): { release(): void } | null {
  createIfMissing(file);
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 0');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if (isBusy(err)) return null;
    throw err;
  }
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      try {
        db.exec('ROLLBACK');
      } finally {
        db.close();
      }
    },
  };
}
