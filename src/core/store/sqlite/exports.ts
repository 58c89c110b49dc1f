/**
 * SQLite implementation of {@link ExportSource} (every statement of this aggregate lives here).
 *
 * Responses stream in log order (`responses.seq`), a page of SELECT_PAGE_ROWS at a time (keyset
 * pagination `seq > last`; each page is one short statement, so a long export never pins the WAL and
 * the server keeps writing). Filters are SQL (unselected rows never reach JavaScript); the big
 * columns of rows excluded for their status are not even read. The current rating of a response is
 * its latest feedback row (highest feedback id). The preference plan lives in TEMP tables on disk
 * (`temp_store = FILE`), so memory stays flat whatever the log size.
 */
import crypto from 'node:crypto';
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
import type { SqliteConnection } from './connection.ts';

/** Rows per keyset page. */
export const SELECT_PAGE_ROWS = 512;
/** Name of the settings row holding the user-hash key. */
export const USER_HASH_KEY_SETTING = 'export.user_hash_key';
/** Bytes of the user-hash key. */
export const USER_HASH_KEY_BYTES = 32;
/** SQL function name under which the prompt key is registered while a preference plan is built. */
const PROMPT_KEY_FN = 'mneme_export_prompt_key';

interface Where {
  sql: string;
  params: Record<string, string | number>;
}

// Whitespace as the JS side's `isBlank` sees it.
const BLANK_CHARS = "' ' || char(9, 10, 13)";
const HAS_CORRECTION = (alias: string) => `(${alias}.correction IS NOT NULL AND length(trim(${alias}.correction, ${BLANK_CHARS})) > 0)`;
/** The latest feedback row of response r. */
const LATEST_FEEDBACK = '(SELECT max(id) FROM feedback WHERE response_id = r.id)';

/** Prompt filter: a template name, or a sha256 (prefix). */
function promptWhere(p: string, clauses: string[], params: Record<string, string | number>): void {
  if (new RegExp(`^[0-9a-fA-F]{${PROMPT_HASH_MIN_PREFIX},64}$`).test(p)) {
    clauses.push('(r.prompt_name = @prompt OR substr(r.prompt_sha256, 1, @promptLen) = @promptHash)');
    params.promptLen = p.length;
    params.promptHash = p.toLowerCase();
  } else {
    clauses.push('r.prompt_name = @prompt');
  }
  params.prompt = p;
}

/**
 * SQL conditions for the row filters (not status). The leading `+` on created_at keeps SQLite walking
 * the log in seq order instead of switching to the created_at index and sorting each page.
 */
function filterWhere(filters: ExportFilters, feedbackAlias: string | null): Where {
  const clauses: string[] = [];
  const params: Record<string, string | number> = {};
  if (filters.since !== undefined) {
    clauses.push('+r.created_at >= @since');
    params.since = filters.since;
  }
  if (filters.until !== undefined) {
    clauses.push('+r.created_at < @until');
    params.until = filters.until;
  }
  if (filters.collection !== undefined) {
    clauses.push('r.collection = @collection');
    params.collection = filters.collection;
  }
  if (filters.model !== undefined) {
    clauses.push("(r.model_id = @model OR r.model_backend || ':' || r.model_id = @model)");
    params.model = filters.model;
  }
  if (filters.prompt !== undefined) promptWhere(filters.prompt, clauses, params);
  if (filters.release !== undefined) {
    clauses.push('r.release = @release');
    params.release = filters.release;
  }
  if (filters.minRating !== undefined && filters.minRating > -1 && feedbackAlias !== null) {
    const f = feedbackAlias;
    clauses.push(`(CASE WHEN ${HAS_CORRECTION(f)} THEN 1 ELSE coalesce(${f}.rating, 0) END) >= @minRating`);
    params.minRating = filters.minRating;
  }
  return { sql: clauses.length ? ` AND ${clauses.join(' AND ')}` : '', params };
}

function statusWhere(filters: ExportFilters): string {
  return filters.includeErrors ? '' : " AND r.status = 'ok'";
}

/** Columns of a response `r`, its feedback `f` and its user `us`, names prefixed with `prefix`. */
function rowColumns(r: string, f: string, us: string, prefix = ''): string {
  return [
    ...COLUMNS.map((c) => `${r}.${c} AS ${prefix}${c}`),
    `${us}.created_at AS ${prefix}user_created_at`,
    `${f}.rating AS ${prefix}rating`,
    `${f}.correction AS ${prefix}correction`,
  ].join(', ');
}


export class SqliteExportSource implements ExportSource {
  private planOpen = false;
  private key: Uint8Array | null = null;

  constructor(protected readonly c: SqliteConnection) {}

  async logSnapshot(): Promise<LogSnapshot> {
    const r = this.c.stmt<[], { lo: number | null; hi: number | null }>('SELECT min(seq) AS lo, max(seq) AS hi FROM responses').get();
    return { firstSeq: r?.lo ?? null, snapshotSeq: r?.hi ?? 0 };
  }

  async *selectResponses(options: SelectOptions, stats: SelectionStats): AsyncGenerator<LoggedResponse> {
    const where = filterWhere(options.filters, 'f');
    const keep = options.filters.includeErrors ? '1' : "r.status = 'ok'";
    // Status is tested in JavaScript (to count exclusions in the same scan); the CASEs keep SQLite from
    // reading the big text columns of the rows it is about to drop. CROSS JOIN keeps the log outermost
    // (walked in seq order, the user looked up by key), whatever the statistics say.
    const cols = rowColumns('r', 'f', 'us')
      .replace('r.rendered_prompt_json AS', `CASE WHEN ${keep} THEN r.rendered_prompt_json END AS`)
      .replace('r.answer AS', `CASE WHEN ${keep} THEN r.answer END AS`)
      .replace('r.query AS', `CASE WHEN ${keep} THEN r.query END AS`);
    const page = this.c.stmt<Record<string, string | number>, RawRow>(
      `SELECT ${cols}
         FROM responses r
         CROSS JOIN users us ON us.id = r.user_id
         LEFT JOIN feedback f ON f.id = ${LATEST_FEEDBACK}
        WHERE r.seq > @after AND r.seq <= @snapshotSeq${where.sql}
        ORDER BY r.seq
        LIMIT @limit`,
    );
    const limit = options.pageRows ?? SELECT_PAGE_ROWS;
    let after = 0;
    for (;;) {
      const rows = page.all({ ...where.params, after, snapshotSeq: options.snapshotSeq, limit });
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
    if (this.planOpen) throw new ConflictError('another preference export is running on this connection');
    this.planOpen = true;
    try {
      const plan = this.buildPlan(options, promptKey);
      return { plan, rows: (opts) => this.pairRows(opts?.pageRows ?? SELECT_PAGE_ROWS), close: async () => this.dropPlan() };
    } catch (err) {
      this.dropPlan();
      throw err;
    }
  }

  private buildPlan(options: Omit<SelectOptions, 'pageRows'>, promptKey: (json: string) => string | null): PreferencePlan {
    const db = this.c.db;
    db.pragma('temp_store = FILE');
    db.function(PROMPT_KEY_FN, { deterministic: true }, (json: unknown) => (typeof json === 'string' ? promptKey(json) : null));
    db.exec('DROP TABLE IF EXISTS temp.export_pairs; DROP TABLE IF EXISTS temp.export_rated;');
    db.exec('CREATE TEMP TABLE export_rated (seq INTEGER PRIMARY KEY, h TEXT, rating INTEGER NOT NULL, fb_id INTEGER NOT NULL)');
    const where = filterWhere(options.filters, null);
    const params = { ...where.params, snapshotSeq: options.snapshotSeq };
    // Driven from feedback (CROSS JOIN pins the order): only rated responses are read, not the whole log.
    const from = `FROM feedback f CROSS JOIN responses r ON r.id = f.response_id
      WHERE f.id = (SELECT max(id) FROM feedback WHERE response_id = f.response_id) AND r.seq <= @snapshotSeq${where.sql}`;
    db.prepare(`INSERT INTO temp.export_rated (seq, h, rating, fb_id) SELECT r.seq, ${PROMPT_KEY_FN}(r.rendered_prompt_json), f.rating, f.id ${from}${statusWhere(options.filters)}`).run(params);
    const excluded = { error: 0, cancelled: 0 };
    if (!options.filters.includeErrors) {
      const rows = db.prepare<Record<string, string | number>, { status: 'error' | 'cancelled'; n: number }>(`SELECT r.status AS status, count(*) AS n ${from} AND r.status != 'ok' GROUP BY r.status`).all(params);
      for (const row of rows) excluded[row.status] = row.n;
    }
    db.exec('CREATE INDEX temp.export_rated_h ON export_rated (h, rating, seq)');
    db.exec('CREATE TEMP TABLE export_pairs (down_seq INTEGER PRIMARY KEY, up_seq INTEGER NOT NULL)');
    db.exec(`
      INSERT INTO temp.export_pairs (down_seq, up_seq)
      WITH d AS (SELECT seq, h, row_number() OVER (PARTITION BY h ORDER BY seq) AS k FROM temp.export_rated WHERE rating = -1 AND h IS NOT NULL),
           u AS (SELECT seq, h, row_number() OVER (PARTITION BY h ORDER BY seq) AS k, count(*) OVER (PARTITION BY h) AS n
                   FROM temp.export_rated WHERE rating = 1 AND h IS NOT NULL)
      SELECT d.seq, u.seq FROM d JOIN u ON u.h = d.h AND u.k = ((d.k - 1) % u.n) + 1`);
    const ratings = { up: 0, down: 0 };
    for (const r of db.prepare<[], { rating: number; n: number }>('SELECT rating, count(*) AS n FROM temp.export_rated GROUP BY rating').all()) ratings[r.rating === 1 ? 'up' : 'down'] += r.n;
    return {
      rated: ratings.up + ratings.down,
      ratings,
      excludedByStatus: excluded,
      plannedRatingPairs: db.prepare<[], number>('SELECT count(*) FROM temp.export_pairs').pluck().get() ?? 0,
    };
  }

  private async *pairRows(limit: number): AsyncGenerator<PreferenceRow> {
    // Prepared per selection (the TEMP tables are new each time). CROSS JOIN pins the loop order:
    // walk export_rated by seq (no sort per page), look responses up.
    const page = this.c.db.prepare<{ after: number; limit: number }, PairRow>(
      `SELECT ${rowColumns('r', 'f', 'us')}, ${rowColumns('u', 'uf', 'uus', 'u_')}
         FROM temp.export_rated e
         CROSS JOIN responses r ON r.seq = e.seq
         JOIN users us ON us.id = r.user_id
         JOIN feedback f ON f.id = e.fb_id
         LEFT JOIN temp.export_pairs p ON p.down_seq = e.seq
         LEFT JOIN responses u ON u.seq = p.up_seq
         LEFT JOIN users uus ON uus.id = u.user_id
         LEFT JOIN temp.export_rated eu ON eu.seq = p.up_seq
         LEFT JOIN feedback uf ON uf.id = eu.fb_id
        WHERE e.seq > @after AND (e.rating = -1 OR e.h IS NULL)
        ORDER BY e.seq
        LIMIT @limit`,
    );
    let after = 0;
    for (;;) {
      const rows = page.all({ after, limit });
      for (const raw of rows) {
        after = raw.seq;
        yield { down: toLogged(raw), up: partnerOf(raw) };
      }
      if (rows.length < limit) return;
    }
  }

  private dropPlan(): void {
    if (this.c.isOpen) this.c.db.exec('DROP TABLE IF EXISTS temp.export_pairs; DROP TABLE IF EXISTS temp.export_rated;');
    this.planOpen = false;
  }

  async userHashKey(): Promise<Uint8Array> {
    if (this.key) return this.key;
    const get = this.c.stmt<[string], Buffer>('SELECT value FROM settings WHERE name = ?').pluck();
    let stored = get.get(USER_HASH_KEY_SETTING);
    if (!stored) {
      // INSERT OR IGNORE: of two processes creating it at once, the first one's key is everyone's.
      stored = await this.c.write(() => {
        this.c.stmt('INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)').run(USER_HASH_KEY_SETTING, crypto.randomBytes(USER_HASH_KEY_BYTES));
        return get.get(USER_HASH_KEY_SETTING);
      });
    }
    if (!stored) throw new ConflictError('the export user-hash key could not be created');
    this.key = new Uint8Array(stored);
    return this.key;
  }

  async userHash(user: ExportUserRef): Promise<string> {
    return pseudonymousUserHash(await this.userHashKey(), user);
  }

  async recordRun(run: NewExportRun): Promise<number> {
    return this.c.write(() => {
      const id = Number(
        this.c.stmt('INSERT INTO export_runs (manifest_path, format, examples, created_at) VALUES (?, ?, ?, ?)').run(run.manifestPath, run.format, run.examples, run.createdAt).lastInsertRowid,
      );
      const user = this.c.stmt('INSERT OR IGNORE INTO export_run_users (user_hash, run_id) VALUES (?, ?)');
      for (const h of run.userHashes) user.run(h, id);
      return id;
    });
  }

  async forgetRun(id: number): Promise<void> {
    await this.c.write(() => this.c.stmt('DELETE FROM export_runs WHERE id = ?').run(id));
  }

  async manifestsContainingUser(user: ExportUserRef): Promise<string[]> {
    const hash = await this.userHash(user);
    return this.c
      .stmt<[string], string>(
        `SELECT r.manifest_path FROM export_run_users x JOIN export_runs r ON r.id = x.run_id
          WHERE x.user_hash = ? GROUP BY r.manifest_path ORDER BY max(r.id) DESC`,
      )
      .pluck()
      .all(hash);
  }
}
