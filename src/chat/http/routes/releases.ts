/**
 * Admin routes of releases (issue 15), behind an admin key (mount after `authenticate`):
 * - GET  /v1/admin/releases            → {serving, releases, events}
 * - GET  /v1/admin/releases/report     → per-arm metrics + the significance test (`releases report --json`)
 * - GET  /v1/admin/releases/monitoring → per day and release: top-score distribution, share of
 *   questions out of the corpus vocabulary, shift flags vs the previous 7 days
 * - POST /v1/admin/releases/promote  {name?, reason?, force?} → the green button (regression gate first)
 * - POST /v1/admin/releases/rollback {reason?}                → the red button
 * - POST /v1/admin/releases/canary   {name, share, reason?}
 * - POST /v1/admin/releases/stop     {reason?}
 * Every change is an audit row naming the admin; this process serves it at once (other replicas
 * within RELEASE_REFRESH_INTERVAL_MS).
 */
import { Router } from 'express';
import type { Response } from 'express';
import { z } from 'zod';
import type { Store } from '../../../core/store/index.ts';
import type { ReleaseRouting } from '../../release-router.ts';
import { releaseNameSchema } from '../../release-parts.ts';
import type { PromotionGate } from '../../releases.ts';
import { canaryRelease, eventJson, promoteRelease, releaseDataMonitoring, releaseJson, releaseReport, rollbackRelease, stopCanary } from '../../releases.ts';
import { currentUser, requireAdmin } from '../auth.ts';
import { parseBody } from '../errors.ts';

/** Audit rows listed by GET /v1/admin/releases. */
export const RELEASE_EVENTS_SHOWN = 20;
const MAX_REASON_CHARS = 500;

const reasonSchema = z.string().max(MAX_REASON_CHARS).nullish();
const promoteSchema = z.object({ name: releaseNameSchema.nullish(), reason: reasonSchema, force: z.boolean().default(false) }).strict();
const rollbackSchema = z.object({ reason: reasonSchema }).strict();
const canarySchema = z.object({ name: releaseNameSchema, share: z.number().min(0).max(100), reason: reasonSchema }).strict();

export interface ReleasesAdminDeps {
  store: Pick<Store, 'releases'>;
  router?: ReleaseRouting | undefined;
  gate?: PromotionGate | undefined;
}

export function releasesAdminRouter(deps: ReleasesAdminDeps): Router {
  const router = Router({ strict: true });
  const actor = (res: Response) => `admin:${currentUser(res).name}`;
  /** After a change: serve it here now, and answer with the new state. */
  const changed = async (res: Response, body: Record<string, unknown>) => {
    await deps.router?.refresh();
    res.json({ ...body, serving: deps.router?.serving() ?? null });
  };
  router.use('/v1/admin/releases', requireAdmin, (_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  router.get('/v1/admin/releases', async (_req, res) => {
    const [releases, events] = await Promise.all([deps.store.releases.list(), deps.store.releases.events(RELEASE_EVENTS_SHOWN)]);
    res.json({ serving: deps.router?.serving() ?? null, releases: releases.map(releaseJson), events: events.map(eventJson) });
  });
  router.get('/v1/admin/releases/report', async (_req, res) => {
    res.json(await releaseReport(deps.store));
  });
  router.get('/v1/admin/releases/monitoring', async (_req, res) => {
    res.json({ days: await releaseDataMonitoring(deps.store) });
  });
  router.post('/v1/admin/releases/promote', async (req, res) => {
    const b = parseBody(promoteSchema, req.body ?? {});
    const r = await promoteRelease(deps.store, { name: b.name ?? undefined, reason: b.reason, force: b.force, actor: actor(res), gate: deps.gate });
    await changed(res, { event: eventJson(r.event), gate: r.gate });
  });
  router.post('/v1/admin/releases/rollback', async (req, res) => {
    const b = parseBody(rollbackSchema, req.body ?? {});
    await changed(res, { event: eventJson(await rollbackRelease(deps.store, { actor: actor(res), reason: b.reason })) });
  });
  router.post('/v1/admin/releases/canary', async (req, res) => {
    const b = parseBody(canarySchema, req.body);
    await changed(res, { event: eventJson(await canaryRelease(deps.store, b.name, b.share, { actor: actor(res), reason: b.reason })) });
  });
  router.post('/v1/admin/releases/stop', async (req, res) => {
    const b = parseBody(rollbackSchema, req.body ?? {});
    await changed(res, { event: eventJson(await stopCanary(deps.store, { actor: actor(res), reason: b.reason })) });
  });
  return router;
}
