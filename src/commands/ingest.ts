import fs from 'node:fs';
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { openStore, openVectorStack } from '../core/deps.ts';
import type { VectorStack } from '../core/deps.ts';
import { acquireLock } from '../core/lock.ts';
import { acquireLease, CORPUS_WRITER_LEASE } from '../core/lease.ts';
import { lowerCpuPriority } from '../core/priority.ts';
import { runIngest } from '../../ingest/pipeline.ts';
import type { IngestSummary } from '../../ingest/pipeline.ts';
import { ValidationError } from '../core/errors.ts';
import { CorpusNotifier, openRedis } from '../core/store/redis/index.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import { countFiles, progressDisplay } from './ingest-progress.ts';
import { CliIngestJob, failInterruptedJobs } from '../chat/jobs.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

/** Exit code after SIGINT (128 + signal 2, as shells report it). */
export const EXIT_INTERRUPTED = 130;

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  collection: z.string().regex(/^[\w.-]{1,64}$/, 'letters, digits, "_", "-", "." (1-64)').default('default'),
  prune: z.boolean().default(false),
  wait: z.boolean().default(false),
  'text-field': z.array(z.string().min(1)).optional(),
  exclude: z.array(z.string().min(1).max(512)).optional(),
});

/** The option table of `mneme ingest` (parsing and --help). */
export const INGEST_SPEC: CommandSpec = {
  name: 'ingest',
  summary: 'add new files, replace changed ones and (with --prune) remove vanished ones: md, txt, html, pdf, json/jsonl',
  positionals: '<path...>',
  options: [
    { name: 'collection', type: 'string', value: 'NAME', default: 'default', description: 'collection the documents belong to (letters, digits, "_", "-", ".")' },
    { name: 'prune', type: 'boolean', default: false, description: 'remove documents of this collection whose files are gone (only under the given paths)' },
    { name: 'wait', type: 'boolean', default: false, description: 'wait for a running ingest/reindex on this data dir instead of exiting 1' },
    { name: 'text-field', type: 'string', value: 'F', multiple: true, description: 'JSON/JSONL: field holding a record\'s text, tried in order (default: text, content, body, page_content)' },
    { name: 'exclude', type: 'string', value: 'GLOB', multiple: true, description: 'leave out files matching GLOB (a name like "release-*.html", or a path under the given directory like "html/bookindex.html"; * ** ? [..]); with --prune they also leave the collection' },
  ],
  examples: [
    'ingest ~/notes ~/handbook --collection team --prune',
    'ingest data.jsonl --text-field question --text-field answer --json',
    "ingest pgdoc/html --collection pg --exclude 'release-*.html' --exclude bookindex.html --prune",
  ],
};

export const ingestCommand: Command = {
  name: 'ingest',
  usage: synopsis(INGEST_SPEC),
  specs: [INGEST_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(INGEST_SPEC, args, schema);
    if (opts.positionals.length === 0) throw new ValidationError('ingest: give at least one file or directory');
    const missing = opts.positionals.filter((p) => !fs.existsSync(p));
    if (missing.length > 0) throw new ValidationError(`ingest: no such file or directory: ${missing.join(', ')}`);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    // Before the embedding workers start, so they inherit it (a server on this machine keeps its latency).
    lowerCpuPriority(config.ingestNice);
    // 24 h: "wait" means wait for the other run, however long it is.
    const lock = await acquireLock(config.dataDir, 'ingest', 'mneme ingest', opts.wait ? 24 * 3600 * 1000 : 0);
    const store = await openStore(config);
    // A shared database (PostgreSQL) may have writers on other machines, which the data-dir lock cannot see.
    const lease = config.databaseUrl
      ? await acquireLease(store, CORPUS_WRITER_LEASE, opts.wait ? 24 * 3600 * 1000 : 0).catch(async (err: unknown) => {
          await store.close();
          lock.release();
          throw err;
        })
      : null;
    // With Redis, serving replicas hear of each committed window at once (else they poll the feed).
    const notifier = config.redis ? new CorpusNotifier({ client: openRedis(config.redis.url), prefix: config.redis.prefix, ownsClient: true }) : null;
    let noticeFailed = false;
    const notify = notifier
      ? (head: number) => {
          notifier.publish(head).catch((err: unknown) => {
            if (!noticeFailed) io.stderr.write(`warning: corpus-change notice (redis) failed: ${(err as Error).message}; servers will pick the change up at their next poll\n`);
            noticeFailed = true;
          });
        }
      : undefined;
    try {
      let stack: Promise<VectorStack> | null = null;
      const vectors = () =>
        (stack ??= openVectorStack(store, config).then((v) => {
          for (const w of v.warnings) io.stderr.write(`warning: ${w}\n`);
          return v;
        }));
      const runId = await store.corpus.startIngestRun();
      const filesTotal = await countFiles(opts.positionals, config.dataDir);
      const display = progressDisplay(io.stderr, io.isTty, filesTotal);
      // This run is a job row too (GET /v1/jobs/:id for admins); jobs of processes that died are failed first.
      await failInterruptedJobs(store).catch(() => 0);
      const job = await CliIngestJob.start(store, { collection: opts.collection, filesTotal });
      if (job && !opts.json) io.stderr.write(`ingest job ${job.id}\n`);
      const interrupt = stopOnSigint(io);
      const summary = await runIngest({
        store,
        dataDir: config.dataDir,
        paths: opts.positionals,
        collection: opts.collection,
        prune: opts.prune,
        maxFileBytes: config.maxFileBytes,
        vectors,
        configuredModel: config.embed.model,
        jsonTextFields: opts['text-field'],
        exclude: opts.exclude,
        recallTarget: config.hnsw.recallTarget,
        notify,
        // Before each file: the ones before it are finished (read, failed or unchanged).
        onProgress: (p) => {
          const done = { filesDone: p.filesDone - 1 + p.filesFailed, filesFailed: p.filesFailed, chunksEmbedded: p.chunksEmbedded };
          display.update(done);
          job?.progress(done);
        },
        shouldStop: interrupt.requested,
      })
        .catch(async (err: unknown) => {
          await job?.finish(null, err);
          throw err;
        })
        .finally(() => {
          interrupt.dispose();
          display.stop();
        });
      await job?.finish(summary);
      await store.corpus.finishIngestRun(runId, summary);
      const opened = stack as Promise<VectorStack> | null;
      if (opened) await (await opened).embedder?.close();
      report(job ? { ...summary, job_id: job.id } : summary, opts.json, io);
      if (!summary.interrupted) return 0;
      io.stderr.write(
        `interrupted: stored ${summary.documents_added} added and ${summary.documents_updated} updated documents (${summary.chunks_added} chunks) before stopping; ` +
          `run the same command again to resume (unchanged files cost only a hash): mneme ingest ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}\n`,
      );
      return EXIT_INTERRUPTED;
    } finally {
      await notifier?.close();
      await lease?.release();
      await store.close();
      lock.release();
    }
  },
};

/**
 * The first SIGINT asks the pipeline to stop after the current document (it is still embedded and
 * committed); a second one exits at once with EXIT_INTERRUPTED (the next run cleans up).
 */
function stopOnSigint(io: CommandIo): { requested: () => boolean; dispose: () => void } {
  let requested = false;
  const onSignal = () => {
    if (requested) process.exit(EXIT_INTERRUPTED);
    requested = true;
    io.stderr.write('\ningest: stopping after the current document (Ctrl-C again to stop at once)\n');
  };
  process.on('SIGINT', onSignal);
  return { requested: () => requested, dispose: () => process.off('SIGINT', onSignal) };
}

function report(s: IngestSummary & { job_id?: string }, json: boolean, io: CommandIo): void {
  for (const f of s.failed) io.stderr.write(`failed: ${f.path}: ${f.reason}: ${f.message}\n`);
  for (const k of s.skipped) io.stderr.write(`skipped: ${k.path}: ${k.message}\n`);
  if (json) {
    printJson(io.stdout, s);
    return;
  }
  io.stdout.write(
    `${s.documents_seen} documents seen: ${s.documents_added} added, ${s.documents_updated} updated, ` +
      `${s.documents_unchanged} unchanged, ${s.documents_deleted} deleted, ${s.documents_failed} failed\n` +
      `${s.chunks_added} chunks added, ${s.chunks_deleted} deleted, ${s.chunks_embedded} embedded` +
      `${s.embedding_model ? ` with ${s.embedding_model}` : ' (no embedding model: BM25 only)'} in ${s.seconds.toFixed(2)} s\n`,
  );
}
