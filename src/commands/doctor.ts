import fs from 'node:fs';
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { openDb } from '../core/db.ts';
import type { Db } from '../core/db.ts';
import { activeIndexMeta, embeddedChunkIds, indexFile } from '../core/index-store.ts';
import { HnswVectorIndex } from '../core/vector-index.ts';
import { parseCommandArgs, printJson } from './args.ts';
import type { Command } from './types.ts';

export interface DoctorReport {
  ok: boolean;
  problems: string[];
  warnings: string[];
  counts: Record<string, number>;
}

/** Checks that SQLite, FTS5 and the HNSW file agree. Pure read: never repairs. */
export function diagnose(db: Db, dataDir: string): DoctorReport {
  const problems: string[] = [];
  const warnings: string[] = [];
  const one = (sql: string, ...p: unknown[]) => db.prepare(sql).pluck().get(...p) as number;

  const integrity = db.prepare('PRAGMA quick_check').pluck().all() as string[];
  if (integrity.join() !== 'ok') problems.push(`sqlite quick_check: ${integrity.slice(0, 5).join('; ')}`);
  const fk = db.prepare('PRAGMA foreign_key_check').all();
  if (fk.length > 0) problems.push(`${fk.length} rows violate foreign keys`);

  const chunks = one('SELECT count(*) FROM chunks');
  const ftsRows = one('SELECT count(*) FROM chunks_fts');
  const counts: Record<string, number> = {
    documents: one('SELECT count(*) FROM documents WHERE deleted_at IS NULL'),
    documents_deleted: one('SELECT count(*) FROM documents WHERE deleted_at IS NOT NULL'),
    chunks,
    fts_rows: ftsRows,
  };
  if (ftsRows !== chunks) problems.push(`FTS5 has ${ftsRows} rows for ${chunks} chunks`);
  const notInFts = one('SELECT count(*) FROM chunks WHERE id NOT IN (SELECT rowid FROM chunks_fts)');
  if (notInFts > 0) problems.push(`${notInFts} chunks missing from FTS5`);
  const ghosts = one('SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.deleted_at IS NOT NULL');
  if (ghosts > 0) problems.push(`${ghosts} chunks belong to deleted documents`);
  const empty = one('SELECT count(*) FROM documents d WHERE deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM chunks WHERE document_id = d.id)');
  if (empty > 0) problems.push(`${empty} live documents have no chunks`);
  const dupText = one(
    `SELECT count(*) FROM (SELECT document_id, content_sha256, ord FROM chunks GROUP BY document_id, ord HAVING count(*) > 1)`,
  );
  if (dupText > 0) problems.push(`${dupText} duplicate (document, ord) chunks`);

  const meta = activeIndexMeta(db);
  const building = db.prepare("SELECT generation, model_id FROM index_meta WHERE status = 'building'").all() as Array<{ generation: number; model_id: string }>;
  for (const b of building) warnings.push(`index generation ${b.generation} (${b.model_id}) is still building: re-run \`mneme reindex --model ${b.model_id}\``);
  if (!meta) {
    const vecs = one('SELECT count(*) FROM embeddings');
    if (vecs > 0) problems.push(`${vecs} stored embeddings but no active index generation`);
    else warnings.push('no vector index yet (no embedding model was available): BM25 only');
    return { ok: problems.length === 0, problems, warnings, counts };
  }
  counts.generation = meta.generation;
  const expected = embeddedChunkIds(db, meta.model_id);
  counts.embeddings = expected.size;
  const unembedded = chunks - expected.size;
  if (unembedded > 0) warnings.push(`${unembedded} chunks have no ${meta.model_id} embedding yet: run ingest with the model to embed them`);
  const wrongDim = one('SELECT count(*) FROM embeddings WHERE model_id = ? AND length(vector) != ?', meta.model_id, meta.dimension * 4);
  if (wrongDim > 0) problems.push(`${wrongDim} embeddings have the wrong size for ${meta.dimension} dimensions`);
  const others = db
    .prepare("SELECT model_id, count(*) AS n FROM embeddings WHERE model_id != ? AND model_id NOT IN (SELECT model_id FROM index_meta WHERE status = 'building') GROUP BY model_id")
    .all(meta.model_id) as Array<{ model_id: string; n: number }>;
  for (const o of others) problems.push(`${o.n} embeddings of ${o.model_id}, which is not the active model`);

  const file = indexFile(dataDir, meta);
  if (!fs.existsSync(file)) {
    if (expected.size > 0) problems.push(`index file ${file} is missing (run \`mneme reindex\`)`);
    return { ok: problems.length === 0, problems, warnings, counts };
  }
  let index: HnswVectorIndex;
  try {
    index = HnswVectorIndex.load(file, { dimension: meta.dimension, m: meta.hnsw_m, efConstruction: meta.hnsw_ef_construction, efSearch: meta.hnsw_ef_search });
  } catch (err) {
    problems.push(`index file ${file} cannot be read: ${(err as Error).message} (run \`mneme reindex\`)`);
    return { ok: false, problems, warnings, counts };
  }
  counts.index_vectors = index.size();
  const labels = index.labels();
  const extra = labels.filter((l) => !expected.has(l));
  let missing = 0;
  for (const id of expected) if (!index.has(id)) missing++;
  if (extra.length > 0) problems.push(`index holds ${extra.length} vectors with no chunk (e.g. ${extra.slice(0, 5).join(', ')})`);
  if (missing > 0) problems.push(`index lacks ${missing} of ${expected.size} stored embeddings (run \`mneme ingest\` or \`mneme reindex\`)`);
  return { ok: problems.length === 0, problems, warnings, counts };
}

const schema = z.object({ 'data-dir': z.string().optional(), json: z.boolean() });

export const doctorCommand: Command = {
  name: 'doctor',
  usage: 'doctor [--json]',
  async run(args, io) {
    const opts = parseCommandArgs('doctor', args, {}, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    if (!fs.existsSync(config.dbFile)) {
      io.stderr.write(`doctor: no database at ${config.dbFile}\n`);
      return 1;
    }
    const db = openDb(config.dbFile);
    try {
      const report = diagnose(db, config.dataDir);
      if (opts.json) printJson(io.stdout, report);
      else {
        io.stdout.write(`${Object.entries(report.counts).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
        for (const w of report.warnings) io.stdout.write(`warning: ${w}\n`);
        for (const p of report.problems) io.stdout.write(`PROBLEM: ${p}\n`);
        io.stdout.write(report.ok ? 'ok\n' : `${report.problems.length} problem(s)\n`);
      }
      return report.ok ? 0 : 1;
    } finally {
      db.close();
    }
  },
};
