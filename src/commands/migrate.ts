/**
 * `mneme migrate --to postgres://… [--force] [--json]`: copies the data dir's SQLite database into an
 * empty PostgreSQL database and verifies it table by table (src/core/store/migrate.ts). Exit codes:
 * 0 copied and verified; 1 cannot proceed (target not empty without --force, server unreachable, a
 * count or checksum differs: nothing is committed then); 2 bad usage.
 */
import { z } from 'zod';
import { loadConfig } from '../core/config.ts';
import type { MigrateResult } from '../core/store/migrate.ts';
import { MigrationMismatchError, migrateSqliteToPostgres } from '../core/store/migrate.ts';
import { parseCommandArgs, printJson, synopsis } from './args.ts';
import type { CommandSpec } from './args.ts';
import type { Command, CommandIo } from './types.ts';

const POSTGRES_URL = /^postgres(ql)?:\/\/.+/;

const schema = z.object({
  'data-dir': z.string().optional(),
  json: z.boolean(),
  to: z.string({ error: () => 'required: the target database, postgres://user@host:port/db' }).regex(POSTGRES_URL, { message: 'must be a postgres:// or postgresql:// URL' }),
  force: z.boolean().default(false),
});

/** The option table of `mneme migrate` (parsing and --help). */
export const MIGRATE_SPEC: CommandSpec = {
  name: 'migrate',
  summary:
    'copy this data dir (SQLite) into an empty PostgreSQL database, keeping every id, and verify each table (row count + sha256); ' +
    'the change feed starts fresh there, full text and HNSW are rebuilt by PostgreSQL',
  options: [
    { name: 'to', type: 'string', value: 'URL', description: 'target database, postgres://user[:password]@host:port/db (must exist; pgvector installed); required' },
    {
      name: 'force',
      type: 'boolean',
      default: false,
      description: 'empty a target that already holds mneme data first (TRUNCATE of its mneme tables, in the same transaction as the copy)',
    },
  ],
  examples: ['migrate --to postgres://mneme@db.internal:5432/mneme', 'migrate --to postgres://postgres@127.0.0.1/mneme --force --json'],
};

/** `{tables: {name: {rows, sha256, ok}}, seconds, …}`: a mismatching table also shows what the target holds. */
function toJson(r: MigrateResult): Record<string, unknown> {
  const tables = Object.fromEntries(
    Object.entries(r.tables).map(([name, t]) => [name, t.ok ? { rows: t.rows, sha256: t.sha256, ok: true } : { rows: t.rows, sha256: t.sha256, ok: false, target_rows: t.targetRows, target_sha256: t.targetSha256 }]),
  );
  return {
    tables,
    seconds: r.seconds,
    target: r.target,
    forced: r.forced,
    feed: { starts_fresh: true, sqlite_head: r.feed.sqliteHead, postgres_head: r.feed.postgresHead },
    vector_indexes: r.vectorIndexes,
    nul_replaced: r.nulReplaced,
  };
}

function printTable(io: CommandIo, r: MigrateResult): void {
  const names = Object.keys(r.tables);
  const w = Math.max(5, ...names.map((n) => n.length));
  const lines = [`${'table'.padEnd(w)}  ${'rows'.padStart(8)}  sha256            ok`];
  for (const n of names) {
    const t = r.tables[n]!;
    const target = t.ok ? '' : `  (target: ${t.targetRows} rows, ${t.targetSha256.slice(0, 16)})`;
    lines.push(`${n.padEnd(w)}  ${String(t.rows).padStart(8)}  ${t.sha256.slice(0, 16)}  ${t.ok ? 'yes' : 'NO'}${target}`);
  }
  io.stdout.write(`${lines.join('\n')}\n`);
}

function printNotes(io: CommandIo, r: MigrateResult): void {
  io.stdout.write(
    `${r.forced ? 'the target held mneme data: emptied first (--force)\n' : ''}` +
      `full text: PostgreSQL computed each chunk's tsvector on insert; vector indexes built: ${r.vectorIndexes.length > 0 ? r.vectorIndexes.join(', ') : 'none'}\n` +
      `change feed: starts fresh on PostgreSQL at ${r.feed.postgresHead} (SQLite's feed, head ${r.feed.sqliteHead}, is not copied; servers on PostgreSQL search pgvector directly)\n` +
      `${r.nulReplaced > 0 ? `${r.nulReplaced} text values had U+0000 replaced by U+FFFD (PostgreSQL text cannot hold NUL)\n` : ''}` +
      `copied and verified into ${r.target} in ${r.seconds.toFixed(2)} s; set MNEME_DATABASE_URL to use it\n`,
  );
}

export const migrateCommand: Command = {
  name: 'migrate',
  usage: synopsis(MIGRATE_SPEC),
  specs: [MIGRATE_SPEC],
  async run(args, io) {
    const opts = parseCommandArgs(MIGRATE_SPEC, args, schema);
    const config = loadConfig(io.env, { dataDir: opts['data-dir'] });
    let result: MigrateResult;
    try {
      result = await migrateSqliteToPostgres({ sqliteFile: config.dbFile, targetUrl: opts.to, force: opts.force });
    } catch (err) {
      if (!(err instanceof MigrationMismatchError)) throw err;
      if (opts.json) printJson(io.stdout, toJson(err.result));
      else printTable(io, err.result);
      throw err;
    }
    if (opts.json) printJson(io.stdout, toJson(result));
    else {
      printTable(io, result);
      printNotes(io, result);
    }
    return 0;
  },
};
