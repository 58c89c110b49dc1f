import fs from 'node:fs';
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { withStore } from '../core/deps.ts';
import type { IndexGeneration } from '../core/index-store.ts';
import { effectiveEfSearch, indexFile, indexOptions } from '../core/index-store.ts';
import type { Store } from '../core/store/index.ts';
import { indexExists, ShardedHnswIndex } from '../core/sharded-index.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import { checkEmbeddingModel } from './doctor-model.ts';
import type { Command } from './types.ts';

export interface DoctorReport {
  ok: boolean;
  problems: string[];
  warnings: string[];
  counts: Record<string, number>;
  /** The storage engine: name, versions, settings (`engine=sqlite` or `engine=postgres`, pgvector version...). */
  engine: Record<string, string>;
  /**
   * The ef_search queries use and where it comes from (`override` = MNEME_HNSW_EF_SEARCH,
   * `calibrated` = the generation's calibration, `default` = never calibrated), with the recall@10
   * measured by the last calibration; null without an active generation.
   */
  vectorSearch: { ef_search: number; source: 'override' | 'calibrated' | 'default'; calibrated_ef: number | null; recall_at_10: number | null; calibrated_at: string | null; calibrated_vectors: number | null } | null;
}

/** What `diagnose` compares the generation's calibration with (from the configuration). */
export interface DoctorHnswSettings {
  /** MNEME_HNSW_EF_SEARCH, null when unset. */
  efSearch: number | null;
  /** MNEME_HNSW_RECALL_TARGET. */
  recallTarget: number;
}

/** Checks that SQLite, FTS5 and the HNSW file agree. Pure read: never repairs. */
export async function diagnose(store: Store, dataDir: string, hnsw: DoctorHnswSettings = { efSearch: null, recallTarget: 0.99 }): Promise<DoctorReport> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const k = await store.corpus.counts();
  if (k.integrity.join() !== 'ok') problems.push(`sqlite quick_check: ${k.integrity.slice(0, 5).join('; ')}`);
  if (k.foreignKeyViolations > 0) problems.push(`${k.foreignKeyViolations} rows violate foreign keys`);
  const counts: Record<string, number> = { documents: k.documents, documents_deleted: k.documentsDeleted, chunks: k.chunks, fts_rows: k.ftsRows };
  if (k.ftsRows !== k.chunks) problems.push(`FTS5 has ${k.ftsRows} rows for ${k.chunks} chunks`);
  if (k.chunksNotInFts > 0) problems.push(`${k.chunksNotInFts} chunks missing from FTS5`);
  if (k.chunksOfDeletedDocuments > 0) problems.push(`${k.chunksOfDeletedDocuments} chunks belong to deleted or half-written documents (the next \`mneme ingest\` removes them)`);
  if (k.stagingDocuments > 0) warnings.push(`${k.stagingDocuments} large document(s) were being written when an ingest stopped; the next ingest finishes the job`);
  if (k.liveDocumentsWithoutChunks > 0) problems.push(`${k.liveDocumentsWithoutChunks} live documents have no chunks`);
  if (k.duplicateOrds > 0) problems.push(`${k.duplicateOrds} duplicate (document, ord) chunks`);

  const meta = await store.corpus.activeGeneration();
  const engine = await store.corpus.engineReport(meta);
  problems.push(...engine.problems);
  for (const b of await store.corpus.generations('building')) {
    warnings.push(`index generation ${b.generation} (${b.modelId}) is still building: re-run \`mneme reindex --model ${b.modelId}\``);
  }
  if (!meta) {
    const vecs = k.embeddings.reduce((n, e) => n + e.count, 0);
    if (vecs > 0) problems.push(`${vecs} stored embeddings but no active index generation`);
    else warnings.push('no vector index yet (no embedding model was available): BM25 only');
    return { ok: problems.length === 0, problems, warnings, counts, engine: engine.facts, vectorSearch: null };
  }
  counts.generation = meta.generation;
  const cal = meta.calibration;
  const vectorSearch = {
    ef_search: effectiveEfSearch(meta, hnsw.efSearch),
    source: hnsw.efSearch !== null ? ('override' as const) : cal ? ('calibrated' as const) : ('default' as const),
    calibrated_ef: cal?.ef ?? null,
    recall_at_10: cal?.recall ?? null,
    calibrated_at: cal?.at ?? null,
    calibrated_vectors: cal?.vectors ?? null,
  };
  if (cal && cal.recall < hnsw.recallTarget) warnings.push(`ef_search calibration reached recall@10 ${cal.recall} only (target ${hnsw.recallTarget}) at ef ${cal.ef}`);
  const expected = await store.corpus.embeddedChunkIds(meta.modelId);
  counts.embeddings = expected.size;
  const unembedded = k.chunks - expected.size;
  if (unembedded > 0) warnings.push(`${unembedded} chunks have no ${meta.modelId} embedding yet: run ingest with the model to embed them`);
  const wrongDim = await store.corpus.wrongSizeEmbeddings(meta.modelId, meta.dimension);
  if (wrongDim > 0) problems.push(`${wrongDim} embeddings have the wrong size for ${meta.dimension} dimensions`);
  const building = new Set((await store.corpus.generations('building')).map((g) => g.modelId));
  for (const o of k.embeddings) {
    if (o.modelId !== meta.modelId && !building.has(o.modelId)) problems.push(`${o.count} embeddings of ${o.modelId}, which is not the active model`);
  }
  // An engine with its own vector index (pgvector) has no file to compare.
  if (!store.corpus.nativeVectorSearch) problems.push(...checkIndexFile(indexFile(dataDir, meta), meta, expected, counts));
  return { ok: problems.length === 0, problems, warnings, counts, engine: engine.facts, vectorSearch };
}

/** Compares the saved HNSW index's labels (sharded layout, or the legacy single file) with the stored embeddings. */
function checkIndexFile(file: string, meta: IndexGeneration, expected: Set<number>, counts: Record<string, number>): string[] {
  if (!indexExists(file)) return expected.size > 0 ? [`index file ${file} is missing (run \`mneme reindex\`)`] : [];
  let index: ShardedHnswIndex;
  try {
    index = ShardedHnswIndex.load(file, indexOptions(meta));
  } catch (err) {
    return [`index file ${file} cannot be read: ${(err as Error).message} (run \`mneme reindex\`)`];
  }
  counts.index_vectors = index.size();
  counts.index_shards = index.shardCount;
  const problems: string[] = [];
  const extra = index.labels().filter((l) => !expected.has(l));
  let missing = 0;
  for (const id of expected) if (!index.has(id)) missing++;
  if (extra.length > 0) problems.push(`index holds ${extra.length} vectors with no chunk (e.g. ${extra.slice(0, 5).join(', ')})`);
  if (missing > 0) problems.push(`index lacks ${missing} of ${expected.size} stored embeddings (run \`mneme ingest\` or \`mneme reindex\`)`);
  return problems;
}

const schema = z.object({ 'data-dir': z.string().optional(), json: z.boolean() });

/** The option table of `mneme doctor` (parsing and --help). */
export const DOCTOR_SPEC: CommandSpec = {
  name: 'doctor',
  summary: 'check that SQLite, FTS5, the HNSW file and the embedding model agree (read-only; exit 1 on a problem)',
  options: [],
  examples: ['doctor', 'doctor --data-dir /srv/mneme --json'],
};

export const doctorCommand: Command = {
  name: 'doctor',
  usage: synopsis(DOCTOR_SPEC),
  specs: [DOCTOR_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(DOCTOR_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    if (!config.databaseUrl && !fs.existsSync(config.dbFile)) {
      io.stderr.write(`doctor: no database at ${config.dbFile}\n`);
      return 1;
    }
    return withStore(config, async (store) => {
      const report = await diagnose(store, config.dataDir, config.hnsw);
      await checkEmbeddingModel(report, config);
      if (opts.json) printJson(io.stdout, report);
      else {
        io.stdout.write(`${Object.entries(report.engine).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
        io.stdout.write(`${Object.entries(report.counts).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
        const vs = report.vectorSearch;
        if (vs) {
          const measured = vs.recall_at_10 === null ? 'not calibrated yet' : `recall@10 ${vs.recall_at_10} at ef ${vs.calibrated_ef} (${vs.calibrated_vectors} vectors, ${vs.calibrated_at})`;
          io.stdout.write(`ef_search=${vs.ef_search} (${vs.source}); ${measured}\n`);
        }
        for (const w of report.warnings) io.stdout.write(`warning: ${w}\n`);
        for (const p of report.problems) io.stdout.write(`PROBLEM: ${p}\n`);
        io.stdout.write(report.ok ? 'ok\n' : `${report.problems.length} problem(s)\n`);
      }
      return report.ok ? 0 : 1;
    });
  },
};
