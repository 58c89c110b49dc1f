/**
 * Ingest jobs (issue 14): one row per upload (POST /v1/documents) or CLI ingest run, with its state
 * and progress counts, so any process on the database (every replica on PostgreSQL) can report it.
 * Engine-neutral: record types and the Promise-returning interface; implementations in
 * sqlite/jobs.ts and postgres/jobs.ts.
 */

export type JobState = 'queued' | 'running' | 'done' | 'failed';
export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'done', 'failed'];

/** A file a job could not ingest, and why (a LoadFailureCode such as `binary`, `empty`, `too_large`). */
export interface JobFailure {
  file: string;
  reason: string;
}

export interface JobRecord {
  /** `job_<uuid>`. */
  id: string;
  /** `upload` (POST /v1/documents) or `ingest` (the CLI). */
  kind: string;
  state: JobState;
  collection: string;
  /** Who started it (null: the CLI). */
  userId: number | null;
  filesTotal: number;
  /** Files processed so far: stored, unchanged or failed. */
  filesDone: number;
  filesFailed: number;
  chunksEmbedded: number;
  /** Estimated seconds left; null while unknown and once finished. */
  etaS: number | null;
  failures: JobFailure[];
  /** Why the whole job failed (state `failed`), else null. */
  error: string | null;
  /** The ingest summary once done (IngestSummary of ingest/pipeline.ts), else null. */
  summary: unknown;
  createdAt: string;
  startedAt: string | null;
  updatedAt: string;
  finishedAt: string | null;
}

export interface NewJob {
  id: string;
  kind: string;
  collection: string;
  userId: number | null;
  filesTotal: number;
  /** Failures known before the job runs (files refused while uploading); they count as done and failed. */
  failures?: JobFailure[] | undefined;
}

/** A progress report; absent fields keep their stored value. `running` stamps started_at, `done`/`failed` finished_at. */
export interface JobUpdate {
  state?: JobState | undefined;
  filesTotal?: number | undefined;
  filesDone?: number | undefined;
  filesFailed?: number | undefined;
  chunksEmbedded?: number | undefined;
  etaS?: number | null | undefined;
  failures?: JobFailure[] | undefined;
  error?: string | null | undefined;
  summary?: unknown;
}

export interface JobStore {
  /** Stores a new job in state `queued`. */
  create(job: NewJob): Promise<JobRecord>;
  /** The job, or null when unknown. */
  get(id: string): Promise<JobRecord | null>;
  /** Applies a progress report; returns the updated job, or null when unknown. */
  update(id: string, patch: JobUpdate): Promise<JobRecord | null>;
  /**
   * Marks `queued`/`running` jobs created before `before` as failed with `reason` (a process that
   * ran them died). Returns how many. Not called by mneme: by creation time it would also fail the
   * live jobs of other processes (replicas on one PostgreSQL database, a CLI ingest beside serve);
   * `failStale` is the one used.
   */
  failUnfinished(before: string, reason: string): Promise<number>;
  /**
   * Marks `queued`/`running` jobs whose row was last written before `staleBefore` (ISO-8601 UTC) as
   * failed with `reason`: the process running a job rewrites its row at least every heartbeat
   * (src/chat/jobs.ts), so a row that old belongs to a process that is gone, whichever replica or
   * CLI run it was. Returns how many.
   */
  failStale(staleBefore: string, reason: string): Promise<number>;
}

/** Row shape shared by both engines (snake_case columns); json columns may arrive parsed (PostgreSQL). */
export interface JobRow {
  id: string;
  kind: string;
  state: JobState;
  collection: string;
  user_id: number | string | null;
  files_total: number;
  files_done: number;
  files_failed: number;
  chunks_embedded: number;
  eta_s: number | null;
  failures_json: string | JobFailure[];
  error: string | null;
  summary_json: string | unknown;
  created_at: string;
  started_at: string | null;
  updated_at: string;
  finished_at: string | null;
}

const parsed = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v);

/** The record of a row (both engines). */
export function jobFromRow(r: JobRow): JobRecord {
  return {
    id: r.id,
    kind: r.kind,
    state: r.state,
    collection: r.collection,
    userId: r.user_id === null ? null : Number(r.user_id),
    filesTotal: Number(r.files_total),
    filesDone: Number(r.files_done),
    filesFailed: Number(r.files_failed),
    chunksEmbedded: Number(r.chunks_embedded),
    etaS: r.eta_s === null ? null : Number(r.eta_s),
    failures: (parsed(r.failures_json) as JobFailure[] | null) ?? [],
    error: r.error,
    summary: r.summary_json === null || r.summary_json === undefined ? null : parsed(r.summary_json),
    createdAt: r.created_at,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

/** The row after `patch` (pure; both engines write the whole mutable part of the row). */
export function applyJobUpdate(current: JobRecord, patch: JobUpdate, now: string): JobRecord {
  const state = patch.state ?? current.state;
  const finished = state === 'done' || state === 'failed';
  return {
    ...current,
    state,
    filesTotal: patch.filesTotal ?? current.filesTotal,
    filesDone: patch.filesDone ?? current.filesDone,
    filesFailed: patch.filesFailed ?? current.filesFailed,
    chunksEmbedded: patch.chunksEmbedded ?? current.chunksEmbedded,
    etaS: finished ? null : patch.etaS === undefined ? current.etaS : patch.etaS,
    failures: patch.failures ?? current.failures,
    error: patch.error === undefined ? current.error : patch.error,
    summary: patch.summary === undefined ? current.summary : patch.summary,
    startedAt: current.startedAt ?? (state !== 'queued' ? now : null),
    updatedAt: now,
    finishedAt: current.finishedAt ?? (finished ? now : null),
  };
}
