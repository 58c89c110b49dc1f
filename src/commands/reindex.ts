import fs from 'node:fs';
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import type { Config } from '../core/config.ts';
import { blobToVector, nowIso, vectorToBlob } from '../core/db.ts';
import type { Db } from '../core/db.ts';
import { openDatabase } from '../core/deps.ts';
import { TransformersEmbedder } from '../core/embedder.ts';
import { ValidationError } from '../core/errors.ts';
import type { IndexMeta } from '../core/index-store.ts';
import { activeIndexMeta, createGeneration, indexFile, saveIndex } from '../core/index-store.ts';
import { acquireLock } from '../core/lock.ts';
import { HnswVectorIndex } from '../core/vector-index.ts';
import { embeddingInput } from '../../ingest/pipeline.ts';
import { parseCommandArgs, printJson } from './args.ts';
import type { Command } from './types.ts';

/** Chunks embedded per transaction while switching models. */
const REINDEX_BATCH_CHUNKS = 512;

/** Builds a fresh HNSW file for `meta` from the embeddings stored in SQLite. Returns the vector count. */
export function rebuildIndexFile(db: Db, dataDir: string, meta: IndexMeta): number {
  const index = HnswVectorIndex.create({
    dimension: meta.dimension,
    m: meta.hnsw_m,
    efConstruction: meta.hnsw_ef_construction,
    efSearch: meta.hnsw_ef_search,
    // One resize up front instead of log2(n) doublings.
    initialCapacity: Math.max(1024, (db.prepare('SELECT count(*) FROM embeddings WHERE model_id = ?').pluck().get(meta.model_id) as number) + 1),
  });
  const rows = db.prepare('SELECT chunk_id, vector FROM embeddings WHERE model_id = ? ORDER BY chunk_id').iterate(meta.model_id) as IterableIterator<{
    chunk_id: number;
    vector: Buffer;
  }>;
  for (const r of rows) index.upsert(r.chunk_id, blobToVector(r.vector));
  saveIndex(db, dataDir, meta, index);
  return index.size();
}

/** Embeds every chunk with the new model beside the old index, then switches in one transaction. */
async function switchModel(db: Db, config: Config, model: string): Promise<{ generation: number; embedded: number; vectors: number }> {
  const embedder = await TransformersEmbedder.load({
    modelRef: model,
    modelsDir: config.modelsDir,
    offline: config.offline,
    dtype: config.embed.dtype,
    threads: config.threads,
    maxTokens: config.embed.maxTokens,
  });
  try {
    const modelId = embedder.info.modelId;
    // Resume a generation a killed run left building for the same model.
    let meta = db.prepare("SELECT * FROM index_meta WHERE status = 'building' AND model_id = ?").get(modelId) as IndexMeta | undefined;
    meta ??= createGeneration(db, embedder.info, 'building');
    const page = db.prepare<[number, string, number], { id: number; text: string; heading_path: string }>(
      `SELECT id, text, heading_path FROM chunks c WHERE id > ? AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id AND e.model_id = ?) ORDER BY id LIMIT ?`,
    );
    const insert = db.prepare('INSERT OR IGNORE INTO embeddings (chunk_id, model_id, vector) VALUES (?, ?, ?)');
    let after = 0;
    let embedded = 0;
    for (;;) {
      const rows = page.all(after, modelId, REINDEX_BATCH_CHUNKS);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.id;
      const vectors = await embedder.embed(rows.map((r) => embeddingInput({ headingPath: r.heading_path, text: r.text })));
      db.transaction(() => rows.forEach((r, i) => insert.run(r.id, modelId, vectorToBlob(vectors[i]!)))).immediate();
      embedded += rows.length;
    }
    const vectors = rebuildIndexFile(db, config.dataDir, meta);
    const old = activeIndexMeta(db);
    const generation = meta.generation;
    db.transaction(() => {
      if (old) {
        db.prepare("UPDATE index_meta SET status = 'retired' WHERE generation = ?").run(old.generation);
        if (old.model_id !== modelId) db.prepare('DELETE FROM embeddings WHERE model_id = ?').run(old.model_id);
      }
      db.prepare("UPDATE index_meta SET status = 'active', activated_at = ? WHERE generation = ?").run(nowIso(), generation);
    }).immediate();
    if (old) fs.rmSync(indexFile(config.dataDir, old), { force: true });
    return { generation, embedded, vectors };
  } finally {
    await embedder.close();
  }
}

const schema = z.object({ 'data-dir': z.string().optional(), json: z.boolean(), model: z.string().min(1).optional(), wait: z.boolean().default(false) });

export const reindexCommand: Command = {
  name: 'reindex',
  usage: 'reindex [--model HUB_ID_OR_DIR] [--wait] [--json]',
  async run(args, io) {
    const opts = parseCommandArgs('reindex', args, { model: { type: 'string' }, wait: { type: 'boolean' } }, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    const lock = await acquireLock(config.dataDir, 'ingest', 'mneme reindex', opts.wait ? 24 * 3600 * 1000 : 0);
    const db = openDatabase(config);
    const started = performance.now();
    try {
      let result: { generation: number; embedded: number; vectors: number; model: string };
      if (opts.model) {
        const model = opts.model.startsWith('.') || opts.model.startsWith('/') ? (await import('node:path')).resolve(opts.model) : opts.model;
        result = { ...(await switchModel(db, config, model)), model };
      } else {
        const meta = activeIndexMeta(db);
        if (!meta) throw new ValidationError('reindex: this data dir has no vector index yet (ingest with an embedding model first)');
        result = { generation: meta.generation, embedded: 0, vectors: rebuildIndexFile(db, config.dataDir, meta), model: meta.model_id };
      }
      const summary = { ...result, seconds: (performance.now() - started) / 1000 };
      if (opts.json) printJson(io.stdout, summary);
      else io.stdout.write(`index generation ${summary.generation} (${summary.model}): ${summary.vectors} vectors, ${summary.embedded} newly embedded, ${summary.seconds.toFixed(2)} s\n`);
      return 0;
    } finally {
      db.close();
      lock.release();
    }
  },
};
