/**
 * Documents and collections (issue 14):
 * - `GET /v1/documents?collection=&q=&cursor=&limit=` → `{data: [{id, collection, title, source,
 *   kind, bytes, chunks, updated_at}], next_cursor}`: live documents, newest first, keyset pages
 *   (`next_cursor` is opaque; null on the last page); `q` matches a substring of the title or the
 *   source, or every full-text term of the document.
 * - `GET /v1/documents/:id` → one of them (404 when unknown or deleted).
 * - `DELETE /v1/documents/:id` → 204 (needs write access to the document's collection, else 403;
 *   404 when the user cannot read it): chunks, full-text rows and vectors go; every server's index
 *   drops its labels through the change feed.
 * - `POST /v1/documents` (multipart: `file` repeatable, `collection`) → 202 `{job_id}`: the files
 *   are streamed to `<data dir>/uploads/` and ingested by a job (GET /v1/jobs/:id) through the CLI's
 *   pipeline, stored as `upload:NAME`. Needs write access to the collection (403; 404 when the user
 *   cannot read it); a non-admin uploading into a NEW name (no documents, no access row) creates it
 *   private to them, with write access.
 * - `GET /v1/collections` → `{data: [{name, documents, chunks, visibility, writable}]}`: the
 *   collections the user can read.
 * Access control (issue 14, src/chat/access.ts): a user sees only the collections they can read —
 * an unreadable document is 404 like an unknown one, and lists and counts leave it out.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Router } from 'express';
import { z } from 'zod';
import type { DocumentListItem } from '../../../core/store/corpus.ts';
import { nowIso } from '../../../core/clock.ts';
import { ConflictError, ForbiddenError, NotFoundError, PayloadTooLargeError, ValidationError } from '../../../core/errors.ts';
import type { Store } from '../../../core/store/index.ts';
import { canRead, canWrite, collectionScope, excludedBy, readableSummaries } from '../../access.ts';
import type { AccessUser } from '../../access.ts';
import { displaySource } from '../../citations.ts';
import { JobRunner } from '../../jobs.ts';
import { currentUser } from '../auth.ts';
import type { AppContext } from '../context.ts';
import { receiveUpload } from '../upload.ts';
import { parseQuery } from './conversations.ts';

/** Documents per page by default, and at most. */
export const DOCUMENTS_PAGE_DEFAULT = 50;
export const DOCUMENTS_PAGE_MAX = 200;
/** Collection names: as `mneme ingest --collection`. */
export const COLLECTION_NAME_RE = /^[\w.-]{1,64}$/;
/** Where uploads are received, under the data dir. */
export const UPLOADS_DIR = 'uploads';

const listSchema = z.object({
  collection: z.string().regex(COLLECTION_NAME_RE, 'letters, digits, "_", "-", "." (1-64)').optional(),
  q: z.string().max(200).optional(),
  cursor: z.string().regex(/^[1-9]\d{0,15}$/, 'not a cursor from next_cursor').optional(),
  limit: z.coerce.number().int().min(1).max(DOCUMENTS_PAGE_MAX).default(DOCUMENTS_PAGE_DEFAULT),
});

/** The response shape of a document (pure). */
export function documentView(d: DocumentListItem): Record<string, unknown> {
  return {
    id: d.id,
    collection: d.collection,
    title: d.title,
    source: displaySource(d.sourceUri),
    kind: d.kind,
    bytes: d.bytes,
    chunks: d.chunks,
    updated_at: d.updatedAt,
  };
}

function documentId(raw: unknown): number {
  if (typeof raw !== 'string' || !/^[1-9]\d{0,15}$/.test(raw)) throw new NotFoundError('no such document');
  return Number(raw);
}

/**
 * Checks that the user may upload into `collection`; a non-admin naming a collection that does not
 * exist yet (no documents, no access row) creates it, private to them with write access.
 * @throws NotFoundError when the collection is private and not granted to the user (as if absent)
 * @throws ForbiddenError when it is readable but the user holds no write grant
 */
async function authorizeUpload(store: Store, user: AccessUser, collection: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const scope = await collectionScope(store, user);
    if (!canRead(scope, collection)) throw new NotFoundError(`no collection "${collection}"`);
    if (canWrite(scope, collection)) return;
    const exists = (await store.collections.get(collection)) !== null || (await store.corpus.collections()).some((c) => c.name === collection);
    if (exists) throw new ForbiddenError(`uploading into "${collection}" needs write access to it (ask an admin: mneme collections grant ${collection} --user NAME --write)`);
    try {
      await store.collections.create({ name: collection, visibility: 'private', createdBy: user.id, createdAt: nowIso() });
    } catch (err) {
      // Someone created it meanwhile: decide again on its settings.
      if (err instanceof ConflictError) continue;
      throw err;
    }
    await store.collections.grant(collection, user.id, true, nowIso());
    return;
  }
  throw new ForbiddenError(`uploading into "${collection}" needs write access to it`);
}

export function documentsRoutes(ctx: AppContext): Router {
  const router = Router();
  const { store, config } = ctx.deps;
  const writer = ctx.deps.corpusWriter;
  const runner = writer && ctx.deps.ingestFiles ? new JobRunner({ store, writer, ingest: ctx.deps.ingestFiles, logger: ctx.logger }) : null;
  router.get('/v1/documents', async (req, res) => {
    const q = parseQuery(listSchema, req);
    const scope = await collectionScope(store, currentUser(res));
    // A collection the user cannot read lists like an unknown one: empty.
    const rows = q.collection !== undefined && !canRead(scope, q.collection)
      ? []
      : await store.corpus.listDocuments({ collection: q.collection, excludeCollections: excludedBy(scope), q: q.q, beforeId: q.cursor ? Number(q.cursor) : undefined, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ data: page.map(documentView), next_cursor: rows.length > q.limit ? String(page.at(-1)!.id) : null });
  });
  router.get('/v1/documents/:id', async (req, res) => {
    const d = await store.corpus.getDocument(documentId(req.params.id));
    if (!d || !canRead(await collectionScope(store, currentUser(res)), d.collection)) throw new NotFoundError('no such document');
    res.setHeader('Cache-Control', 'no-store');
    res.json(documentView(d));
  });
  router.delete('/v1/documents/:id', async (req, res) => {
    const id = documentId(req.params.id);
    const d = await store.corpus.getDocument(id);
    const scope = await collectionScope(store, currentUser(res));
    if (!d || !canRead(scope, d.collection)) throw new NotFoundError('no such document');
    if (!canWrite(scope, d.collection)) throw new ForbiddenError(`deleting a document of "${d.collection}" needs write access to it`);
    if (!writer) throw new NotFoundError('deleting documents is not available on this server');
    await writer.deleteDocument(id);
    res.status(204).end();
  });
  router.post('/v1/documents', async (req, res) => {
    const user = currentUser(res);
    if (!runner) throw new NotFoundError('uploads are not available on this server');
    const jobId = `job_${randomUUID()}`;
    const dir = path.join(config.dataDir, UPLOADS_DIR, jobId);
    let upload;
    try {
      upload = await receiveUpload(req, dir, config.maxFileBytes);
    } catch (err) {
      if (err instanceof PayloadTooLargeError) res.setHeader('Connection', 'close');
      throw err;
    }
    const collection = upload.fields.collection?.trim() || 'default';
    const bad = !COLLECTION_NAME_RE.test(collection) ? 'collection: letters, digits, "_", "-", "." (1-64)' : upload.files.length + upload.refused.length === 0 ? 'no "file" part: upload at least one file' : null;
    if (bad) {
      await fs.promises.rm(dir, { recursive: true, force: true });
      throw new ValidationError(bad);
    }
    try {
      await authorizeUpload(store, user, collection);
    } catch (err) {
      await fs.promises.rm(dir, { recursive: true, force: true });
      throw err;
    }
    const job = await runner.submit({ id: jobId, userId: user.id, collection, files: upload.files, refused: upload.refused, dir });
    res.status(202).json({ job_id: job.id });
  });
  router.get('/v1/collections', async (_req, res) => {
    const scope = await collectionScope(store, currentUser(res));
    const rows = new Map((await store.collections.list()).map((c) => [c.name, c.visibility]));
    const data = readableSummaries(scope, await store.corpus.collections()).map((c) => ({
      ...c,
      visibility: rows.get(c.name) ?? 'public',
      writable: canWrite(scope, c.name),
    }));
    res.setHeader('Cache-Control', 'no-store');
    res.json({ data });
  });
  return router;
}
