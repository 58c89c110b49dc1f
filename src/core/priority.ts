/**
 * Background work yields the CPU to a server on the same machine: on Linux the nice value is a
 * per-thread attribute that threads created afterwards inherit, so lowering it before the embedding
 * workers start lowers the whole ingest.
 */
import os from 'node:os';

/**
 * Lowers this process's CPU priority to `nice` (never raises it; 0 = leave as is). Returns the nice
 * value in effect. A platform that refuses (no permission, unsupported) keeps its priority: never throws.
 */
export function lowerCpuPriority(nice: number): number {
  try {
    const current = os.getPriority();
    if (nice > current) os.setPriority(nice);
    return os.getPriority();
  } catch {
    return Number.NaN;
  }
}
