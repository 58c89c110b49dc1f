/**
 * POST /v1/feedback `{response_id, rating: 1|-1, correction?}` → 201 `{id, response_id, rating,
 * correction, created_at}`. Only the author of a response can rate it: another user's response id
 * answers 404, exactly like an unknown one. Feedback is append-only; the latest row per response is
 * the current rating.
 */
import { Router } from 'express';
import { z } from 'zod';
import { nowIso } from '../../../core/db.ts';
import { NotFoundError } from '../../../core/errors.ts';
import type { AppContext } from '../app.ts';
import { currentUser } from '../auth.ts';
import { parseBody } from '../errors.ts';
import { checkMessageLength } from './chat.ts';

export const feedbackRequestSchema = z
  .object({
    response_id: z.string().min(1).max(128),
    rating: z.union([z.literal(1), z.literal(-1)], 'must be 1 or -1'),
    correction: z.string().nullish(),
  })
  .strict();

export function feedbackRoutes(ctx: AppContext): Router {
  const router = Router();
  router.post('/v1/feedback', (req, res) => {
    const body = parseBody(feedbackRequestSchema, req.body);
    const correction = body.correction?.trim() ? body.correction : null;
    if (correction) checkMessageLength(correction, ctx.deps.config.server.maxMessageChars, 'correction');
    const user = currentUser(res);
    const db = ctx.deps.db;
    const owned = db.prepare('SELECT 1 FROM responses WHERE id = ? AND user_id = ?').pluck().get(body.response_id, user.id);
    if (!owned) throw new NotFoundError(`no response ${body.response_id}`);
    const createdAt = nowIso();
    const r = db
      .prepare('INSERT INTO feedback (response_id, user_id, rating, correction, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(body.response_id, user.id, body.rating, correction, createdAt);
    res.status(201).json({ id: Number(r.lastInsertRowid), response_id: body.response_id, rating: body.rating, correction, created_at: createdAt });
  });
  return router;
}
