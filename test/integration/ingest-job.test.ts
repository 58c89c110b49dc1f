/**
 * Jobs loose ends (issue 14): a CLI ingest is a job row (kind `ingest`) with the CLI's counts, visible
 * to admins through GET /v1/jobs/:id; jobs left queued/running by a process that died (row older than
 * JOB_STALE_MS) are failed as interrupted at the start of an ingest and of `mneme serve`, while a job
 * whose row is fresh (another live process's) is left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_INTERRUPTED_ERROR, JOB_STALE_MS } from '../../src/chat/jobs.ts';
import { ingestCommand } from '../../src/commands/ingest.ts';
import { startServer } from '../../src/commands/serve.ts';
import { loadConfig } from '../../src/core/config.ts';
import type { TestServer } from './http-helpers.ts';
import { authHeaders, bufferIo, FIXTURE_DOCS, startTestServer, tempDir, testEnv } from './http-helpers.ts';

describe('ingest jobs and interrupted jobs', () => {
  let env: Record<string, string>;
  let srv: TestServer;

  beforeAll(async () => {
    env = testEnv(tempDir());
    srv = await startTestServer(env);
  });
  afterAll(async () => {
    await srv?.stop();
  });

  /** A job row as a process would have left it: `state`, last written `ageMs` ago. */
  function plantJob(id: string, state: 'queued' | 'running', ageMs: number): void {
    const at = new Date(Date.now() - ageMs).toISOString();
    srv.db
      .prepare("INSERT INTO jobs (id, kind, state, collection, user_id, files_total, created_at, started_at, updated_at) VALUES (?, 'upload', ?, 'default', NULL, 3, ?, ?, ?)")
      .run(id, state, at, state === 'running' ? at : null, at);
  }
  const jobRow = (id: string) => srv.db.prepare('SELECT state, error FROM jobs WHERE id = ?').get(id) as { state: string; error: string | null };

  it('mneme ingest records a job with its counts (admins see it, others 404) and fails only stale unfinished jobs first', async () => {
    plantJob('job_crashed-running', 'running', JOB_STALE_MS + 60_000);
    plantJob('job_crashed-queued', 'queued', JOB_STALE_MS + 1_000);
    plantJob('job_other-replica', 'running', 5_000);
    const io = bufferIo(env);
    expect(await ingestCommand.run([FIXTURE_DOCS, '--json'], io)).toBe(0);
    const summary = JSON.parse(io.out().trim().split('\n').at(-1)!) as { job_id: string; documents_seen: number; documents_failed: number; chunks_embedded: number; failed: Array<{ path: string; reason: string }> };
    expect(summary.job_id).toMatch(/^job_[0-9a-f-]{36}$/);

    expect(jobRow('job_crashed-running')).toEqual({ state: 'failed', error: JOB_INTERRUPTED_ERROR });
    expect(jobRow('job_crashed-queued')).toEqual({ state: 'failed', error: JOB_INTERRUPTED_ERROR });
    expect(jobRow('job_other-replica')).toEqual({ state: 'running', error: null });

    const admin = await srv.key('ingest-admin', true);
    const r = await fetch(`${srv.url}/v1/jobs/${summary.job_id}`, { headers: authHeaders(admin) });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({
      id: summary.job_id, state: 'done', collection: 'default',
      files_total: summary.documents_seen, files_done: summary.documents_seen, files_failed: summary.documents_failed,
      chunks_embedded: summary.chunks_embedded, eta_s: null,
      failures: summary.failed.map((f) => ({ file: f.path, reason: f.reason })), error: null,
    });
    expect(summary.documents_seen).toBeGreaterThan(0);
    expect(srv.db.prepare('SELECT kind, user_id FROM jobs WHERE id = ?').get(summary.job_id)).toEqual({ kind: 'ingest', user_id: null });
    const user = await srv.key('ingest-user');
    expect((await fetch(`${srv.url}/v1/jobs/${summary.job_id}`, { headers: authHeaders(user) })).status).toBe(404);
  });

  it('mneme serve fails stale unfinished jobs at start-up and leaves fresh ones', async () => {
    plantJob('job_before-serve', 'running', JOB_STALE_MS + 5_000);
    plantJob('job_live-elsewhere', 'queued', 1_000);
    const running = await startServer(loadConfig({ ...env, MNEME_PORT: '0', MNEME_HOST: '127.0.0.1' }), bufferIo(env), { graceMs: 100 });
    try {
      expect(jobRow('job_before-serve')).toEqual({ state: 'failed', error: JOB_INTERRUPTED_ERROR });
      expect(jobRow('job_live-elsewhere')).toEqual({ state: 'queued', error: null });
    } finally {
      await running.shutdown();
    }
  });
});
