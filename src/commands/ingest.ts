import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { openDatabase, openVectorStack } from '../core/deps.ts';
import type { VectorStack } from '../core/deps.ts';
import { acquireLock } from '../core/lock.ts';
import { nowIso } from '../core/db.ts';
import { runIngest } from '../../ingest/pipeline.ts';
import type { IngestSummary } from '../../ingest/pipeline.ts';
import { ValidationError } from '../core/errors.ts';
import { parseCommandArgs, printJson } from './args.ts';
import type { Command, CommandIo } from './types.ts';

/** How often the terminal progress line is redrawn, in ms. */
const PROGRESS_REDRAW_MS = 200;

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  collection: z.string().regex(/^[\w.-]{1,64}$/, 'letters, digits, "_", "-", "." (1-64)').default('default'),
  prune: z.boolean().default(false),
  wait: z.boolean().default(false),
  'text-field': z.array(z.string().min(1)).optional(),
});

export const ingestCommand: Command = {
  name: 'ingest',
  usage: 'ingest <path...> [--collection NAME] [--prune] [--wait] [--text-field F]... [--json]',
  async run(args, io) {
    const opts = parseCommandArgs(
      'ingest',
      args,
      { collection: { type: 'string' }, prune: { type: 'boolean' }, wait: { type: 'boolean' }, 'text-field': { type: 'string', multiple: true } },
      schema,
      true,
    );
    if (opts.positionals.length === 0) throw new ValidationError('ingest: give at least one file or directory');
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    // 24 h: "wait" means wait for the other run, however long it is.
    const lock = await acquireLock(config.dataDir, 'ingest', 'mneme ingest', opts.wait ? 24 * 3600 * 1000 : 0);
    const db = openDatabase(config);
    try {
      let stack: Promise<VectorStack> | null = null;
      const vectors = () =>
        (stack ??= openVectorStack(db, config).then((v) => {
          for (const w of v.warnings) io.stderr.write(`warning: ${w}\n`);
          return v;
        }));
      const run = db.prepare('INSERT INTO ingest_runs (started_at) VALUES (?)').run(nowIso());
      let lastDraw = 0;
      const summary = await runIngest({
        db,
        dataDir: config.dataDir,
        paths: opts.positionals,
        collection: opts.collection,
        prune: opts.prune,
        maxFileBytes: config.maxFileBytes,
        vectors,
        configuredModel: config.embed.model,
        jsonTextFields: opts['text-field'],
        onProgress: io.isTty
          ? (p) => {
              const now = Date.now();
              if (now - lastDraw < PROGRESS_REDRAW_MS) return;
              lastDraw = now;
              io.stderr.write(`\r\x1b[2Kingest: ${p.filesDone} files, ${p.chunksDone} chunks stored`);
            }
          : undefined,
      });
      if (io.isTty) io.stderr.write('\r\x1b[2K');
      db.prepare('UPDATE ingest_runs SET finished_at = ?, summary_json = ? WHERE id = ?').run(nowIso(), JSON.stringify(summary), run.lastInsertRowid);
      const opened = stack as Promise<VectorStack> | null;
      if (opened) await (await opened).embedder?.close();
      report(summary, opts.json, io);
      return 0;
    } finally {
      db.close();
      lock.release();
    }
  },
};

function report(s: IngestSummary, json: boolean, io: CommandIo): void {
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
