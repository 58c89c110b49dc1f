/**
 * GET /v1/models and GET /v1/models/:id: the OpenAI "list models" surface, so clients that list
 * models before chatting (Open WebUI, many SDK examples) can set up. Lists the answering model(s)
 * in OpenAI's shape `{object: "list", data: [{id, object: "model", created, owned_by}]}`: the model
 * that answers this user (with releases, the model of the user's arm) and the server's configured
 * model when it differs. `created` is when this server started (Unix seconds: mneme does not know
 * when a model was made); `owned_by` is "mneme"; the extension `mneme.backend` names the backend.
 * Authenticated like every /v1 route. An unknown id is 404 `model_not_found`. The model a client
 * names in /v1/chat/completions does not choose the model (the server's configuration does).
 */
import { Router } from 'express';
import type { ChatModel } from '../../../core/llm/types.ts';
import { MnemeError } from '../../../core/errors.ts';
import type { AppContext } from '../context.ts';
import { currentUser } from '../auth.ts';

/** One entry of the list, in OpenAI's shape plus the `mneme` extension. */
export interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  mneme: { backend: string };
}

/** `owned_by` of every listed model. */
export const MODEL_OWNER = 'mneme';

/** 404 for a model id the server does not answer with. */
export class ModelNotFoundError extends MnemeError {
  constructor(id: string) {
    super('model_not_found', 404, `no model "${id}"; GET /v1/models lists the models`);
  }
}

/** The listed models, distinct by id, in the order given. Pure. */
export function modelList(models: readonly ChatModel[], createdSeconds: number): ModelObject[] {
  const out: ModelObject[] = [];
  for (const m of models) {
    if (out.some((o) => o.id === m.modelId)) continue;
    out.push({ id: m.modelId, object: 'model', created: createdSeconds, owned_by: MODEL_OWNER, mneme: { backend: m.backend } });
  }
  return out;
}

export function modelsRoutes(ctx: AppContext): Router {
  const router = Router();
  const startedAt = Math.floor(Date.now() / 1000);
  const list = (userId: number) => modelList([ctx.route(userId).model, ctx.deps.model], startedAt);
  router.get('/v1/models', (_req, res) => {
    res.json({ object: 'list', data: list(currentUser(res).id) });
  });
  // Model ids may contain "/" (hub ids such as Xenova/…): the id is the rest of the path.
  router.get('/v1/models/*id', (req, res) => {
    const raw = (req.params as { id?: string | string[] }).id ?? '';
    const id = Array.isArray(raw) ? raw.join('/') : raw;
    const found = list(currentUser(res).id).find((m) => m.id === id);
    if (!found) throw new ModelNotFoundError(id);
    res.json(found);
  });
  return router;
}
