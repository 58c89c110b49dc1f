/**
 * Ingest jobs of the chat server (issue 14): an upload (POST /v1/documents) becomes a job row in the
 * store (`queued` → `running` → `done`/`failed`, with file and chunk counts and an ETA) that any
 * replica can report, and runs through the ingest pipeline (an IngestFilesFn, the CLI's code path)
 * as the one corpus writer (CorpusWriter: one job after another, never beside a CLI ingest). The
 * uploaded files are removed when the job ends, whatever happened.
 */
import fs from 'node:fs';
import { JOB_WAIT_MS } from '../core/corpus-writer.ts';
import type { CorpusWriter, IngestFile, IngestFilesFn, IngestFilesProgress } from '../core/corpus-writer.ts';
import type { JobFailure, JobRecord } from '../core/store/jobs.ts';
import type { Store } from '../core/store/index.ts';
import type { Logger } from './log.ts';

/** Progress is written to the store at most this often while a job runs, in ms. */
export const JOB_PROGRESS_WRITE_MS = 250;
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
    const run = this.run(job).finally(() => this.running.delete(run));
    this.running.add(run);
    return record;
  }

  /** Resolves when every job started by this runner has ended (shutdown, tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private async run(job: UploadJob): Promise<void> {
    const { store } = this.o;
    try {
      await this.o.writer.exclusive('upload', JOB_WAIT_MS, async () => {
        const started = Date.now();
        await store.jobs.update(job.id, { state: 'running' });
        const report = progressWriter(store, job, started);
        const files: IngestFile[] = job.files.map((f) => ({ path: f.path, sourceUri: `${UPLOAD_SOURCE_SCHEME}${f.name}` }));
        const r = await this.o.ingest({ files, collection: job.collection, onProgress: report.progress });
        await report.flush();
        const failures = [...job.refused, ...r.failures.map((f) => ({ file: f.sourceUri.slice(UPLOAD_SOURCE_SCHEME.length), reason: f.reason }))];
        const total = job.files.length + job.refused.length;
        await store.jobs.update(job.id, {
          state: 'done', filesDone: total, filesFailed: failures.length, chunksEmbedded: r.chunksEmbedded, failures, summary: r.summary,
        });
      });
    } catch (err) {
      this.o.logger.error('upload job failed', { job: job.id, error: (err as Error).message });
      await store.jobs.update(job.id, { state: 'failed', error: (err as Error).message }).catch(() => undefined);
    } finally {
      await fs.promises.rm(job.dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

/** Throttled progress writes of one job (the last report is written by flush()). */
function progressWriter(store: Store, job: UploadJob, started: number): { progress: (p: IngestFilesProgress) => void; flush: () => Promise<void> } {
  let last = 0;
  let pending: IngestFilesProgress | null = null;
  let writing: Promise<unknown> = Promise.resolve();
  const total = job.files.length + job.refused.length;
  const write = (p: IngestFilesProgress) => {
    const done = p.filesDone + job.refused.length;
    writing = writing
      .then(() =>
        store.jobs.update(job.id, {
          filesDone: done, filesFailed: p.filesFailed + job.refused.length, chunksEmbedded: p.chunksEmbedded, etaS: estimateEtaSeconds(Date.now() - started, done, total),
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
