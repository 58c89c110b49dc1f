/**
 * Jobs of processes that are gone (issue 14, jobs loose ends), run against every engine from
 * test/store/engines.test.ts: failStale fails only queued/running jobs whose row was last written
 * before the cut-off, so a live process's job (rewritten by its heartbeat) is never touched.
 */
import { expect, it } from 'vitest';
import type { Store } from '../../../src/core/store/index.ts';

export interface JobEngineUnderTest {
  name: string;
  make(): Promise<Store>;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function jobLivenessContract(engine: JobEngineUnderTest): void {
  it('failStale fails unfinished jobs last written before the cut-off, and only those', async () => {
    const s = await engine.make();
    try {
      const job = (id: string) => s.jobs.create({ id, kind: 'ingest', collection: 'c', userId: null, filesTotal: 2 });
      await job('job_old-queued');
      await job('job_old-running');
      await s.jobs.update('job_old-running', { state: 'running' });
      await job('job_old-done');
      await s.jobs.update('job_old-done', { state: 'done' });
      await job('job_beating');
      await s.jobs.update('job_beating', { state: 'running' });
      await pause(30);
      const cut = new Date().toISOString();
      await pause(30);
      await job('job_fresh');
      // A heartbeat (an empty update) after the cut-off keeps an older job alive.
      await s.jobs.update('job_beating', {});
      expect((await s.jobs.get('job_beating'))!.updatedAt > cut).toBe(true);

      expect(await s.jobs.failStale(new Date(Date.parse(cut) - 60_000).toISOString(), 'interrupted')).toBe(0);
      expect(await s.jobs.failStale(cut, 'interrupted')).toBe(2);
      const states = async () => Object.fromEntries(await Promise.all(['job_old-queued', 'job_old-running', 'job_old-done', 'job_fresh', 'job_beating'].map(async (id) => [id, (await s.jobs.get(id))!.state])));
      expect(await states()).toEqual({ 'job_old-queued': 'failed', 'job_old-running': 'failed', 'job_old-done': 'done', job_fresh: 'queued', job_beating: 'running' });
      expect(await s.jobs.get('job_old-running')).toMatchObject({ error: 'interrupted', etaS: null, finishedAt: expect.any(String) });
      expect((await s.jobs.get('job_old-done'))!.error).toBeNull();
      // Again: nothing left to fail.
      expect(await s.jobs.failStale(cut, 'interrupted')).toBe(0);
    } finally {
      await s.close();
    }
  });
}
