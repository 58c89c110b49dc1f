/**
 * Ingest jobs of the chat server (issue 14): an upload (POST /v1/documents) becomes a job row in the
 * store (`queued` → `running` → `done`/`failed`, with file and chunk counts and an ETA) that any
 * replica can report, and runs through the ingest pipeline (an IngestFilesFn, the CLI's code path)
 * as the one corpus writer (CorpusWriter: one job after another, never beside a CLI ingest). The
 * uploaded files are removed when the job ends, whatever happened. A CLI ingest (`mneme ingest`) is a
 * job row too (kind `ingest`, no user: admins see it), kept by CliIngestJob.
 *
 * Interrupted jobs: while a job is queued or running, its process rewrites the row at least every
 * JOB_HEARTBEAT_MS (progress writes, else a heartbeat). `failInterruptedJobs` (serve start-up, every
 * JOB_STALE_MS while serving, and the start of every CLI ingest) marks jobs whose row is older than
 * JOB_STALE_MS as failed with JOB_INTERRUPTED_ERROR. This is safe with several replicas on one
 * PostgreSQL database: a job of a live process is never that old, whichever process looks. Limit: a
 * crashed process's job shows `running` for up to JOB_STALE_MS (+ the sweep interval) before it is failed.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { JOB_WAIT_MS } from '../core/corpus-writer.ts';
import type { CorpusWriter, IngestFile, IngestFilesFn, IngestFilesProgress } from '../core/corpus-writer.ts';
import type { JobFailure, JobRecord } from '../core/store/jobs.ts';
import type { Store } from '../core/store/index.ts';
import type { Logger } from './log.ts';

/** Progress is written to the store at most this often while a job runs, in ms. */
export const JOB_PROGRESS_WRITE_MS = 250;
/** A queued or running job's row is rewritten at least this often by its process, in ms (15 s). */
export const JOB_HEARTBEAT_MS = 15_000;
/** A queued/running job whose row is older than this belongs to a process that is gone, in ms (2 min). */
export const JOB_STALE_MS = 120_000;
/** The `error` of a job failed because its process went away. */
export const JOB_INTERRUPTED_ERROR = 'interrupted: the process running this job stopped before it finished';
/** The source scheme of uploaded documents: `upload:NAME` (the sanitized original file name). */
export const UPLOAD_SOURCE_SCHEME = 'upload:';

/** The job as GET /v1/jobs/:id shows it (the contract). */
export interface JobView {
  id: string;
  state: JobRecord['state'];
  collection: string;
  files_total: number;
  files_done: number;
  files_failed: number;
  chunks_embedded: number;
  eta_s: number | null;
  failures: JobFailure[];
  error: string | null;
}

/** The response shape of a job record (pure). */
export function jobView(j: JobRecord): JobView {
  return {
    id: j.id,
    state: j.state,
    collection: j.collection,
    files_total: j.filesTotal,
    files_done: j.filesDone,
    files_failed: j.filesFailed,
    chunks_embedded: j.chunksEmbedded,
    eta_s: j.etaS,
    failures: j.failures,
    error: j.error,
  };
}

/**
 * Seconds left, from the pace so far (pure): elapsed / done × remaining, rounded up to 0.1 s;
 * null before the first file finished.
 */
export function estimateEtaSeconds(elapsedMs: number, done: number, total: number): number | null {
  if (done <= 0 || total <= 0) return null;
  return Math.ceil(((elapsedMs / done) * Math.max(0, total - done)) / 100) / 10;
}

/**
 * Fails the jobs of processes that are gone (rows older than JOB_STALE_MS; see the module comment).
 * @returns how many were failed.
 */
export async function failInterruptedJobs(store: Pick<Store, 'jobs'>, nowMs = Date.now()): Promise<number> {
  return store.jobs.failStale(new Date(nowMs - JOB_STALE_MS).toISOString(), JOB_INTERRUPTED_ERROR);
}

/** Rewrites the job's row every `everyMs` (an empty update stamps updated_at) until stopped. */
export function jobHeartbeat(store: Pick<Store, 'jobs'>, id: string, everyMs = JOB_HEARTBEAT_MS): { stop: () => void } {
  const timer = setInterval(() => {
    store.jobs.update(id, {}).catch(() => undefined);
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** A new job id: `job_<uuid>`. */
export function newJobId(): string {
  return `job_${randomUUID()}`;
}

export interface UploadJob {
  id: string;
  userId: number;
  collection: string;
  /** Files stored under `dir`, with their sanitized names (the source becomes `upload:NAME`). */
  files: Array<{ path: string; name: string }>;
  /** Files refused before the job (e.g. a duplicate part); they count as done and failed. */
  refused: JobFailure[];
  /** The job's upload directory, removed when it ends. */
  dir: string;
}

export interface JobRunnerOptions {
  store: Store;
  writer: CorpusWriter;
  ingest: IngestFilesFn;
  logger: Logger;
}

export class JobRunner {
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly o: JobRunnerOptions) {}

  /** Stores the job (queued) and starts it in the background; resolves with the stored row. */
  async submit(job: UploadJob): Promise<JobRecord> {
    const record = await this.o.store.jobs.create({
      id: job.id,
      kind: 'upload',
      collection: job.collection,
      userId: job.userId,
      filesTotal: job.files.length + job.refused.length,
      failures: job.refused,
    });
    const heartbeat = jobHeartbeat(this.o.store, job.id);
    const run = this.run(job).finally(() => {
      heartbeat.stop();
      this.running.delete(run);
    });
    this.running.add(run);
    return record;
  }

  /** Resolves when every job started by this runner has ended (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private async run(job: UploadJob): Promise<void> {
    const { store } = this.o;
    // Before the final state is written: a client that saw `done`/`failed` finds no upload file left.
    const removeUploads = () => fs.promises.rm(job.dir, { recursive: true, force: true }).catch(() => undefined);
    try {
      await this.o.writer.exclusive('upload', JOB_WAIT_MS, async () => {
        const started = Date.now();
        await store.jobs.update(job.id, { state: 'running' });
        const report = progressWriter(store, { id: job.id, total: job.files.length + job.refused.length, refused: job.refused.length }, started);
        const files: IngestFile[] = job.files.map((f) => ({ path: f.path, sourceUri: `${UPLOAD_SOURCE_SCHEME}${f.name}` }));
        const r = await this.o.ingest({ files, collection: job.collection, onProgress: report.progress });
        await report.flush();
        await removeUploads();
        const failures = [...job.refused, ...r.failures.map((f) => ({ file: f.sourceUri.slice(UPLOAD_SOURCE_SCHEME.length), reason: f.reason }))];
        const total = job.files.length + job.refused.length;
        await store.jobs.update(job.id, {
          state: 'done', filesDone: total, filesFailed: failures.length, chunksEmbedded: r.chunksEmbedded, failures, summary: r.summary,
        });
      });
    } catch (err) {
      this.o.logger.error('upload job failed', { job: job.id, error: (err as Error).message });
      await removeUploads();
      await store.jobs.update(job.id, { state: 'failed', error: (err as Error).message }).catch(() => undefined);
    } finally {
      await removeUploads();
    }
  }
}

/** Throttled progress writes of one job (the last report is written by flush()). `refused`: files failed before the run. */
function progressWriter(
  store: Pick<Store, 'jobs'>,
  job: { id: string; total: number; refused: number },
  started: number,
): { progress: (p: IngestFilesProgress) => void; flush: () => Promise<void> } {
  let last = 0;
  let pending: IngestFilesProgress | null = null;
  let writing: Promise<unknown> = Promise.resolve();
  const write = (p: IngestFilesProgress) => {
    const done = p.filesDone + job.refused;
    writing = writing
      .then(() =>
        store.jobs.update(job.id, {
          filesDone: done, filesFailed: p.filesFailed + job.refused, chunksEmbedded: p.chunksEmbedded, etaS: estimateEtaSeconds(Date.now() - started, done, job.total),
        }),
      )
      .catch(() => undefined);
  };
  return {
    progress: (p) => {
      pending = p;
      if (Date.now() - last < JOB_PROGRESS_WRITE_MS) return;
      last = Date.now();
      pending = null;
      write(p);
    },
    flush: async () => {
      if (pending) write(pending);
      await writing;
    },
  };
}

/** What a CLI ingest reports at its end (IngestSummary of ingest/pipeline.ts, the fields used here). */
export interface CliIngestOutcome {
  documents_seen: number;
  documents_failed: number;
  chunks_embedded: number;
  failed: ReadonlyArray<{ path: string; reason: string }>;
  interrupted?: boolean | undefined;
}

/**
 * The job row of one `mneme ingest` run (kind `ingest`, no user): running from the start, throttled
 * progress, a heartbeat, and the run's counts at the end. Store failures never fail the ingest (the
 * job row is a report, not the work): they are swallowed.
 */
export class CliIngestJob {
  private readonly started = Date.now();
  private readonly heartbeat: { stop: () => void };
  private readonly writer: ReturnType<typeof progressWriter>;

  private constructor(
    private readonly store: Pick<Store, 'jobs'>,
    readonly id: string,
    filesTotal: number,
  ) {
    this.heartbeat = jobHeartbeat(store, id);
    this.writer = progressWriter(store, { id, total: filesTotal, refused: 0 }, this.started);
  }

  /** Stores the job (running). Null when the store refuses (the ingest goes on without a job row). */
  static async start(store: Pick<Store, 'jobs'>, o: { collection: string; filesTotal: number }): Promise<CliIngestJob | null> {
    const id = newJobId();
    try {
      await store.jobs.create({ id, kind: 'ingest', collection: o.collection, userId: null, filesTotal: o.filesTotal });
      await store.jobs.update(id, { state: 'running' });
    } catch {
      return null;
    }
    return new CliIngestJob(store, id, o.filesTotal);
  }

  /** A progress report of the pipeline (written at most every JOB_PROGRESS_WRITE_MS). */
  progress(p: IngestFilesProgress): void {
    this.writer.progress(p);
  }

  /** The run ended: `done` with its counts, or `failed` (interrupted by SIGINT, or `error`). */
  async finish(outcome: CliIngestOutcome | null, error?: unknown): Promise<void> {
    this.heartbeat.stop();
    await this.writer.flush();
    const patch =
      outcome === null
        ? { state: 'failed' as const, error: error instanceof Error ? error.message : String(error) }
        : {
            state: outcome.interrupted ? ('failed' as const) : ('done' as const),
            error: outcome.interrupted ? 'interrupted (SIGINT): what was read is stored; run the same command again to resume' : null,
            filesTotal: outcome.documents_seen,
            filesDone: outcome.documents_seen,
            filesFailed: outcome.documents_failed,
            chunksEmbedded: outcome.chunks_embedded,
            failures: outcome.failed.map((f) => ({ file: f.path, reason: f.reason })),
            summary: outcome,
          };
    await this.store.jobs.update(this.id, patch).catch(() => undefined);
  }
}
