/**
 * Engine-neutral face of the OS-level file lock the CLI's writers use (src/core/lock.ts): the
 * implementation lives with the SQLite engine (src/core/store/sqlite/lock.ts), the only place
 * allowed to use the SQLite driver.
 */
import { trySqliteFileLock } from './sqlite/lock.ts';

/** A held exclusive lock. */
export interface FileLock {
  /** Releases it (idempotent). The OS releases it too when the process dies. */
  release(): void;
}

/**
 * Takes the exclusive lock on `file`, or returns null at once when it is held elsewhere.
 * @throws Error when the file cannot be opened.
 */
export function tryExclusiveFileLock(file: string): FileLock | null {
  return trySqliteFileLock(file);
}
