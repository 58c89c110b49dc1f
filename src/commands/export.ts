/**
 * `mneme export --format sft|preference --out FILE [filters] [--include-extractive] [--scrub-context]
 * [--preference-format openai|trl] [--val-fraction F] [--json]`: turns the prediction log and feedback
 * into fine-tuning datasets (see src/export/run.ts for the files written). By default rated-down
 * answers without a correction and extractive answers are left out, and PII is scrubbed from the
 * user's text and the answers but not from the retrieved passages.
 * Exit 0 when the export ran (also when it selected nothing: a message says so and no file is
 * written), 1 when it could not (no database, unwritable output, cancelled), 2 for bad usage.
 */
import fs from 'node:fs';
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import { openStore } from '../core/deps.ts';
import { ConfigError } from '../core/errors.ts';
import { EXPORT_FORMATS, PREFERENCE_FORMATS } from '../export/format.ts';
import { runExport } from '../export/run.ts';
import type { ExportManifest } from '../export/run.ts';
import { SCRUB_KINDS } from '../export/scrub.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

/** How often the terminal progress line is redrawn, in ms. */
const PROGRESS_REDRAW_MS = 200;

const ISO_RE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/** ISO-8601 date or date-time → the stored form (UTC, ms). A time without a zone is taken as UTC. */
const isoInstant = z.string().transform((v, ctx) => {
  const m = ISO_RE.exec(v.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `expected an ISO-8601 date or date-time (e.g. 2025-01-31 or 2025-01-31T12:00:00Z), got "${v}"` });
    return z.NEVER;
  }
  const text = v.trim().replace(' ', 'T');
  // Date-only strings are UTC in JS already; a date-time without a zone would be local time.
  const withZone = text.includes('T') && !m[1] ? `${text}Z` : text;
  const t = new Date(withZone);
  if (Number.isNaN(t.getTime())) {
    ctx.addIssue({ code: 'custom', message: `not a valid date: "${v}"` });
    return z.NEVER;
  }
  return t.toISOString();
});

const schema = z
  .object({
    'data-dir': z.string().optional(),
    json: z.boolean(),
    format: z.enum(EXPORT_FORMATS, { error: () => 'expected sft or preference' }),
    out: z.string({ error: () => 'required: the file to write' }).min(1),
    since: isoInstant.optional(),
    until: isoInstant.optional(),
    'min-rating': z.coerce.number().int().min(-1).max(1).optional(),
    collection: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    prompt: z.string().min(1).optional(),
    release: z.string().min(1).optional(),
    'include-errors': z.boolean().default(false),
    'include-extractive': z.boolean().default(false),
    'scrub-context': z.boolean().default(false),
    'preference-format': z.enum(PREFERENCE_FORMATS, { error: () => 'expected openai or trl' }).optional(),
    'val-fraction': z.coerce.number().min(0).lt(1).default(0),
  })
  .refine((o) => o.since === undefined || o.until === undefined || o.since < o.until, { message: '--since must be before --until', path: ['since'] })
  .refine((o) => o['preference-format'] === undefined || o.format === 'preference', {
    message: '--preference-format applies to --format preference only',
    path: ['preference-format'],
  });

/** The option table of `mneme export` (parsing and --help). */
export const EXPORT_SPEC: CommandSpec = {
  name: 'export',
  summary: 'write fine-tuning datasets from the prediction log and feedback, plus FILE.manifest.json',
  options: [
    { name: 'format', type: 'string', value: 'sft|preference', description: 'sft: chat messages with the answer (or correction) as target; preference: chosen/rejected pairs; required' },
    { name: 'out', type: 'string', value: 'FILE', description: 'JSONL file to write (FILE.val.jsonl too with --val-fraction); required' },
    { name: 'since', type: 'string', value: 'ISO', description: 'only answers created at or after this date/date-time (UTC when no zone)' },
    { name: 'until', type: 'string', value: 'ISO', description: 'only answers created before this date/date-time (UTC when no zone)' },
    {
      name: 'min-rating',
      type: 'string',
      value: 'N',
      description: 'least effective rating, -1|0|1 (a correction counts 1, unrated 0); default: all but rated-down answers without a correction (--min-rating=-1 keeps those too)',
    },
    { name: 'collection', type: 'string', value: 'C', description: 'only answers retrieved from this collection' },
    { name: 'model', type: 'string', value: 'M', description: 'only answers of this model id (or backend:model_id)' },
    { name: 'prompt', type: 'string', value: 'NAME_OR_HASH', description: 'only answers of this prompt template name or sha256 (prefix of 8+ hex digits)' },
    { name: 'release', type: 'string', value: 'NAME', description: 'only answers of this release (`mneme releases list`)' },
    { name: 'include-errors', type: 'boolean', default: false, description: 'also export answers whose status is error or cancelled' },
    { name: 'include-extractive', type: 'boolean', default: false, description: 'also train on extractive answers (passages quoted when no language model is configured)' },
    { name: 'scrub-context', type: 'boolean', default: false, description: "also scrub PII from the retrieved passages (default: only the user's text and the answers)" },
    {
      name: 'preference-format',
      type: 'string',
      value: 'openai|trl',
      description: 'preference line shape: openai (input/preferred_output/non_preferred_output, default) or trl (prompt/chosen/rejected)',
    },
    { name: 'val-fraction', type: 'string', value: 'F', default: '0', description: 'fraction in [0, 1) of conversations held out to FILE.val.jsonl' },
  ],
  examples: [
    'export --format sft --out train.jsonl --min-rating 1 --val-fraction 0.1',
    'export --format preference --out prefs.jsonl --preference-format trl --since 2025-01-01 --json',
  ],
};

export const exportCommand: Command = {
  name: 'export',
  usage: synopsis(EXPORT_SPEC),
  specs: [EXPORT_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(EXPORT_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    if (!fs.existsSync(config.dbFile)) throw new ConfigError(`no database at ${config.dbFile} (wrong --data-dir?)`);
    const store = await openStore(config);
    const controller = new AbortController();
    const onSignal = (): void => controller.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let lastDraw = 0;
    try {
      const result = await runExport({
        store,
        format: opts.format,
        out: opts.out,
        filters: {
          since: opts.since,
          until: opts.until,
          minRating: opts['min-rating'] as -1 | 0 | 1 | undefined,
          collection: opts.collection,
          model: opts.model,
          prompt: opts.prompt,
          release: opts.release,
          includeErrors: opts['include-errors'],
        },
        includeExtractive: opts['include-extractive'],
        scrubContext: opts['scrub-context'],
        preferenceFormat: opts['preference-format'],
        valFraction: opts['val-fraction'],
        signal: controller.signal,
        onProgress: io.isTty
          ? (p) => {
              const now = Date.now();
              if (now - lastDraw < PROGRESS_REDRAW_MS) return;
              lastDraw = now;
              io.stderr.write(`\r\x1b[2Kexport: ${p.rowsRead} rows read, ${p.examplesWritten} examples`);
            }
          : undefined,
      });
      if (io.isTty) io.stderr.write('\r\x1b[2K');
      for (const w of result.warnings) io.stderr.write(`warning: ${w}\n`);
      if (opts.json) {
        if (!result.written) io.stderr.write(`export: ${result.message}\n`);
        printJson(io.stdout, result.manifest);
      } else report(result.manifest, result.message, io);
      return 0;
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      await store.close();
    }
  },
};

function report(m: ExportManifest, message: string, io: CommandIo): void {
  const c = m.counts;
  io.stdout.write(`export: ${message}\n`);
  if (c.rows_read === 0 && c.rows_matched === 0) return;
  const line = [
    `rows read ${c.rows_read}`,
    `malformed ${c.malformed}`,
    `duplicates ${c.duplicates_exact} exact + ${c.duplicates_near} near`,
    `train ${c.train}`,
    `val ${c.val}`,
  ];
  io.stdout.write(`  ${line.join(', ')}\n`);
  const x = c.excluded;
  const excluded = [
    x.rated_down_uncorrected > 0 ? `${x.rated_down_uncorrected} rated down without a correction (--min-rating=-1 keeps them)` : '',
    x.extractive > 0 ? `${x.extractive} extractive (--include-extractive)` : '',
    x.errored > 0 ? `${x.errored} errored (--include-errors)` : '',
    x.cancelled > 0 ? `${x.cancelled} cancelled (--include-errors)` : '',
  ].filter((p) => p !== '');
  if (excluded.length) io.stdout.write(`  excluded: ${excluded.join(', ')}\n`);
  const scrubbed = SCRUB_KINDS.filter((k) => m.scrub[k] > 0).map((k) => `${k} ${m.scrub[k]}`);
  if (scrubbed.length) io.stdout.write(`  scrubbed: ${scrubbed.join(', ')}${m.scrub.context ? '' : ' (retrieved passages kept as is; --scrub-context to scrub them)'}\n`);
  if (m.malformed_rows.length) {
    io.stdout.write(`  malformed log ids: ${m.malformed_rows.slice(0, 20).map((r) => `${r.seq} (${r.reason})`).join(', ')}${m.malformed_rows.length > 20 || m.malformed_rows_truncated ? ', …' : ''}\n`);
  }
}
