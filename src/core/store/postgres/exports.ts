/**
 * PostgreSQL implementation of {@link ExportSource} (schema: migrations/postgres/040_features_exports.sql).
 * Same semantics as the SQLite engine (sqlite/exports.ts):
 * - responses stream in log order, a page of SELECT_PAGE_ROWS at a time (keyset `seq > last`, each
 *   page one short statement on the pool); filters are SQL; the current rating of a response is its
 *   latest feedback row (highest id), found by a LATERAL probe of feedback (response_id, id);
 * - the preference plan lives in TEMPORARY tables of one pooled client, held (checked out of the
 *   pool) from `planPreference` until the selection's `close()`: temporary tables belong to a
 *   session. The plan is built in one REPEATABLE READ transaction: a cursor streams the rated
 *   responses (PLAN_FETCH_ROWS at a time), their prompt keys are computed in JavaScript and inserted
 *   in bulk, then the pairing is one SQL statement — memory stays flat whatever the log size.
 */
import crypto from 'node:crypto';
import type pg from 'pg';
import { ConflictError } from '../../errors.ts';
import { PROMPT_HASH_MIN_PREFIX, pseudonymousUserHash } from '../exports.ts';
import { COLUMNS, partnerOf, toLogged } from '../export-rows.ts';
import type { PairRow, RawRow } from '../export-rows.ts';
import type {
  ExportFilters,
  ExportSource,
  ExportUserRef,
  LoggedResponse,
  LogSnapshot,
  NewExportRun,
  PreferencePlan,
  PreferenceRow,
  PreferenceSelection,
  SelectOptions,
  SelectionStats,
} from '../exports.ts';
import type { PostgresConnection } from './connection.ts';

/** Rows per keyset page (default 512, as on SQLite). */
export const SELECT_PAGE_ROWS = 512;
/** Rated responses fetched per cursor round trip while a preference plan is built (default 1000). */
export const PLAN_FETCH_ROWS = 1000;
/** Name of the settings row holding the user-hash key. */
export const USER_HASH_KEY_SETTING = 'export.user_hash_key';
/** Bytes of the user-hash key. */
export const USER_HASH_KEY_BYTES = 32;

interface Where {
  sql: string;
  params: unknown[];
}

/** Whitespace as the JS side's `isBlank` sees it (space, tab, LF, CR). */
const BLANK_CHARS = "' ' || chr(9) || chr(10) || chr(13)";
const HAS_CORRECTION = (alias: string) => `(${alias}.correction IS NOT NULL AND length(btrim(${alias}.correction, ${BLANK_CHARS})) > 0)`;
/** The latest feedback row of response r, as `alias` (LEFT JOIN: null columns when unrated). */
const LATEST_FEEDBACK = (alias: string) =>
  `LEFT JOIN LATERAL (SELECT id, rating, correction FROM feedback WHERE response_id = r.id ORDER BY id DESC LIMIT 1) ${alias} ON true`;

/**
 * SQL conditions for the row filters (not status), numbering parameters after the `fixed` ones. The
 * SQL text depends only on which filters are set, so it stays one prepared statement per combination.
 */
function filterWhere(filters: ExportFilters, feedbackAlias: string | null, fixed: number): Where {
  const clauses: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown): string => {
    params.push(v);
    return `$${fixed + params.length}`;
  };
  if (filters.since !== undefined) clauses.push(`r.created_at >= ${p(filters.since)}`);
  if (filters.until !== undefined) clauses.push(`r.created_at < ${p(filters.until)}`);
  if (filters.collection !== undefined) clauses.push(`r.collection = ${p(filters.collection)}`);
  if (filters.release !== undefined) clauses.push(`r.release = ${p(filters.release)}`);
  if (filters.model !== undefined) {
    const m = p(filters.model);
    clauses.push(`(r.model_id = ${m} OR r.model_backend || ':' || r.model_id = ${m})`);
  }
  if (filters.prompt !== undefined) {
    const name = p(filters.prompt);
    if (new RegExp(`^[0-9a-fA-F]{${PROMPT_HASH_MIN_PREFIX},64}$`).test(filters.prompt)) {
      clauses.push(`(r.prompt_name = ${name} OR left(r.prompt_sha256, ${p(filters.prompt.length)}::int) = ${p(filters.prompt.toLowerCase())})`);
    } else {
      clauses.push(`r.prompt_name = ${name}`);
    }
  }
  if (filters.minRating !== undefined && filters.minRating > -1 && feedbackAlias !== null) {
    const f = feedbackAlias;
    clauses.push(`(CASE WHEN ${HAS_CORRECTION(f)} THEN 1 ELSE coalesce(${f}.rating, 0) END) >= ${p(filters.minRating)}::int`);
  }
  return { sql: clauses.length ? ` AND ${clauses.join(' AND ')}` : '', params };
}

/** Columns of a response `r`, its feedback `f` and its user `us`, names prefixed with `prefix`. */
function rowColumns(r: string, f: string, us: string, prefix = ''): string {
  return [
    // rendered_prompt_json is `json`: read as text, exactly as written (pg would parse it).
    ...COLUMNS.map((c) => (c === 'rendered_prompt_json' ? `${r}.${c}::text AS ${prefix}${c}` : `${r}.${c} AS ${prefix}${c}`)),
    `${us}.created_at AS ${prefix}user_created_at`,
    `${f}.rating AS ${prefix}rating`,
    `${f}.correction AS ${prefix}correction`,
  ].join(', ');
}


const SQL_DROP_PLAN = 'DROP TABLE IF EXISTS pg_temp.export_pairs; DROP TABLE IF EXISTS pg_temp.export_rated';
const SQL_CREATE_RATED = 'CREATE TEMPORARY TABLE export_rated (seq bigint PRIMARY KEY, h text, rating integer NOT NULL, fb_id bigint NOT NULL)';
const SQL_INSERT_RATED = 'INSERT INTO pg_temp.export_rated (seq, h, rating, fb_id) SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[])';
// The k-th -1 answer of a prompt (log order) with the ((k-1) mod U)+1-th of its U +1 answers.
const SQL_PAIRS = `CREATE TEMPORARY TABLE export_pairs AS
  WITH d AS (SELECT seq, h, row_number() OVER (PARTITION BY h ORDER BY seq) AS k FROM pg_temp.export_rated WHERE rating = -1 AND h IS NOT NULL),
       u AS (SELECT seq, h, row_number() OVER (PARTITION BY h ORDER BY seq) AS k, count(*) OVER (PARTITION BY h) AS n
               FROM pg_temp.export_rated WHERE rating = 1 AND h IS NOT NULL)
  SELECT d.seq AS down_seq, u.seq AS up_seq FROM d JOIN u ON u.h = d.h AND u.k = ((d.k - 1) % u.n) + 1`;
// Walk export_rated by seq, look the rest up by key.
const SQL_PAIR_PAGE = `SELECT ${rowColumns('r', 'f', 'us')}, ${rowColumns('u', 'uf', 'uus', 'u_')}
     FROM pg_temp.export_rated e
     JOIN responses r ON r.seq = e.seq
     JOIN users us ON us.id = r.user_id
     JOIN feedback f ON f.id = e.fb_id
     LEFT JOIN pg_temp.export_pairs p ON p.down_seq = e.seq
     LEFT JOIN responses u ON u.seq = p.up_seq
     LEFT JOIN users uus ON uus.id = u.user_id
     LEFT JOIN pg_temp.export_rated eu ON eu.seq = p.up_seq
     LEFT JOIN feedback uf ON uf.id = eu.fb_id
    WHERE e.seq > $1 AND (e.rating = -1 OR e.h IS NULL)
    ORDER BY e.seq
    LIMIT $2`;

interface RatedRow {
  seq: number;
  status: LoggedResponse['status'];
  rendered_prompt_json: string | null;
  rating: number;
  fb_id: number;
}

export class PostgresExportSource implements ExportSource {
  private planOpen = false;
  private key: Uint8Array | null = null;

  constructor(protected readonly c: PostgresConnection) {}

  async logSnapshot(): Promise<LogSnapshot> {
    const r = await this.c.one<{ lo: number | null; hi: number | null }>('SELECT min(seq) AS lo, max(seq) AS hi FROM responses');
    return { firstSeq: r?.lo ?? null, snapshotSeq: r?.hi ?? 0 };
  }

  async *selectResponses(options: SelectOptions, stats: SelectionStats): AsyncGenerator<LoggedResponse> {
    const where = filterWhere(options.filters, 'f', 3);
    const keep = options.filters.includeErrors ? 'true' : "r.status = 'ok'";
    // Status is tested in JavaScript (to count exclusions in the same scan); the CASEs keep the server
    // from de-TOASTing the big text columns of the rows about to be dropped.
    const cols = rowColumns('r', 'f', 'us')
      .replace('r.rendered_prompt_json::text AS', `CASE WHEN ${keep} THEN r.rendered_prompt_json::text END AS`)
      .replace('r.answer AS', `CASE WHEN ${keep} THEN r.answer END AS`)
      .replace('r.query AS', `CASE WHEN ${keep} THEN r.query END AS`);
    const sql = `SELECT ${cols}
         FROM responses r
         JOIN users us ON us.id = r.user_id
         ${LATEST_FEEDBACK('f')}
        WHERE r.seq > $1 AND r.seq <= $2${where.sql}
        ORDER BY r.seq
        LIMIT $3`;
    const limit = options.pageRows ?? SELECT_PAGE_ROWS;
    let after = 0;
    for (;;) {
      const rows = await this.c.rows<RawRow>(sql, [after, options.snapshotSeq, limit, ...where.params]);
      for (const raw of rows) {
        after = raw.seq;
        stats.matched++;
        if (!options.filters.includeErrors && raw.status !== 'ok') {
          stats.excludedByStatus[raw.status]++;
          continue;
        }
        yield toLogged(raw);
      }
      if (rows.length < limit) return;
    }
  }

  async planPreference(options: Omit<SelectOptions, 'pageRows'>, promptKey: (renderedPromptJson: string) => string | null): Promise<PreferenceSelection> {
    if (this.planOpen) throw new ConflictError('another preference export is running on this store');
    this.planOpen = true;
    let client: pg.PoolClient | null = null;
    try {
      client = await this.c.connect();
      const held = client;
      const plan = await buildPlan(held, options, promptKey);
      let closed = false;
      return {
        plan,
        rows: (opts) => pairRows(held, opts?.pageRows ?? SELECT_PAGE_ROWS),
        close: async () => {
          if (closed) return;
          closed = true;
          await this.dropPlan(held);
        },
      };
    } catch (err) {
      if (client) {
        await client.query('ROLLBACK').catch(() => undefined); // the build failed inside its transaction
        await this.dropPlan(client);
      } else {
        this.planOpen = false;
      }
      throw err;
    }
  }

  /** Drops the plan's tables and returns the client to the pool (destroyed if it cannot be cleaned). */
  private async dropPlan(client: pg.PoolClient): Promise<void> {
    let broken = false;
    try {
      await client.query(SQL_DROP_PLAN);
    } catch {
      broken = true;
    } finally {
      client.release(broken);
      this.planOpen = false;
    }
  }

  async userHashKey(): Promise<Uint8Array> {
    if (this.key) return this.key;
    const get = 'SELECT value FROM settings WHERE name = $1';
    let stored = (await this.c.one<{ value: Buffer }>(get, [USER_HASH_KEY_SETTING]))?.value;
    if (!stored) {
      // ON CONFLICT DO NOTHING: of two processes creating it at once, the first one's key is everyone's.
      await this.c.run('INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [USER_HASH_KEY_SETTING, crypto.randomBytes(USER_HASH_KEY_BYTES)]);
      stored = (await this.c.one<{ value: Buffer }>(get, [USER_HASH_KEY_SETTING]))?.value;
    }
    if (!stored) throw new ConflictError('the export user-hash key could not be created');
    this.key = new Uint8Array(stored);
    return this.key;
  }

  async userHash(user: ExportUserRef): Promise<string> {
    return pseudonymousUserHash(await this.userHashKey(), user);
  }

  async recordRun(run: NewExportRun): Promise<number> {
    return this.c.tx(async (q) => {
      const row = await q.one<{ id: number }>(
        'INSERT INTO export_runs (manifest_path, format, examples, created_at) VALUES ($1, $2, $3, $4) RETURNING id',
        [run.manifestPath, run.format, run.examples, run.createdAt],
      );
      if (!row) throw new ConflictError('the export run could not be recorded');
      await q.run('INSERT INTO export_run_users (user_hash, run_id) SELECT DISTINCT h, $2::bigint FROM unnest($1::text[]) AS h ON CONFLICT DO NOTHING', [[...run.userHashes], row.id]);
      return row.id;
    });
  }

  async forgetRun(id: number): Promise<void> {
    await this.c.run('DELETE FROM export_runs WHERE id = $1', [id]);
  }

  async manifestsContainingUser(user: ExportUserRef): Promise<string[]> {
    const hash = await this.userHash(user);
    const rows = await this.c.rows<{ manifest_path: string }>(
      `SELECT r.manifest_path FROM export_run_users x JOIN export_runs r ON r.id = x.run_id
        WHERE x.user_hash = $1 GROUP BY r.manifest_path ORDER BY max(r.id) DESC`,
      [hash],
    );
    return rows.map((r) => r.manifest_path);
  }
}

/**
 * Builds the plan's temporary tables on `client` in one REPEATABLE READ transaction: the latest
 * feedback of every rated response passing the filters (driven from feedback: unrated responses are
 * never read), streamed through a cursor; prompt keys computed here; pairs in SQL.
 */
async function buildPlan(client: pg.PoolClient, options: Omit<SelectOptions, 'pageRows'>, promptKey: (json: string) => string | null): Promise<PreferencePlan> {
  const where = filterWhere(options.filters, null, 1);
  const excluded = { error: 0, cancelled: 0 };
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await client.query(SQL_DROP_PLAN);
  await client.query(SQL_CREATE_RATED);
  // Only the JSON of the rows kept is read (status is counted here, in the same scan).
  const keep = options.filters.includeErrors ? 'true' : "r.status = 'ok'";
  await client.query(
    `DECLARE export_rated_cursor NO SCROLL CURSOR FOR
       SELECT r.seq, r.status, CASE WHEN ${keep} THEN r.rendered_prompt_json::text END AS rendered_prompt_json, f.rating, f.id AS fb_id
         FROM feedback f JOIN responses r ON r.id = f.response_id
        WHERE NOT EXISTS (SELECT 1 FROM feedback l WHERE l.response_id = f.response_id AND l.id > f.id)
          AND r.seq <= $1${where.sql}`,
    [options.snapshotSeq, ...where.params],
  );
  for (;;) {
    const { rows } = await client.query<RatedRow>(`FETCH ${PLAN_FETCH_ROWS} FROM export_rated_cursor`);
    const kept = rows.filter((r) => {
      if (options.filters.includeErrors || r.status === 'ok') return true;
      excluded[r.status as 'error' | 'cancelled']++;
      return false;
    });
    if (kept.length > 0) {
      await client.query(SQL_INSERT_RATED, [kept.map((r) => r.seq), kept.map((r) => (r.rendered_prompt_json === null ? null : promptKey(r.rendered_prompt_json))), kept.map((r) => r.rating), kept.map((r) => r.fb_id)]);
    }
    if (rows.length < PLAN_FETCH_ROWS) break;
  }
  await client.query('CLOSE export_rated_cursor');
  await client.query('CREATE INDEX ON pg_temp.export_rated (h, rating, seq); ANALYZE pg_temp.export_rated');
  await client.query(SQL_PAIRS);
  await client.query('ALTER TABLE pg_temp.export_pairs ADD PRIMARY KEY (down_seq); ANALYZE pg_temp.export_pairs');
  await client.query('COMMIT');
  const ratings = { up: 0, down: 0 };
  for (const r of (await client.query<{ rating: number; n: string }>('SELECT rating, count(*) AS n FROM pg_temp.export_rated GROUP BY rating')).rows) ratings[r.rating === 1 ? 'up' : 'down'] += Number(r.n);
  const pairs = (await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_temp.export_pairs')).rows[0]?.n ?? '0';
  return { rated: ratings.up + ratings.down, ratings, excludedByStatus: excluded, plannedRatingPairs: Number(pairs) };
}

/** The plan's rows, a keyset page at a time on the plan's client (each page its own statement). */
async function* pairRows(client: pg.PoolClient, limit: number): AsyncGenerator<PreferenceRow> {
  let after = 0;
  for (;;) {
    const { rows } = await client.query<PairRow>(SQL_PAIR_PAGE, [after, limit]);
    for (const raw of rows) {
      after = raw.seq;
      yield { down: toLogged(raw), up: partnerOf(raw) };
    }
    if (rows.length < limit) return;
  }
}
