/** PostgreSQL implementation of {@link JobStore} (070_jobs.sql). */
import { nowIso } from '../../clock.ts';
import type { JobRecord, JobRow, JobStore, JobUpdate, NewJob } from '../jobs.ts';
import { applyJobUpdate, jobFromRow } from '../jobs.ts';
import type { PostgresConnection } from './connection.ts';

export class PostgresJobStore implements JobStore {
  constructor(private readonly c: PostgresConnection) {}

  async create(job: NewJob): Promise<JobRecord> {
    const now = nowIso();
    const failures = job.failures ?? [];
    await this.c.run(
      `INSERT INTO jobs (id, kind, state, collection, user_id, files_total, files_done, files_failed, failures_json, created_at, updated_at)
       VALUES ($1, $2, 'queued', $3, $4, $5, $6, $6, $7::json, $8, $8)`,
      [job.id, job.kind, job.collection, job.userId, job.filesTotal, failures.length, JSON.stringify(failures), now],
    );
    return (await this.get(job.id))!;
  }

  async get(id: string): Promise<JobRecord | null> {
    const r = await this.c.one<JobRow>('SELECT * FROM jobs WHERE id = $1', [id]);
    return r ? jobFromRow(r) : null;
  }

  async update(id: string, patch: JobUpdate): Promise<JobRecord | null> {
    return this.c.tx(async (q) => {
      const r = await q.one<JobRow>('SELECT * FROM jobs WHERE id = $1 FOR UPDATE', [id]);
      if (!r) return null;
      const j = applyJobUpdate(jobFromRow(r), patch, nowIso());
      await q.run(
        `UPDATE jobs SET state = $1, files_total = $2, files_done = $3, files_failed = $4, chunks_embedded = $5, eta_s = $6, failures_json = $7::json,
           error = $8, summary_json = $9::json, started_at = $10, updated_at = $11, finished_at = $12 WHERE id = $13`,
        [j.state, j.filesTotal, j.filesDone, j.filesFailed, j.chunksEmbedded, j.etaS, JSON.stringify(j.failures), j.error,
          j.summary === null ? null : JSON.stringify(j.summary), j.startedAt, j.updatedAt, j.finishedAt, id],
      );
      return j;
    });
  }

  async failUnfinished(before: string, reason: string): Promise<number> {
    const now = nowIso();
    return this.c.run(
      "UPDATE jobs SET state = 'failed', error = $1, eta_s = NULL, updated_at = $2, finished_at = $2 WHERE state IN ('queued', 'running') AND created_at < $3",
      [reason, now, before],
    );
  }

  async failStale(staleBefore: string, reason: string): Promise<number> {
    const now = nowIso();
    return this.c.run(
      "UPDATE jobs SET state = 'failed', error = $1, eta_s = NULL, updated_at = $2, finished_at = $2 WHERE state IN ('queued', 'running') AND updated_at < $3",
      [reason, now, staleBefore],
    );
  }
}
