/**
 * `mneme migrate --to postgres://…`: copies a SQLite data dir's database into an empty PostgreSQL
 * database, row for row, and verifies it. The one engine-aware module: it reads the SQLite engine's
 * tables and writes the PostgreSQL engine's (both schemas are at their current migration: the SQLite
 * file is opened, and so migrated, like every command does; the target by openPostgresStore).
 *
 * What is copied, keeping every id (chunk ids are HNSW labels and are named by the prediction log;
 * responses keep `seq`, so the feature watermarks stay valid): users (key hashes, created_at), their named API keys,
 * documents (tombstones too), chunks, embeddings, index generations, ingest runs, conversations,
 * responses, messages, feedback, the feature tables (history, online, per-user state with the exact
 * interest-sum bytes), watermarks, settings (the export HMAC key: pseudonymous user hashes stay the
 * same), export runs with their user hashes, releases and their audit rows; `corpus_state.last_ingest_at`.
 * Tables and columns added by later migrations of both engines are marked optional (copied when the
 * SQLite file has them); a SQLite table or column this list does not know is refused, never dropped.
 *
 * What is derived, not copied: the full-text rows (PostgreSQL computes each chunk's weighted tsvector
 * on insert, from the document's title, and its triggers each document's tsvector), the HNSW index (pgvector builds it, one per embedding model of
 * a building/active generation) and the change feed: it starts fresh on PostgreSQL. The rows the
 * insert triggers wrote are removed and the head is kept in `corpus_state.feed_floor` (as
 * truncateFeed does), and `index_meta.saved_feed_seq` is NULL: SQLite's feed positions mean nothing
 * there. Engine differences applied on the way: U+0000 in text becomes U+FFFD (PostgreSQL text
 * cannot hold NUL; the conversation store does the same), `summary_json` becomes jsonb.
 *
 * One PostgreSQL transaction for the whole copy AND its verification: the target is either left
 * exactly as it was (empty, or its old content under --force) or holds a verified copy. A failure or a
 * checksum mismatch rolls everything back, so a rerun needs no --force; the target is not in use
 * while it is being migrated, so a long transaction costs nothing. The SQLite side is read in one
 * snapshot (a deferred read transaction held across the whole copy), so a server still running on the
 * data dir cannot make the copy inconsistent.
 *
 * Verification per table: row count and sha256 over a canonical serialization of every row in
 * primary-key order (byte order for text keys on both sides), computed from the rows as read from
 * SQLite and from the rows as read back from PostgreSQL inside the copy's transaction. Canonical
 * values: integers as numbers, booleans as 0/1, timestamps as ISO-8601 UTC with milliseconds, bytes
 * (BLOB/bytea) as hex, vectors as the hex of their float32 little-endian bytes, `json` columns as
 * their exact text, jsonb as JSON with sorted keys.
 *
 * --force empties the target's mneme tables (TRUNCATE … RESTART IDENTITY, the HNSW indexes dropped,
 * corpus_state and the seeded watermark reset) instead of dropping and recreating them: the schema and
 * its recorded migrations stay as openPostgresStore left them, and the truncate is part of the one
 * transaction, so a failed forced run leaves the old content in place.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { ConfigError, ConflictError, MnemeError } from '../errors.ts';
import type { PgTx, PostgresConnection } from './postgres/connection.ts';
import { hnswIndexName, PGVECTOR_HNSW_MAX_DIMENSIONS, vectorToPg } from './postgres/corpus.ts';
import { openPostgresStore } from './postgres/index.ts';
import { SqliteConnection } from './sqlite/connection.ts';

/** Rows per multi-row INSERT and per FETCH when reading back (default 1000). */
export const MIGRATE_PAGE_ROWS = 1000;
/** Transaction-scoped advisory lock key: two migrates into one database run one after the other. */
export const MIGRATE_LOCK_KEY = 7749310090;
/** What replaces U+0000 in text copied to PostgreSQL (which rejects NUL in text). */
const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * How a column is copied and compared. `int`, `bool`, `text`, `ts`: as named; `bytes`: BLOB ↔ bytea;
 * `json`: text ↔ json (kept verbatim); `jsonb`: text ↔ jsonb (compared with sorted keys); `vector`:
 * float32 LE BLOB ↔ pgvector.
 */
type Kind = 'int' | 'real' | 'bool' | 'text' | 'ts' | 'bytes' | 'json' | 'jsonb' | 'vector';

interface Column {
  name: string;
  kind: Kind;
  /** Copied only when the SQLite table has it (a column added by a later migration of both engines). */
  optional?: boolean;
}

interface TableSpec {
  name: string;
  /** Primary key columns (the order both sides are read in). */
  key: string[];
  columns: Column[];
  /** The bigserial column whose sequence is set past the copied ids (and past SQLite's AUTOINCREMENT high-water mark). */
  serial?: string;
  /** SQLite columns deliberately not copied (engine-specific). */
  skipSqliteColumns?: string[];
  /** Rows left out of the comparison on both sides (still copied). */
  compareWhere?: string;
  /** Custom PostgreSQL write ($1… are the column arrays in `columns` order); default a multi-row INSERT from unnest. */
  insertSql?: string;
  /** Copied only when the SQLite database has it (a table added by a later migration of both engines). */
  optional?: boolean;
}

const col = (name: string, kind: Kind): Column => ({ name, kind });
const ints = (...names: string[]) => names.map((n) => col(n, 'int'));
const texts = (...names: string[]) => names.map((n) => col(n, 'text'));
const times = (...names: string[]) => names.map((n) => col(n, 'ts'));

/** Every copied table, parents before children (foreign keys stay enforced). */
export const MIGRATED_TABLES: readonly TableSpec[] = [
  {
    name: 'users', key: ['id'], serial: 'id',
    columns: [...ints('id'), ...texts('name', 'api_key_hash', 'key_prefix'), col('is_admin', 'bool'), ...times('created_at', 'revoked_at')],
  },
  {
    // Named API keys (095_api_keys.sql): hashes, names, last use and revocation, ids kept.
    name: 'api_keys', key: ['id'], serial: 'id', optional: true,
    columns: [...ints('id', 'user_id'), ...texts('name', 'key_hash', 'key_prefix'), ...times('created_at', 'last_used_at', 'revoked_at')],
  },
  {
    name: 'documents', key: ['id'], serial: 'id',
    columns: [
      ...ints('id'), ...texts('collection', 'source_uri', 'content_sha256', 'title', 'kind'), ...ints('bytes'), ...times('ingested_at', 'updated_at', 'deleted_at'),
      { name: 'weight', kind: 'real', optional: true },
    ],
  },
  {
    name: 'chunks', key: ['id'], serial: 'id',
    columns: [...ints('id', 'document_id', 'ord'), ...texts('text', 'heading_path'), ...ints('token_count'), ...texts('content_sha256')],
    insertSql: `INSERT INTO chunks (id, document_id, ord, text, heading_path, token_count, content_sha256, tsv)
      SELECT u.id, u.document_id, u.ord, u.text, u.heading_path, u.token_count, u.content_sha256, mneme_chunk_tsv(d.title, u.heading_path, u.text)
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[])
        AS u(id, document_id, ord, text, heading_path, token_count, content_sha256)
      JOIN documents d ON d.id = u.document_id ORDER BY u.id`,
  },
  {
    name: 'index_meta', key: ['generation'], serial: 'generation',
    // The ef calibration measured the SQLite engine's HNSW file, not pgvector's index: not copied.
    skipSqliteColumns: ['saved_corpus_version', 'saved_feed_seq', 'calibrated_ef', 'calibrated_recall', 'calibrated_at', 'calibrated_vectors'],
    columns: [
      ...ints('generation'), ...texts('model_id'), ...ints('dimension'), ...texts('pooling'), col('normalized', 'bool'),
      ...ints('max_tokens'), ...texts('space'), ...ints('hnsw_m', 'hnsw_ef_construction', 'hnsw_ef_search'), ...texts('file', 'status'),
      ...times('created_at', 'activated_at'),
    ],
  },
  { name: 'embeddings', key: ['chunk_id', 'model_id'], columns: [...ints('chunk_id'), ...texts('model_id'), col('vector', 'vector')] },
  { name: 'ingest_runs', key: ['id'], serial: 'id', columns: [...ints('id'), ...times('started_at', 'finished_at'), col('summary_json', 'jsonb')] },
  { name: 'corpus_state', key: ['id'], columns: [...ints('id'), ...times('last_ingest_at')], insertSql: `UPDATE corpus_state c SET last_ingest_at = u.t
      FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, t) WHERE c.id = u.id` },
  { name: 'conversations', key: ['id'], columns: [...texts('id'), ...ints('user_id'), ...texts('title'), ...times('created_at', 'updated_at')] },
  {
    name: 'responses', key: ['seq'], serial: 'seq',
    columns: [
      ...ints('seq'), ...texts('id'), ...ints('user_id'), ...texts('conversation_id'), ...ints('turn_index'), ...times('created_at'),
      ...texts('endpoint'), col('request_json', 'json'), ...texts('query'), col('query_vector', 'bytes'), col('history_json', 'json'),
      ...texts('collection'), ...ints('top_k'), col('retrieved_json', 'json'), col('features_json', 'json'), ...texts('prompt_name', 'prompt_sha256'),
      col('rendered_prompt_json', 'json'), ...texts('model_backend', 'model_id'), col('sampling_json', 'json'), ...texts('answer'),
      col('citations_json', 'json'), col('timings_json', 'json'), ...ints('prompt_tokens', 'completion_tokens'), ...texts('status', 'error_code', 'error_message'),
      { name: 'release', kind: 'text', optional: true }, { name: 'arm', kind: 'text', optional: true },
      { name: 'finish_reason', kind: 'text', optional: true }, { name: 'flags_json', kind: 'json', optional: true },
      { name: 'evidence_json', kind: 'json', optional: true },
    ],
  },
  {
    name: 'messages', key: ['id'], serial: 'id',
    columns: [...ints('id'), ...texts('conversation_id'), ...ints('user_id'), ...texts('role', 'content', 'response_id'), ...times('created_at')],
  },
  {
    name: 'feedback', key: ['id'], serial: 'id',
    columns: [...ints('id'), ...texts('response_id'), ...ints('user_id', 'rating'), ...texts('correction'), ...times('created_at')],
  },
  { name: 'feature_user_state', key: ['user_id'], columns: [...ints('user_id'), ...texts('state_json'), col('interest_sum', 'bytes'), ...times('updated_at')] },
  {
    name: 'feature_history', key: ['user_id', 'feature', 'event_time'],
    columns: [...ints('user_id'), ...texts('feature'), ...times('event_time'), ...texts('value_json'), ...times('created_at')],
  },
  { name: 'feature_online', key: ['user_id', 'feature'], columns: [...ints('user_id'), ...texts('feature', 'value_json'), ...times('event_time')] },
  {
    // features.generation is the materializer's compare-and-set token, seeded by the PostgreSQL
    // migration: copied when SQLite has it, never compared (the seed may exist on one side only).
    name: 'watermarks', key: ['name'], columns: [...texts('name'), ...ints('value')], compareWhere: "name <> 'features.generation'",
    insertSql: `INSERT INTO watermarks (name, value) SELECT * FROM unnest($1::text[], $2::bigint[])
      ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
  },
  { name: 'settings', key: ['name'], columns: [...texts('name'), col('value', 'bytes')] },
  { name: 'export_runs', key: ['id'], serial: 'id', columns: [...ints('id'), ...texts('manifest_path', 'format'), ...ints('examples'), ...times('created_at')] },
  { name: 'export_run_users', key: ['user_hash', 'run_id'], columns: [...texts('user_hash'), ...ints('run_id')] },
  {
    name: 'releases', key: ['id'], serial: 'id', optional: true,
    columns: [
      ...ints('id'), ...texts('name'), ...ints('version'), col('parts_json', 'json'), ...texts('parts_sha256', 'created_by'), ...times('created_at'),
      ...texts('state'), col('share', 'real'), ...texts('experiment'), ...times('state_changed_at'),
    ],
  },
  {
    name: 'release_events', key: ['id'], serial: 'id', optional: true,
    columns: [...ints('id'), ...times('at'), ...texts('actor', 'action', 'from_release', 'to_release', 'reason'), col('forced', 'bool'), col('detail_json', 'json')],
  },
  // Collection access (090): without these rows a private collection would arrive public.
  { name: 'collections', key: ['name'], optional: true, columns: [...texts('name', 'visibility'), ...ints('created_by'), ...times('created_at')] },
  {
    name: 'collection_grants', key: ['collection', 'user_id'], optional: true,
    columns: [...texts('collection'), ...ints('user_id'), col('can_write', 'bool'), ...times('granted_at')],
  },
  // Groups (100): memberships and group grants open private collections to their members.
  { name: 'user_groups', key: ['name'], optional: true, columns: [...texts('name'), ...times('created_at')] },
  { name: 'group_members', key: ['group_name', 'user_id'], optional: true, columns: [...texts('group_name'), ...ints('user_id'), ...times('added_at')] },
  {
    name: 'collection_group_grants', key: ['collection', 'group_name'], optional: true,
    columns: [...texts('collection', 'group_name'), col('can_write', 'bool'), ...times('granted_at')],
  },
];

/** SQLite tables that are derived or engine-internal (never copied). */
const SQLITE_DERIVED_TABLES = new Set(['chunks_fts', 'documents_fts', 'corpus_changes', 'schema_migrations', 'sqlite_sequence', 'jobs']);
/** FTS5 shadow tables of the derived full-text tables. */
const SQLITE_FTS_SHADOW = /^(chunks|documents)_fts_/;
/** PostgreSQL tables emptied by --force, besides MIGRATED_TABLES (corpus_state is reset, not truncated). */
const POSTGRES_DERIVED_TABLES = ['corpus_changes', 'jobs'];

export interface TableResult {
  /** Rows copied (read from SQLite). */
  rows: number;
  /** sha256 hex of the canonical rows read from SQLite. */
  sha256: string;
  /** Rows and sha256 read back from PostgreSQL. */
  targetRows: number;
  targetSha256: string;
  /** Counts and checksums equal. */
  ok: boolean;
}

export interface MigrateResult {
  /** The target URL without its password. */
  target: string;
  /** Per table, in copy order. */
  tables: Record<string, TableResult>;
  /** The change feed: fresh on PostgreSQL; `head` is its starting position there. */
  feed: { sqliteHead: number; postgresHead: number; rows: number };
  /** HNSW indexes built (one per embedding model of a building/active generation). */
  vectorIndexes: string[];
  /** Text values whose U+0000 characters became U+FFFD. */
  nulReplaced: number;
  /** Whether --force emptied a non-empty target first. */
  forced: boolean;
  seconds: number;
}

/** The target already holds mneme data and --force was not given. */
export class TargetNotEmptyError extends ConflictError {
  constructor(
    readonly target: string,
    readonly nonEmptyTables: string[],
  ) {
    super(`${target} already holds mneme data (${nonEmptyTables.join(', ')}); migrate only into an empty database, or pass --force to empty it first`);
  }
}

/** A copied table's count or checksum differs from the source; nothing was committed. */
export class MigrationMismatchError extends MnemeError {
  constructor(readonly result: MigrateResult) {
    const bad = Object.entries(result.tables).filter(([, t]) => !t.ok).map(([n]) => n);
    super('migration_mismatch', 500, `verification failed for ${bad.join(', ')}; the PostgreSQL transaction was rolled back, the target is unchanged`);
  }
}

export interface MigrateOptions {
  /** The SQLite database of the data dir (must exist). */
  sqliteFile: string;
  /** postgres://… of the target database (must exist; mneme's schema is created in it). */
  targetUrl: string;
  /** Empty a non-empty target first. Default false. */
  force?: boolean;
  /** Rows per batch. Default MIGRATE_PAGE_ROWS. */
  pageRows?: number;
}

/**
 * Copies the SQLite database into the PostgreSQL database and verifies every table, in one
 * PostgreSQL transaction.
 * @throws ConfigError when the SQLite file is missing or has a table/column this build does not know;
 * UnavailableError('database_busy') when the server is unreachable (message names the URL without
 * password); TargetNotEmptyError without `force` on a non-empty target; MigrationMismatchError (with
 * the per-table result) when a count or checksum differs — in every case nothing is committed.
 */
export async function migrateSqliteToPostgres(opts: MigrateOptions): Promise<MigrateResult> {
  const started = performance.now();
  if (!fs.existsSync(opts.sqliteFile)) throw new ConfigError(`no SQLite database at ${opts.sqliteFile} (is --data-dir right?)`);
  const sqlite = new SqliteConnection(opts.sqliteFile);
  try {
    const specs = sourceTables(sqlite);
    const store = await openPostgresStore(opts.targetUrl, { max: 1 });
    try {
      return await copyAll(sqlite, store.connection, specs, opts, started);
    } finally {
      await store.close();
    }
  } finally {
    sqlite.close();
  }
}

async function copyAll(sqlite: SqliteConnection, target: PostgresConnection, specs: TableSpec[], opts: MigrateOptions, started: number): Promise<MigrateResult> {
  const pageRows = opts.pageRows ?? MIGRATE_PAGE_ROWS;
  // One snapshot of the source for the whole copy.
  sqlite.stmt('BEGIN DEFERRED').run();
  try {
    const highWater = new Map(sqlite.stmt<[], { name: string; seq: number }>('SELECT name, seq FROM sqlite_sequence').all().map((r) => [r.name, r.seq]));
    const sqliteHead = highWater.get('corpus_changes') ?? 0;
    return await target.tx(async (q) => {
      await q.run('SELECT pg_advisory_xact_lock($1)', [MIGRATE_LOCK_KEY]);
      const nonEmpty = await nonEmptyTables(q, specs);
      if (nonEmpty.length > 0 && !opts.force) throw new TargetNotEmptyError(target.label, nonEmpty);
      if (nonEmpty.length > 0) await emptyTarget(q, specs);
      const result: MigrateResult = {
        target: target.label, tables: {}, feed: { sqliteHead, postgresHead: 0, rows: 0 }, vectorIndexes: [], nulReplaced: 0, forced: nonEmpty.length > 0, seconds: 0,
      };
      const sources = new Map<string, { rows: number; sha256: string; maxSerial: number }>();
      for (const spec of specs) {
        const s = await copyTable(sqlite, q, spec, pageRows, result);
        sources.set(spec.name, s);
        if (spec.serial) await setSequence(q, spec, Math.max(s.maxSerial, highWater.get(spec.name) ?? 0));
      }
      result.vectorIndexes = await buildVectorIndexes(q);
      result.feed.postgresHead = await restartFeed(q);
      for (const spec of specs) {
        const src = sources.get(spec.name)!;
        const back = await readBack(q, spec, pageRows);
        result.tables[spec.name] = { rows: src.rows, sha256: src.sha256, targetRows: back.rows, targetSha256: back.sha256, ok: src.rows === back.rows && src.sha256 === back.sha256 };
      }
      if (Object.values(result.tables).some((t) => !t.ok)) throw new MigrationMismatchError(result);
      // Planner statistics for the copied rows: without them dense search sorts every vector instead
      // of walking the HNSW index (and an ef calibration would measure exact scans).
      await q.run('ANALYZE');
      result.seconds = (performance.now() - started) / 1000;
      return result;
    });
  } finally {
    sqlite.stmt('COMMIT').run();
  }
}

/**
 * The tables to copy, as this SQLite database has them (optional tables and columns only when
 * present). Refuses a source this build cannot copy completely: a table that is neither copied nor
 * derived, a column the copy does not know (a newer schema), or a required table that is missing.
 * @throws ConfigError naming the table or column
 */
function sourceTables(sqlite: SqliteConnection): TableSpec[] {
  const tables = new Set(sqlite.stmt<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((r) => r.name));
  const known = new Set(MIGRATED_TABLES.map((t) => t.name));
  for (const name of tables) {
    if (!known.has(name) && !SQLITE_DERIVED_TABLES.has(name) && !SQLITE_FTS_SHADOW.test(name)) {
      throw new ConfigError(`the SQLite database has a table migrate does not know (${name}); nothing was copied`);
    }
  }
  const specs: TableSpec[] = [];
  for (const spec of MIGRATED_TABLES) {
    if (!tables.has(spec.name)) {
      if (spec.optional) continue;
      throw new ConfigError(`the SQLite database has no ${spec.name} table; nothing was copied`);
    }
    const columns = new Set(sqlite.stmt<[string], { name: string }>('SELECT name FROM pragma_table_info(?)').all(spec.name).map((r) => r.name));
    const expected = new Set([...spec.columns.map((c) => c.name), ...(spec.skipSqliteColumns ?? []), ...(spec.name === 'corpus_state' ? ['version'] : [])]);
    const unknown = [...columns].filter((c) => !expected.has(c));
    if (unknown.length > 0) throw new ConfigError(`the SQLite table ${spec.name} has columns migrate does not know (${unknown.join(', ')}); nothing was copied`);
    const missing = spec.columns.filter((c) => !c.optional && !columns.has(c.name)).map((c) => c.name);
    if (missing.length > 0) throw new ConfigError(`the SQLite table ${spec.name} lacks columns (${missing.join(', ')}); nothing was copied`);
    specs.push({ ...spec, columns: spec.columns.filter((c) => columns.has(c.name)) });
  }
  return specs;
}

/** Tables of the target holding mneme data (seed rows of its migrations do not count). */
async function nonEmptyTables(q: PgTx, specs: readonly TableSpec[]): Promise<string[]> {
  const out: string[] = [];
  for (const spec of specs) {
    if (spec.name === 'corpus_state') continue;
    const where = spec.compareWhere ? `WHERE ${spec.compareWhere}` : '';
    const r = await q.one<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${spec.name} ${where}) AS any`);
    if (r?.any) out.push(spec.name);
  }
  return out;
}

/** --force: empties every mneme table (schema and recorded migrations stay), drops the HNSW indexes. */
async function emptyTarget(q: PgTx, specs: readonly TableSpec[]): Promise<void> {
  const names = [...specs.map((t) => t.name).filter((n) => n !== 'corpus_state'), ...POSTGRES_DERIVED_TABLES];
  await q.exec(`TRUNCATE ${names.join(', ')} RESTART IDENTITY CASCADE`);
  for (const idx of await q.rows<{ name: string }>("SELECT indexname AS name FROM pg_indexes WHERE tablename = 'embeddings' AND indexname LIKE 'embeddings\\_hnsw\\_%'")) {
    await q.exec(`DROP INDEX ${pg.escapeIdentifier(idx.name)}`);
  }
  await q.run('UPDATE corpus_state SET version = 0, last_ingest_at = NULL, feed_floor = 0 WHERE id = 1');
  await q.run("INSERT INTO watermarks (name, value) VALUES ('features.generation', 0) ON CONFLICT (name) DO NOTHING");
}

/** Streams one table from SQLite into PostgreSQL in batches; returns the source's count, checksum and highest serial. */
async function copyTable(sqlite: SqliteConnection, q: PgTx, spec: TableSpec, pageRows: number, result: MigrateResult) {
  const names = spec.columns.map((c) => c.name);
  const read = sqlite.stmt<[], Record<string, unknown>>(`SELECT ${names.join(', ')} FROM ${spec.name} ORDER BY ${spec.key.join(', ')}`);
  const write = spec.insertSql ?? defaultInsertSql(spec);
  const compareFilter = spec.compareWhere ? compileFilter(spec.compareWhere) : null;
  const hash = createHash('sha256');
  let rows = 0;
  let maxSerial = 0;
  let batch: unknown[][] = spec.columns.map(() => []);
  let pending = 0;
  const flush = async () => {
    if (pending > 0) await q.run(write, batch);
    batch = spec.columns.map(() => []);
    pending = 0;
  };
  for (const row of read.iterate()) {
    const canonical: unknown[] = [];
    spec.columns.forEach((c, i) => {
      const { param, canon, nul } = fromSqlite(c.kind, row[c.name]);
      batch[i]!.push(param);
      canonical.push(canon);
      if (nul) result.nulReplaced += 1;
    });
    if (!compareFilter || compareFilter(row)) {
      hash.update(`${JSON.stringify(canonical)}\n`);
      rows += 1;
    }
    if (spec.serial) maxSerial = Math.max(maxSerial, row[spec.serial] as number);
    if (++pending >= pageRows) await flush();
  }
  await flush();
  return { rows, sha256: hash.digest('hex'), maxSerial };
}

/** The only compare filter used: `name <> 'X'` (kept tiny instead of a SQL evaluator). */
function compileFilter(where: string): (row: Record<string, unknown>) => boolean {
  const m = /^(\w+) <> '([^']*)'$/.exec(where);
  if (!m) throw new Error(`unsupported compareWhere: ${where}`);
  const [, column, value] = m;
  return (row) => row[column!] !== value;
}

const PG_ARRAY_TYPE: Record<Kind, string> = {
  int: 'bigint[]', real: 'float8[]', bool: 'boolean[]', text: 'text[]', ts: 'timestamptz[]', bytes: 'bytea[]', json: 'text[]', jsonb: 'text[]', vector: 'text[]',
};
const PG_CAST: Partial<Record<Kind, string>> = { json: '::json', jsonb: '::jsonb', vector: '::vector' };

function defaultInsertSql(spec: TableSpec): string {
  const names = spec.columns.map((c) => c.name);
  const arrays = spec.columns.map((c, i) => `$${i + 1}::${PG_ARRAY_TYPE[c.kind]}`).join(', ');
  const select = spec.columns.map((c) => `u.${c.name}${PG_CAST[c.kind] ?? ''}`).join(', ');
  return `INSERT INTO ${spec.name} (${names.join(', ')}) SELECT ${select} FROM unnest(${arrays}) AS u(${names.join(', ')})`;
}

/** A SQLite value → the PostgreSQL parameter and its canonical form. */
function fromSqlite(kind: Kind, v: unknown): { param: unknown; canon: unknown; nul?: boolean } {
  if (v === null || v === undefined) return { param: null, canon: null };
  switch (kind) {
    case 'int':
    case 'real':
      return { param: v, canon: Number(v) };
    case 'bool':
      return { param: Boolean(v), canon: v ? 1 : 0 };
    case 'text': {
      const s = String(v);
      const clean = s.includes('\u0000') ? s.replace(/\u0000/g, REPLACEMENT_CHARACTER) : s;
      return { param: clean, canon: clean, nul: clean !== s };
    }
    case 'ts':
      return { param: v, canon: canonicalTime(String(v)) };
    case 'bytes': {
      const b = Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
      return { param: b, canon: b.toString('hex') };
    }
    case 'json':
      return { param: v, canon: String(v) };
    case 'jsonb':
      return { param: v, canon: canonicalJson(String(v)) };
    case 'vector': {
      const b = v as Buffer;
      const f = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      return { param: vectorToPg(f), canon: b.toString('hex') };
    }
  }
}

/** A PostgreSQL value (as read back with the select list of {@link readBack}) → its canonical form. */
function fromPostgres(kind: Kind, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  switch (kind) {
    case 'int':
    case 'real':
      return Number(v);
    case 'bool':
      return v ? 1 : 0;
    case 'text':
    case 'json':
      return String(v);
    case 'ts':
      return canonicalTime(String(v));
    case 'bytes':
      return (v as Buffer).toString('hex');
    case 'jsonb':
      return canonicalJson(String(v));
    case 'vector':
      return Buffer.from(Float32Array.from(JSON.parse(String(v)) as number[]).buffer).toString('hex');
  }
}

/** ISO-8601 UTC with milliseconds; text that is no valid time stays as it is (and then differs). */
function canonicalTime(s: string): string {
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toISOString();
}

/** JSON text with object keys sorted (jsonb reorders keys); unparseable text stays as it is. */
function canonicalJson(s: string): string {
  const sort = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sort);
    if (x !== null && typeof x === 'object') return Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort((x as Record<string, unknown>)[k])]));
    return x;
  };
  try {
    return JSON.stringify(sort(JSON.parse(s)));
  } catch {
    return s;
  }
}

/** Reads a table back (in this transaction, through a cursor) and returns its count and checksum. */
async function readBack(q: PgTx, spec: TableSpec, pageRows: number): Promise<{ rows: number; sha256: string }> {
  const select = spec.columns.map((c) => (c.kind === 'json' || c.kind === 'jsonb' || c.kind === 'vector' ? `${c.name}::text AS ${c.name}` : c.name)).join(', ');
  const textKeys = new Set(spec.columns.filter((c) => c.kind === 'text').map((c) => c.name));
  const order = spec.key.map((k) => (textKeys.has(k) ? `${k} COLLATE "C"` : k)).join(', ');
  const where = spec.compareWhere ? `WHERE ${spec.compareWhere}` : '';
  await q.exec(`DECLARE mneme_migrate_cursor NO SCROLL CURSOR FOR SELECT ${select} FROM ${spec.name} ${where} ORDER BY ${order}`);
  const hash = createHash('sha256');
  let rows = 0;
  for (;;) {
    const page = await q.dynamic<Record<string, unknown>>(`FETCH ${pageRows} FROM mneme_migrate_cursor`);
    for (const row of page) {
      hash.update(`${JSON.stringify(spec.columns.map((c) => fromPostgres(c.kind, row[c.name])))}\n`);
      rows += 1;
    }
    if (page.length < pageRows) break;
  }
  await q.exec('CLOSE mneme_migrate_cursor');
  return { rows, sha256: hash.digest('hex') };
}

/** The next id handed out is `upTo + 1` (or 1 for an empty table). */
async function setSequence(q: PgTx, spec: TableSpec, upTo: number): Promise<void> {
  await q.dynamic('SELECT setval(pg_get_serial_sequence($1, $2), $3, $4)', [spec.name, spec.serial, Math.max(upTo, 1), upTo > 0]);
}

/** One HNSW index per embedding model of a building/active generation (its latest generation's parameters), as createGeneration makes. */
async function buildVectorIndexes(q: PgTx): Promise<string[]> {
  const gens = await q.rows<{ model_id: string; dimension: number; hnsw_m: number; hnsw_ef_construction: number }>(
    `SELECT DISTINCT ON (model_id) model_id, dimension, hnsw_m, hnsw_ef_construction FROM index_meta
     WHERE status IN ('building', 'active') ORDER BY model_id, generation DESC`,
  );
  const built: string[] = [];
  for (const g of gens) {
    if (!Number.isInteger(g.dimension) || g.dimension < 1 || g.dimension > PGVECTOR_HNSW_MAX_DIMENSIONS) continue;
    const name = hnswIndexName(g.model_id, g.dimension);
    await q.exec(
      `CREATE INDEX IF NOT EXISTS ${pg.escapeIdentifier(name)} ON embeddings
       USING hnsw ((vector::vector(${g.dimension})) vector_cosine_ops) WITH (m = ${Math.trunc(g.hnsw_m)}, ef_construction = ${Math.trunc(g.hnsw_ef_construction)})
       WHERE model_id = ${pg.escapeLiteral(g.model_id)}`,
    );
    built.push(name);
  }
  return built;
}

/**
 * The feed starts fresh: the rows the insert triggers wrote are removed, their highest seq kept as the
 * floor (the head readers see), and no generation claims a SQLite feed position.
 * @returns the PostgreSQL feed head
 */
async function restartFeed(q: PgTx): Promise<number> {
  const r = await q.one<{ top: number | null }>('WITH gone AS (DELETE FROM corpus_changes RETURNING seq) SELECT max(seq) AS top FROM gone');
  const top = r?.top ?? 0;
  await q.run('UPDATE corpus_state SET feed_floor = greatest(feed_floor, $1) WHERE id = 1', [top]);
  await q.run('UPDATE index_meta SET saved_feed_seq = NULL');
  return top;
}
