/**
 * The PostgreSQL engine (issue 12): one database shared by several replicas, pgvector for dense
 * search. `openPostgresStore(url)` connects, migrates (under an advisory lock) and builds the
 * aggregate stores on one pool.
 *
 * Work in progress: only the corpus aggregate exists on this engine so far, so the store is typed
 * `Pick<Store, 'corpus' | 'close'>`; users, conversations, predictions, monitoring, features and
 * exports join it as their PostgreSQL implementations land, and then it becomes a full `Store`
 * selected by `MNEME_DATABASE_URL`.
 */
import type { Store } from '../index.ts';
import type { PostgresConnectionOptions } from './connection.ts';
import { PostgresConnection } from './connection.ts';
import { PostgresCorpusStore } from './corpus.ts';

/** What the PostgreSQL engine offers today (see the module comment). */
export type PostgresStoreSoFar = Pick<Store, 'corpus' | 'close'> & { readonly engine: 'postgres' };

export class PostgresStore implements PostgresStoreSoFar {
  readonly engine = 'postgres' as const;
  readonly corpus: PostgresCorpusStore;

  /** @param connection an open connection; the store owns it from now on (close() closes it). */
  constructor(readonly connection: PostgresConnection) {
    this.corpus = new PostgresCorpusStore(connection);
  }

  /** Closes the pool (idempotent); queries already running finish first. */
  async close(): Promise<void> {
    await this.connection.close();
  }
}

/**
 * Connects to the PostgreSQL database at `url` (`postgres://user@host:port/db`), applies pending
 * migrations and returns the store.
 * @throws UnavailableError('database_busy') when the server cannot be reached; ConfigError when a
 * migration was edited after being applied, was written by a newer mneme, or fails (pgvector missing).
 */
export async function openPostgresStore(url: string, options: PostgresConnectionOptions = {}): Promise<PostgresStore> {
  return new PostgresStore(await PostgresConnection.open(url, options));
}
