/**
 * Documents and collections (issue 14):
 * - `GET /v1/documents?collection=&q=&cursor=&limit=` → `{data: [{id, collection, title, source,
 *   kind, bytes, chunks, updated_at}], next_cursor}`: live documents, newest first, keyset pages
 *   (`next_cursor` is opaque; null on the last page); `q` matches a substring of the title or the
 *   source, or every full-text term of the document.
 * - `GET /v1/documents/:id` → one of them (404 when unknown or deleted).
 * - `DELETE /v1/documents/:id` → 204 (admins only until collections have access control): chunks,
 *   full-text rows and vectors go; every server's index drops its labels through the change feed.
 * - `POST /v1/documents` (multipart: `file` repeatable, `collection`) → 202 `{job_id}` (admins only
 *   until collections have access control): the files are streamed to `<data dir>/uploads/` and
 *   ingested by a job (GET /v1/jobs/:id) through the CLI's pipeline, stored as `upload:NAME`.
 * - `GET /v1/collections` → `{data: [{name, documents, chunks}]}`.
 * Every user may browse every collection (as chat may cite every collection today).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Router } from 'express';
import type { Response } from 'express';
import { z } from 'zod';
import type { DocumentListItem } from '../../../core/store/corpus.ts';
import { ForbiddenError, NotFoundError, PayloadTooLargeError, ValidationError } from '../../../core/errors.ts';
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

function requireAdminUser(res: Response, what: string): number {
  const user = currentUser(res);
  if (!user.isAdmin) throw new ForbiddenError(`${what} needs an admin API key until collections have access control`);
  return user.id;
}

export function documentsRoutes(ctx: AppContext): Router {
  const router = Router();
  const { store, config } = ctx.deps;
  const writer = ctx.deps.corpusWriter;
  const runner = writer && ctx.deps.ingestFiles ? new JobRunner({ store, writer, ingest: ctx.deps.ingestFiles, logger: ctx.logger }) : null;
  router.get('/v1/documents', async (req, res) => {
    const q = parseQuery(listSchema, req);
    const rows = await store.corpus.listDocuments({ collection: q.collection, q: q.q, beforeId: q.cursor ? Number(q.cursor) : undefined, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    res.setHeader('Cache-Control', 'no-store');
    res.json({ data: page.map(documentView), next_cursor: rows.length > q.limit ? String(page.at(-1)!.id) : null });
  });
  router.get('/v1/documents/:id', async (req, res) => {
    const d = await store.corpus.getDocument(documentId(req.params.id));
    if (!d) throw new NotFoundError('no such document');
    res.setHeader('Cache-Control', 'no-store');
    res.json(documentView(d));
  });
  router.delete('/v1/documents/:id', async (req, res) => {
    const id = documentId(req.params.id);
    requireAdminUser(res, 'deleting a document');
    if (!writer) throw new NotFoundError('deleting documents is not available on this server');
    await writer.deleteDocument(id);
    res.status(204).end();
  });
  router.post('/v1/documents', async (req, res) => {
    const userId = requireAdminUser(res, 'uploading documents');
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
    const job = await runner.submit({ id: jobId, userId, collection, files: upload.files, refused: upload.refused, dir });
    res.status(202).json({ job_id: job.id });
  });
  router.get('/v1/collections', async (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ data: await store.corpus.collections() });
  });
  return router;
}
