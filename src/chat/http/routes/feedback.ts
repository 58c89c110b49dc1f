/**
 * POST /v1/feedback `{response_id, rating: 1|-1, correction?}` → 201 `{id, response_id, rating,
 * correction, created_at}`. Only the author of a response can rate it: another user's response id
 * answers 404, exactly like an unknown one. Feedback is append-only; the latest row per response is
 * the current rating.
 */
import { Router } from 'express';
import { z } from 'zod';
import { NotFoundError } from '../../../core/errors.ts';
import type { AppContext } from '../context.ts';
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
  router.post('/v1/feedback', async (req, res) => {
    const body = parseBody(feedbackRequestSchema, req.body);
    const correction = body.correction?.trim() ? body.correction : null;
    if (correction) checkMessageLength(correction, ctx.deps.config.server.maxMessageChars, 'correction');
    const user = currentUser(res);
    // Ownership is checked in the same transaction as the insert (an erase cannot slip in between).
    const fb = await ctx.deps.store.predictions.addFeedback({
      responseId: body.response_id,
      userId: user.id,
      rating: body.rating,
      correction,
      createdAt: new Date().toISOString(),
    });
    if (!fb) throw new NotFoundError(`no response ${body.response_id}`);
    res.status(201).json({ id: fb.id, response_id: fb.responseId, rating: fb.rating, correction: fb.correction, created_at: fb.createdAt });
  });
  return router;
}
