/**
 * Ingest jobs (issue 14), read from the store so any replica reports any job:
 * - `GET /v1/jobs/:id` → `{id, state, collection, files_total, files_done, files_failed,
 *   chunks_embedded, eta_s, failures: [{file, reason}], error}`.
 * - `GET /v1/jobs/:id/events` → SSE: a `progress` event with that object at once and whenever it
 *   changes, then one `done` event (state `done` or `failed`) and the end of the stream.
 * Only the user who started the job, or an admin, sees it (anyone else: 404, like an unknown id).
 */
import { Router } from 'express';
import type { Response } from 'express';
import { NotFoundError } from '../../../core/errors.ts';
import type { JobRecord } from '../../../core/store/jobs.ts';
import type { Store } from '../../../core/store/index.ts';
import { jobView } from '../../jobs.ts';
import { currentUser } from '../auth.ts';
import type { AppContext } from '../context.ts';
import { SseStream } from '../sse.ts';

/** How often the event stream looks at the job row, in ms. */
export const JOB_EVENTS_POLL_MS = 200;

async function visibleJob(store: Store, res: Response, id: unknown): Promise<JobRecord> {
  const job = typeof id === 'string' && /^job_[\w-]{1,64}$/.test(id) ? await store.jobs.get(id) : null;
  const user = currentUser(res);
  if (!job || (!user.isAdmin && job.userId !== user.id)) throw new NotFoundError('no such job');
  return job;
}

export function jobsRoutes(ctx: AppContext): Router {
  const router = Router();
  const { store } = ctx.deps;
  router.get('/v1/jobs/:id', async (req, res) => {
    const job = await visibleJob(store, res, req.params.id);
    res.setHeader('Cache-Control', 'no-store');
    res.json(jobView(job));
  });
  router.get('/v1/jobs/:id/events', async (req, res) => {
    let job = await visibleJob(store, res, req.params.id);
    const sse = new SseStream(res);
    let last = '';
    for (;;) {
      const view = JSON.stringify(jobView(job));
      if (view !== last) sse.event('progress', jobView(job));
      last = view;
      if (job.state === 'done' || job.state === 'failed') {
        sse.event('done', jobView(job));
        break;
      }
      await new Promise((r) => setTimeout(r, JOB_EVENTS_POLL_MS));
      if (sse.closed || ctx.inflight.shuttingDown) break;
      job = (await store.jobs.get(job.id)) ?? job;
    }
    sse.end();
  });
  return router;
}
