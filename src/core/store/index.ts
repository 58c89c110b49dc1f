/**
 * The data layer: every SQL statement of mneme lives under src/core/store/. Pipelines, routes and
 * commands call the typed, Promise-returning aggregate stores below; none of them sees a database
 * handle. The record types are defined here, per aggregate, and imported by the pipelines (never
 * the other way round).
 *
 * Engines: `sqlite` (the embedded default: one file in the data dir, see sqlite/) — PostgreSQL
 * fits behind the same interface (its own folder, selected by configuration).
 */
import type { CollectionStore } from './collections.ts';
import type { ConversationStore } from './conversations.ts';
import type { CorpusStore } from './corpus.ts';
import type { ExportSource } from './exports.ts';
import type { FeatureTableStore } from './features.ts';
import type { JobStore } from './jobs.ts';
import type { MonitoringStore } from './monitoring.ts';
import type { PredictionStore } from './predictions.ts';
import type { ReleaseStore } from './releases.ts';
import type { UserStore } from './users.ts';

export type StoreEngine = 'sqlite' | 'postgres';

export interface Store {
  readonly engine: StoreEngine;
  /** Documents, chunks, embeddings, index generations, corpus state, change feed. */
  readonly corpus: CorpusStore;
  /** Users, API keys, erasure. */
  readonly users: UserStore;
  /** Conversations and messages. */
  readonly conversations: ConversationStore;
  /** The prediction log and feedback. */
  readonly predictions: PredictionStore;
  /** Read-only aggregates for /admin. */
  readonly monitoring: MonitoringStore;
  /** User feature tables (offline history, online values, state, watermarks). */
  readonly features: FeatureTableStore;
  /** Snapshot reads for the training-data export. */
  readonly exports: ExportSource;
  /** Releases (versioned answer configurations), their traffic states and audit. */
  readonly releases: ReleaseStore;
  /** Ingest jobs (uploads and CLI runs) and their progress. */
  readonly jobs: JobStore;
  /** Collections' access rows (public/private, grants); no row = public. */
  readonly collections: CollectionStore;
  /**
   * An exclusive named lease among every process using this store (every replica on PostgreSQL:
   * an advisory lock; every process on the SQLite file: an OS file lock beside it), or null at once
   * when another holder has it. Released by `release()` or when the holder dies.
   */
  tryLease(name: string): Promise<StoreLease | null>;
  /** Closes the engine (idempotent); pending writes finish first. */
  close(): Promise<void>;
}

export interface StoreLease {
  /** Releases the lease (idempotent). */
  release(): Promise<void>;
}

export type { CollectionStore } from './collections.ts';
export type { ConversationStore } from './conversations.ts';
export type { CorpusStore } from './corpus.ts';
export type { ExportSource } from './exports.ts';
export type { FeatureTableStore } from './features.ts';
export type { JobStore } from './jobs.ts';
export type { MonitoringStore } from './monitoring.ts';
export type { PredictionStore } from './predictions.ts';
export type { ReleaseStore } from './releases.ts';
export type { UserStore } from './users.ts';
