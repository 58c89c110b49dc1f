/**
 * The embedded engine: one SQLite file (WAL) holding everything. `openSqliteStore(file)` opens and
 * migrates it and builds each aggregate store on the one shared connection.
 */
import path from 'node:path';
import type { Store, StoreLease } from '../index.ts';
import { trySqliteFileLock } from './lock.ts';
import type { SqliteConnectionOptions } from './connection.ts';
import { SqliteConnection } from './connection.ts';
import { SqliteReader } from './reader.ts';
import { SqliteCollectionStore } from './collections.ts';
import { SqliteConversationStore } from './conversations.ts';
import { SqliteCorpusStore } from './corpus.ts';
import { SqliteExportSource } from './exports.ts';
import { SqliteFeatureTableStore } from './features.ts';
import { SqliteJobStore } from './jobs.ts';
import { SqliteMonitoringStore } from './monitoring.ts';
import { SqlitePredictionStore } from './predictions.ts';
import { SqliteReleaseStore } from './releases.ts';
import { SqliteUserStore } from './users.ts';

export class SqliteStore implements Store {
  readonly engine = 'sqlite' as const;
  private reader: SqliteReader | null = null;
  readonly corpus: SqliteCorpusStore;
  readonly users: SqliteUserStore;
  readonly conversations: SqliteConversationStore;
  readonly predictions: SqlitePredictionStore;
  readonly monitoring: SqliteMonitoringStore;
  readonly features: SqliteFeatureTableStore;
  readonly exports: SqliteExportSource;
  readonly releases: SqliteReleaseStore;
  readonly jobs: SqliteJobStore;
  readonly collections: SqliteCollectionStore;

  /** @param connection an open connection; the store owns it from now on (close() closes it). */
  constructor(readonly connection: SqliteConnection) {
    this.corpus = new SqliteCorpusStore(connection);
    this.users = new SqliteUserStore(connection);
    this.conversations = new SqliteConversationStore(connection);
    this.predictions = new SqlitePredictionStore(connection);
    this.monitoring = new SqliteMonitoringStore(connection);
    this.features = new SqliteFeatureTableStore(connection);
    this.exports = new SqliteExportSource(connection);
    this.releases = new SqliteReleaseStore(connection);
    this.jobs = new SqliteJobStore(connection);
    this.collections = new SqliteCollectionStore(connection);
  }

  /** The database file. */
  get file(): string {
    return this.connection.file;
  }

  async tryLease(name: string): Promise<StoreLease | null> {
    if (!/^[\w.-]{1,64}$/.test(name)) throw new RangeError(`lease name must be letters, digits, "_", "-", "." (got ${JSON.stringify(name)})`);
    const lock = trySqliteFileLock(path.join(path.dirname(this.connection.file), `${name}.lease.lock`));
    return lock ? { release: async () => lock.release() } : null;
  }

  /**
   * Moves the heavy full-text searches to a reader thread with its own connection (servers: an FTS5
   * query over a large corpus must not block the event loop), once the thread has started (see
   * readerReady). Idempotent; closed by close().
   */
  startReader(): void {
    if (this.reader) return;
    this.reader = new SqliteReader(this.connection.file, this.connection.ftsNativeWanted);
    this.corpus.useReader(this.reader);
  }

  /** Resolves true once the reader thread answers searches (until then they run here), false if it failed or none was started. */
  async readerReady(): Promise<boolean> {
    return this.reader ? this.reader.ready : false;
  }

  async close(): Promise<void> {
    if (!this.connection.isOpen) return;
    this.corpus.useReader(null);
    await this.reader?.close();
    this.reader = null;
    // Let writes already queued finish before the handle goes.
    await this.connection.write(() => undefined).catch(() => undefined);
    this.connection.close();
  }
}

/**
 * Opens (creating and migrating if needed) the SQLite store at `file`.
 * @throws ConfigError when the file cannot be opened or a migration was edited after being applied.
 */
export function openSqliteStore(file: string, options: SqliteConnectionOptions = {}): SqliteStore {
  return new SqliteStore(new SqliteConnection(file, options));
}
