/** SQLite implementation of {@link JobStore} (070_jobs.sql). */
import { nowIso } from '../../clock.ts';
import type { JobRecord, JobRow, JobStore, JobUpdate, NewJob } from '../jobs.ts';
import { applyJobUpdate, jobFromRow } from '../jobs.ts';
import type { SqliteConnection } from './connection.ts';

const SQL_GET = 'SELECT * FROM jobs WHERE id = ?';

export class SqliteJobStore implements JobStore {
  constructor(private readonly c: SqliteConnection) {}

  async create(job: NewJob): Promise<JobRecord> {
    const now = nowIso();
    const failures = job.failures ?? [];
    await this.c.write(() =>
      this.c
        .stmt(
          `INSERT INTO jobs (id, kind, state, collection, user_id, files_total, files_done, files_failed, failures_json, created_at, updated_at)
           VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(job.id, job.kind, job.collection, job.userId, job.filesTotal, failures.length, failures.length, JSON.stringify(failures), now, now),
    );
    return (await this.get(job.id))!;
  }

  async get(id: string): Promise<JobRecord | null> {
    const r = this.c.stmt<[string], JobRow>(SQL_GET).get(id);
    return r ? jobFromRow(r) : null;
  }

  async update(id: string, patch: JobUpdate): Promise<JobRecord | null> {
    return this.c.write(() => {
      const r = this.c.stmt<[string], JobRow>(SQL_GET).get(id);
      if (!r) return null;
      const j = applyJobUpdate(jobFromRow(r), patch, nowIso());
      this.c
        .stmt(
          `UPDATE jobs SET state = ?, files_total = ?, files_done = ?, files_failed = ?, chunks_embedded = ?, eta_s = ?, failures_json = ?,
             error = ?, summary_json = ?, started_at = ?, updated_at = ?, finished_at = ? WHERE id = ?`,
        )
        .run(j.state, j.filesTotal, j.filesDone, j.filesFailed, j.chunksEmbedded, j.etaS, JSON.stringify(j.failures), j.error,
          j.summary === null ? null : JSON.stringify(j.summary), j.startedAt, j.updatedAt, j.finishedAt, id);
      return j;
    });
  }

  async failUnfinished(before: string, reason: string): Promise<number> {
    const now = nowIso();
    return this.c.write(
      () =>
        this.c
          .stmt("UPDATE jobs SET state = 'failed', error = ?, eta_s = NULL, updated_at = ?, finished_at = ? WHERE state IN ('queued', 'running') AND created_at < ?")
          .run(reason, now, now, before).changes,
    );
  }

  async failStale(staleBefore: string, reason: string): Promise<number> {
    const now = nowIso();
    return this.c.write(
      () =>
        this.c
          .stmt("UPDATE jobs SET state = 'failed', error = ?, eta_s = NULL, updated_at = ?, finished_at = ? WHERE state IN ('queued', 'running') AND updated_at < ?")
          .run(reason, now, now, staleBefore).changes,
    );
  }
}
