import fs from 'node:fs';
import { z } from 'zod';
import { loadConfig, OPENAI_EMBED_PREFIX } from '../core/config.ts';
import type { Config } from '../core/config.ts';
import { openStore } from '../core/deps.ts';
import { TransformersEmbedder } from '../core/embedder.ts';
import { NotFoundError } from '../core/errors.ts';
import type { IndexGeneration } from '../core/index-store.ts';
import { calibrateGeneration, createGeneration, indexFile, indexOptions, saveIndex } from '../core/index-store.ts';
import { acquireLock } from '../core/lock.ts';
import { acquireLease, CORPUS_WRITER_LEASE } from '../core/lease.ts';
import { lowerCpuPriority } from '../core/priority.ts';
import type { Store } from '../core/store/index.ts';
import { HnswVectorIndex } from '../core/vector-index.ts';
import { embeddingInput } from '../../ingest/pipeline.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command } from './types.ts';

/** Chunks embedded per transaction while switching models. */
const REINDEX_BATCH_CHUNKS = 512;

/** Vectors read per page while rebuilding (bounds memory and the time of one read). */
const REBUILD_PAGE_VECTORS = 4096;

/**
 * Builds a fresh HNSW file for `meta` from the embeddings stored in the store, then calibrates its
 * ef_search (recall@10 `recallTarget`, default CALIBRATION_RECALL_TARGET) and records it in the
 * generation. Returns the vector count.
 */
export async function rebuildIndexFile(store: Store, dataDir: string, meta: IndexGeneration, recallTarget?: number): Promise<number> {
  // An engine with its own vector index (pgvector) maintains it itself: there is no file to build.
  if (store.corpus.nativeVectorSearch) return store.corpus.embeddingCount(meta.modelId);
  // Feed position read before the vectors: changes after it are re-applied by readers (idempotent).
  const { head } = await store.corpus.feedBounds();
  const index = HnswVectorIndex.create({
    ...indexOptions(meta),
    // One resize up front instead of log2(n) doublings.
    initialCapacity: Math.max(1024, (await store.corpus.embeddingCount(meta.modelId)) + 1),
  });
  let after = 0;
  for (;;) {
    const page = await store.corpus.embeddingsPage(meta.modelId, after, REBUILD_PAGE_VECTORS);
    if (page.length === 0) break;
    for (const [id, v] of page) index.upsert(id, v);
    after = page[page.length - 1]![0];
  }
  await saveIndex(store, dataDir, meta, index, head);
  await calibrateGeneration(store, meta, index, { target: recallTarget });
  return index.size();
}

/** Embeds every chunk with the new model beside the old index, then switches in one transaction. */
async function switchModel(store: Store, config: Config, model: string): Promise<{ generation: number; embedded: number; vectors: number }> {
  const embedder = model.startsWith(OPENAI_EMBED_PREFIX)
    ? await (await import('../core/embedder-openai.ts')).loadOpenAIEmbedderFor(model, config)
    : await TransformersEmbedder.load({
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
    const meta = (await store.corpus.buildingGeneration(modelId)) ?? (await createGeneration(store, embedder.info, 'building'));
    let after = 0;
    let embedded = 0;
    for (;;) {
      const rows = await store.corpus.chunksMissingEmbedding(modelId, after, REINDEX_BATCH_CHUNKS);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.id;
      const vectors = await embedder.embed(rows.map((r) => embeddingInput(r)));
      await store.corpus.addEmbeddings(modelId, rows.map((r, i): [number, Float32Array] => [r.id, vectors[i]!]));
      embedded += rows.length;
    }
    const vectors = await rebuildIndexFile(store, config.dataDir, meta, config.hnsw.recallTarget);
    const old = await store.corpus.activateGeneration(meta.generation);
    if (old && !store.corpus.nativeVectorSearch) fs.rmSync(indexFile(config.dataDir, old), { force: true });
    return { generation: meta.generation, embedded, vectors };
  } finally {
    await embedder.close();
  }
}

const schema = z.object({ 'data-dir': z.string().optional(), json: z.boolean(), model: z.string().min(1).optional(), wait: z.boolean().default(false) });

/** The option table of `mneme reindex` (parsing and --help). */
export const REINDEX_SPEC: CommandSpec = {
  name: 'reindex',
  summary: 'rebuild the HNSW file from the embeddings in SQLite (no re-embedding), or switch to another embedding model',
  options: [
    { name: 'model', type: 'string', value: 'HUB_ID_OR_DIR', description: 're-embed everything with this model beside the old index and switch when complete' },
    { name: 'wait', type: 'boolean', default: false, description: 'wait for a running ingest/reindex on this data dir instead of exiting 1' },
  ],
  examples: ['reindex', 'reindex --model Xenova/bge-small-en-v1.5 --wait --json'],
};

export const reindexCommand: Command = {
  name: 'reindex',
  usage: synopsis(REINDEX_SPEC),
  specs: [REINDEX_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(REINDEX_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    lowerCpuPriority(config.ingestNice);
    const lock = await acquireLock(config.dataDir, 'ingest', 'mneme reindex', opts.wait ? 24 * 3600 * 1000 : 0);
    const store = await openStore(config);
    const lease = config.databaseUrl
      ? await acquireLease(store, CORPUS_WRITER_LEASE, opts.wait ? 24 * 3600 * 1000 : 0).catch(async (err: unknown) => {
          await lease?.release();
      await store.close();
          lock.release();
          throw err;
        })
      : null;
    const started = performance.now();
    try {
      let result: { generation: number; embedded: number; vectors: number; model: string };
      if (opts.model) {
        const model = opts.model.startsWith('.') || opts.model.startsWith('/') ? (await import('node:path')).resolve(opts.model) : opts.model;
        result = { ...(await switchModel(store, config, model)), model };
      } else {
        const meta = await store.corpus.activeGeneration();
        if (!meta) throw new NotFoundError('nothing to reindex: this data dir has no vector index yet (ingest with an embedding model first)');
        result = { generation: meta.generation, embedded: 0, vectors: await rebuildIndexFile(store, config.dataDir, meta, config.hnsw.recallTarget), model: meta.modelId };
      }
      const calibration = (await store.corpus.generations('active')).find((g) => g.generation === result.generation)?.calibration ?? null;
      const summary = { ...result, calibration, seconds: (performance.now() - started) / 1000 };
      if (opts.json) printJson(io.stdout, summary);
      else {
        const cal = calibration ? `, ef_search ${calibration.ef} (recall@10 ${calibration.recall})` : '';
        io.stdout.write(`index generation ${summary.generation} (${summary.model}): ${summary.vectors} vectors, ${summary.embedded} newly embedded${cal}, ${summary.seconds.toFixed(2)} s\n`);
      }
      return 0;
    } finally {
      await store.close();
      lock.release();
    }
  },
};
