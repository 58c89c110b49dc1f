/**
 * The PostgreSQL engine (issue 12): one database shared by several replicas, pgvector for dense
 * search. `openPostgresStore(url)` connects, migrates (under an advisory lock) and builds every
 * aggregate store on one pool: a full {@link Store}, interchangeable with the SQLite engine's.
 */
import type { Store, StoreLease } from '../index.ts';
import type { PostgresConnectionOptions } from './connection.ts';
import { PostgresConnection } from './connection.ts';
import { PostgresCollectionStore } from './collections.ts';
import { PostgresConversationStore } from './conversations.ts';
import { PostgresCorpusStore } from './corpus.ts';
import { PostgresExportSource } from './exports.ts';
import { PostgresFeatureTableStore } from './features.ts';
import { PostgresMonitoringStore } from './monitoring.ts';
import { PostgresPredictionStore } from './predictions.ts';
import { PostgresReleaseStore } from './releases.ts';
import { PostgresJobStore } from './jobs.ts';
import { PostgresUserStore } from './users.ts';

export class PostgresStore implements Store {
  readonly engine = 'postgres' as const;
  readonly corpus: PostgresCorpusStore;
  readonly users: PostgresUserStore;
  readonly conversations: PostgresConversationStore;
  readonly predictions: PostgresPredictionStore;
  readonly monitoring: PostgresMonitoringStore;
  readonly features: PostgresFeatureTableStore;
  readonly exports: PostgresExportSource;
  readonly releases: PostgresReleaseStore;
  readonly jobs: PostgresJobStore;
  readonly collections: PostgresCollectionStore;

  /** @param connection an open connection; the store owns it from now on (close() closes it). */
  constructor(readonly connection: PostgresConnection) {
    this.corpus = new PostgresCorpusStore(connection);
    this.users = new PostgresUserStore(connection);
    this.conversations = new PostgresConversationStore(connection);
    this.predictions = new PostgresPredictionStore(connection);
    this.monitoring = new PostgresMonitoringStore(connection);
    this.features = new PostgresFeatureTableStore(connection);
    this.exports = new PostgresExportSource(connection);
    this.releases = new PostgresReleaseStore(connection);
    this.jobs = new PostgresJobStore(connection);
    this.collections = new PostgresCollectionStore(connection);
  }

  async tryLease(name: string): Promise<StoreLease | null> {
    // Session-level advisory locks belong to one connection: hold a client for the lease's life.
    const client = await this.connection.connect();
    try {
      const r = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended('mneme-lease:' || $1, 0)) AS ok", [name]);
      if (!r.rows[0]?.ok) {
        client.release();
        return null;
      }
    } catch (err) {
      client.release();
      throw err;
    }
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        try {
          await client.query("SELECT pg_advisory_unlock(hashtextextended('mneme-lease:' || $1, 0))", [name]);
          client.release();
        } catch (err) {
          // A broken connection loses its locks with it: drop it from the pool.
          client.release(err as Error);
        }
      },
    };
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
