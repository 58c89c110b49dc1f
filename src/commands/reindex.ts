import { z } from 'zod';
import { loadConfig, OPENAI_EMBED_PREFIX } from '../core/config.ts';
import type { Config } from '../core/config.ts';
import { openStore } from '../core/deps.ts';
import { TransformersEmbedder } from '../core/embedder.ts';
import { NotFoundError } from '../core/errors.ts';
import type { IndexGeneration } from '../core/index-store.ts';
import { calibrateGeneration, calibrateStoreSearch, createGeneration, indexFile, indexOptions } from '../core/index-store.ts';
import { buildShardedIndex } from '../core/hnsw-build.ts';
import { acquireLock } from '../core/lock.ts';
import { acquireLease, CORPUS_WRITER_LEASE } from '../core/lease.ts';
import { lowerCpuPriority } from '../core/priority.ts';
import type { Store } from '../core/store/index.ts';
import { removeIndexFiles, shardCountFor, ShardedHnswIndex } from '../core/sharded-index.ts';
import { embeddingInput } from '../../ingest/pipeline.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command } from './types.ts';

/** Chunks embedded per transaction while switching models. */
const REINDEX_BATCH_CHUNKS = 512;

/** Vectors read per page while rebuilding (bounds memory and the time of one read). */
const REBUILD_PAGE_VECTORS = 4096;

export interface RebuildOptions {
  /** recall@10 the ef_search calibration aims for; default CALIBRATION_RECALL_TARGET. */
  recallTarget?: number | undefined;
  /** Cores for the build (one shard per core, see shardCountFor); default 1. */
  threads?: number | undefined;
  /** Shard count forced (tests, benchmarks); default shardCountFor(vectors, threads). */
  shards?: number | undefined;
}

export interface RebuildResult {
  vectors: number;
  /** The built index as loaded back (calibrated ef set); null for an engine with its own vector index. */
  index: ShardedHnswIndex | null;
  shards: number;
  /** Wall time of the graph build and write, in s (calibration excluded). */
  buildSeconds: number;
  /** Wall time of loading the new files back, in s. */
  loadSeconds: number;
}

/** Stored vectors of `modelId`, label-ascending, page by page. */
async function* storedVectorPages(store: Store, modelId: string): AsyncGenerator<Array<[number, Float32Array]>> {
  let after = 0;
  for (;;) {
    const page = await store.corpus.embeddingsPage(modelId, after, REBUILD_PAGE_VECTORS);
    if (page.length === 0) return;
    yield page;
    after = page[page.length - 1]![0];
  }
}

/**
 * Builds a fresh index for `meta` from the embeddings stored in the store, in parallel shards (one
 * worker thread per shard, hnsw-build.ts), commits it atomically (a running server keeps the index it
 * loaded, the old files stay the index until the new manifest replaces them), then calibrates its
 * ef_search and records it in the generation.
 */
export async function rebuildIndex(store: Store, dataDir: string, meta: IndexGeneration, opts: RebuildOptions = {}): Promise<RebuildResult> {
  // An engine with its own vector index (pgvector) maintains it itself: there is no file to build,
  // only its ef_search to calibrate, on fresh planner statistics (else searches scan exactly).
  if (store.corpus.nativeVectorSearch) {
    await store.corpus.optimizeFullText();
    await calibrateStoreSearch(store, meta, { target: opts.recallTarget });
    return { vectors: await store.corpus.embeddingCount(meta.modelId), index: null, shards: 0, buildSeconds: 0, loadSeconds: 0 };
  }
  // Feed position read before the vectors: changes after it are re-applied by readers (idempotent).
  const { head } = await store.corpus.feedBounds();
  const expected = await store.corpus.embeddingCount(meta.modelId);
  const options = indexOptions(meta);
  const shards = opts.shards ?? shardCountFor(expected, opts.threads ?? 1);
  const file = indexFile(dataDir, meta);
  const built = await buildShardedIndex(file, storedVectorPages(store, meta.modelId), { ...options, shards, expected });
  await store.corpus.recordIndexSaved(meta.generation, head);
  const t0 = performance.now();
  const index = ShardedHnswIndex.load(file, options);
  const loadSeconds = (performance.now() - t0) / 1000;
  const cal = await calibrateGeneration(store, meta, index, { target: opts.recallTarget });
  if (cal) index.setEfSearch(cal.ef);
  return { vectors: index.size(), index, shards, buildSeconds: built.seconds, loadSeconds };
}

/**
 * {@link rebuildIndex} returning the vector count (the earlier signature).
 */
export async function rebuildIndexFile(store: Store, dataDir: string, meta: IndexGeneration, recallTarget?: number, threads?: number): Promise<number> {
  return (await rebuildIndex(store, dataDir, meta, { recallTarget, threads })).vectors;
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
    const vectors = await rebuildIndexFile(store, config.dataDir, meta, config.hnsw.recallTarget, config.threads);
    const old = await store.corpus.activateGeneration(meta.generation);
    if (old && !store.corpus.nativeVectorSearch) removeIndexFiles(indexFile(config.dataDir, old));
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
        result = { generation: meta.generation, embedded: 0, vectors: await rebuildIndexFile(store, config.dataDir, meta, config.hnsw.recallTarget, config.threads), model: meta.modelId };
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
