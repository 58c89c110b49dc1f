/**
 * Waiting for a store lease (see Store.tryLease): the corpus writers (`ingest`, `reindex`) hold
 * 'corpus-writer' so that two of them never write one database at once, even from two machines
 * sharing a PostgreSQL server (the data-dir lock only sees its own machine).
 */
import { ConflictError } from './errors.ts';
import type { Store, StoreLease } from './store/index.ts';

/** Lease held by the process that writes the corpus. */
export const CORPUS_WRITER_LEASE = 'corpus-writer';
/** How often a waiting writer retries, in ms. */
export const LEASE_POLL_MS = 500;

/**
 * Takes `name`, waiting up to `waitMs` (0 = not at all) while another process holds it.
 * @throws ConflictError when it is still held after `waitMs`.
 */
export async function acquireLease(store: Store, name: string, waitMs = 0): Promise<StoreLease> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const lease = await store.tryLease(name);
    if (lease) return lease;
    if (Date.now() >= deadline) {
      throw new ConflictError(`another process (maybe on another machine) holds '${name}' on this database; run again when it finishes, or pass --wait`);
    }
    await new Promise((r) => setTimeout(r, LEASE_POLL_MS));
  }
}
