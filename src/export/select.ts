/**
 * Streaming selection of prediction-log rows for export. Rows come in log order (`responses.seq`),
 * a page of SELECT_PAGE_ROWS at a time (keyset pagination: `seq > last` — each page is a short read
 * transaction, so a long export never pins the WAL and the server keeps writing), read with
 * better-sqlite3's `.iterate()` so one row at a time is in memory.
 *
 * Consistency: the export reads the log up to the largest `seq` present when it starts (`snapshotSeq`);
 * rows logged while it runs wait for the next export. Feedback given during the export may or may not
 * be seen by rows not yet read.
 *
 * The current rating of a response is its latest feedback row (highest feedback id). Filters are SQL
 * (so unselected rows never reach JavaScript); the big columns of rows excluded for their status are not
 * even read.
 */
import type { Db } from '../core/db.ts';
import type { LoggedResponse } from './format.ts';
import { promptHashOfJson } from './format.ts';

/** Rows per keyset page. */
export const SELECT_PAGE_ROWS = 512;

export interface ExportFilters {
  /** Inclusive lower bound on `created_at` (ISO-8601 UTC with ms, as stored). */
  since?: string | undefined;
  /** Exclusive upper bound on `created_at`. */
  until?: string | undefined;
  /**
   * Least effective rating: a response with a correction counts +1 (its target is the user's own
   * answer), else its current rating, and an unrated response counts 0. So 1 = rated up or corrected,
   * 0 = everything but rated-down-and-uncorrected, -1 = everything.
   */
  minRating?: -1 | 0 | 1 | undefined;
  /** Exact `responses.collection` (a request made without a collection has none and never matches). */
  collection?: string | undefined;
  /** `model_id`, or `backend:model_id`. */
  model?: string | undefined;
  /** Prompt template name, or its sha256 (full, or a prefix of at least 8 hex digits). */
  prompt?: string | undefined;
  /** Include responses whose status is 'error' or 'cancelled' (default: only 'ok'). */
  includeErrors?: boolean | undefined;
}

/** Smallest prompt-hash prefix accepted by the `prompt` filter, in hex digits. */
export const PROMPT_HASH_MIN_PREFIX = 8;

interface Where {
  sql: string;
  params: Record<string, string | number>;
}

// Whitespace as the JS side's `isBlank` sees it.
const BLANK_CHARS = "' ' || char(9, 10, 13)";
const HAS_CORRECTION = (alias: string) => `(${alias}.correction IS NOT NULL AND length(trim(${alias}.correction, ${BLANK_CHARS})) > 0)`;
/** The latest feedback row of response r. */
const LATEST_FEEDBACK = '(SELECT max(id) FROM feedback WHERE response_id = r.id)';

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
  if (filters.prompt !== undefined) {
    const p = filters.prompt;
    if (new RegExp(`^[0-9a-fA-F]{${PROMPT_HASH_MIN_PREFIX},64}$`).test(p)) {
      clauses.push('(r.prompt_name = @prompt OR substr(r.prompt_sha256, 1, @promptLen) = @promptHash)');
      params.promptLen = p.length;
      params.promptHash = p.toLowerCase();
    } else {
      clauses.push('r.prompt_name = @prompt');
    }
    params.prompt = p;
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

interface RawRow {
  seq: number;
  id: string;
  conversation_id: string;
  turn_index: number;
  created_at: string;
  status: LoggedResponse['status'];
  collection: string | null;
  prompt_name: string;
  prompt_sha256: string;
  rendered_prompt_json: string | null;
  model_backend: string;
  model_id: string;
  query: string | null;
  answer: string | null;
  rating: number | null;
  correction: string | null;
}

function rowColumns(r: string, f: string, prefix = ''): string {
  return [
    `${r}.seq AS ${prefix}seq`,
    `${r}.id AS ${prefix}id`,
    `${r}.conversation_id AS ${prefix}conversation_id`,
    `${r}.turn_index AS ${prefix}turn_index`,
    `${r}.created_at AS ${prefix}created_at`,
    `${r}.status AS ${prefix}status`,
    `${r}.collection AS ${prefix}collection`,
    `${r}.prompt_name AS ${prefix}prompt_name`,
    `${r}.prompt_sha256 AS ${prefix}prompt_sha256`,
    `${r}.rendered_prompt_json AS ${prefix}rendered_prompt_json`,
    `${r}.model_backend AS ${prefix}model_backend`,
    `${r}.model_id AS ${prefix}model_id`,
    `${r}.query AS ${prefix}query`,
    `${r}.answer AS ${prefix}answer`,
    `${f}.rating AS ${prefix}rating`,
    `${f}.correction AS ${prefix}correction`,
  ].join(', ');
}

function toLogged(raw: RawRow): LoggedResponse {
  return {
    seq: raw.seq,
    id: raw.id,
    conversationId: raw.conversation_id,
    turnIndex: raw.turn_index,
    createdAt: raw.created_at,
    status: raw.status,
    collection: raw.collection,
    promptName: raw.prompt_name,
    promptSha256: raw.prompt_sha256,
    renderedPromptJson: raw.rendered_prompt_json ?? '',
    modelBackend: raw.model_backend,
    modelId: raw.model_id,
    query: raw.query ?? '',
    answer: raw.answer,
    rating: raw.rating === 1 || raw.rating === -1 ? raw.rating : null,
    correction: raw.correction,
  };
}

/** Log bounds at the start of an export: the snapshot every later page stays within. */
export function logSnapshot(db: Db): { firstSeq: number | null; snapshotSeq: number } {
  const r = db.prepare('SELECT min(seq) AS lo, max(seq) AS hi FROM responses').get() as { lo: number | null; hi: number | null };
  return { firstSeq: r.lo, snapshotSeq: r.hi ?? 0 };
}

export interface SelectionStats {
  /** Rows matching the filters (including status-excluded ones). */
  matched: number;
  /** Rows matching the filters but left out for their status (error / cancelled). */
  excludedByStatus: { error: number; cancelled: number };
}

export interface SelectOptions {
  filters: ExportFilters;
  /** Read rows with seq ≤ this (from `logSnapshot`). */
  snapshotSeq: number;
  /** Rows per page (default SELECT_PAGE_ROWS). */
  pageRows?: number;
}

/**
 * Streams the responses matching `filters` in seq order with their current feedback, counting the
 * ones excluded for their status into `stats` (which the caller reads after the stream ends).
 */
export function* selectResponses(db: Db, options: SelectOptions, stats: SelectionStats): Generator<LoggedResponse> {
  const where = filterWhere(options.filters, 'f');
  const keep = options.filters.includeErrors ? '1' : "r.status = 'ok'";
  // Status is tested in JavaScript (to count exclusions in the same scan); the CASEs keep SQLite from
  // reading the big text columns of the rows it is about to drop.
  const cols = rowColumns('r', 'f')
    .replace('r.rendered_prompt_json AS', `CASE WHEN ${keep} THEN r.rendered_prompt_json END AS`)
    .replace('r.answer AS', `CASE WHEN ${keep} THEN r.answer END AS`)
    .replace('r.query AS', `CASE WHEN ${keep} THEN r.query END AS`);
  const page = db.prepare(
    `SELECT ${cols}
       FROM responses r
       LEFT JOIN feedback f ON f.id = ${LATEST_FEEDBACK}
      WHERE r.seq > @after AND r.seq <= @snapshotSeq${where.sql}
      ORDER BY r.seq
      LIMIT @limit`,
  );
  const limit = options.pageRows ?? SELECT_PAGE_ROWS;
  let after = 0;
  for (;;) {
    let n = 0;
    for (const raw of page.iterate({ ...where.params, after, snapshotSeq: options.snapshotSeq, limit }) as IterableIterator<RawRow>) {
      n++;
      after = raw.seq;
      stats.matched++;
      if (!options.filters.includeErrors && raw.status !== 'ok') {
        stats.excludedByStatus[raw.status]++;
        continue;
      }
      yield toLogged(raw);
    }
    if (n < limit) return;
  }
}

/** SQL function name under which `promptHashOfJson` is registered on the export's connection. */
const PROMPT_HASH_FN = 'mneme_export_prompt_hash';

export interface PreferencePlan {
  /** Rated responses considered (after filters). */
  rated: number;
  /** Rated responses left out for their status. */
  excludedByStatus: { error: number; cancelled: number };
  /** Cross-response pairs planned (a -1 answer matched with a +1 answer to the same prompt). */
  plannedRatingPairs: number;
}

/**
 * Prepares preference selection in TEMP tables (on disk, `temp_store = FILE`, so memory stays flat):
 * `export_rated` (every rated response that passes the filters, with the hash of its rendered prompt)
 * and `export_pairs` (each rated-down response matched with a rated-up response to the same prompt:
 * the k-th -1 answer of a prompt, in log order, pairs with the ((k-1) mod U)+1-th of its U +1 answers,
 * so every rated-down answer is used once and the rated-up ones are shared evenly).
 */
export function planPreference(db: Db, options: SelectOptions): PreferencePlan {
  db.pragma('temp_store = FILE');
  db.function(PROMPT_HASH_FN, { deterministic: true }, (json: unknown) => (typeof json === 'string' ? promptHashOfJson(json) : null));
  db.exec('DROP TABLE IF EXISTS temp.export_pairs; DROP TABLE IF EXISTS temp.export_rated;');
  db.exec('CREATE TEMP TABLE export_rated (seq INTEGER PRIMARY KEY, h TEXT, rating INTEGER NOT NULL, fb_id INTEGER NOT NULL)');
  const where = filterWhere(options.filters, null);
  const params = { ...where.params, snapshotSeq: options.snapshotSeq };
  // Driven from feedback (CROSS JOIN pins the order): only rated responses are read, not the whole log.
  const from = `FROM feedback f CROSS JOIN responses r ON r.id = f.response_id
    WHERE f.id = (SELECT max(id) FROM feedback WHERE response_id = f.response_id) AND r.seq <= @snapshotSeq${where.sql}`;
  db.prepare(`INSERT INTO temp.export_rated (seq, h, rating, fb_id) SELECT r.seq, ${PROMPT_HASH_FN}(r.rendered_prompt_json), f.rating, f.id ${from}${statusWhere(options.filters)}`).run(params);
  const excluded = { error: 0, cancelled: 0 };
  if (!options.filters.includeErrors) {
    for (const row of db.prepare(`SELECT r.status AS status, count(*) AS n ${from} AND r.status != 'ok' GROUP BY r.status`).all(params) as Array<{ status: 'error' | 'cancelled'; n: number }>) {
      excluded[row.status] = row.n;
    }
  }
  db.exec('CREATE INDEX temp.export_rated_h ON export_rated (h, rating, seq)');
  db.exec(`CREATE TEMP TABLE export_pairs (down_seq INTEGER PRIMARY KEY, up_seq INTEGER NOT NULL)`);
  db.exec(`
    INSERT INTO temp.export_pairs (down_seq, up_seq)
    WITH d AS (SELECT seq, h, row_number() OVER (PARTITION BY h ORDER BY seq) AS k FROM temp.export_rated WHERE rating = -1 AND h IS NOT NULL),
         u AS (SELECT seq, h, row_number() OVER (PARTITION BY h ORDER BY seq) AS k, count(*) OVER (PARTITION BY h) AS n
                 FROM temp.export_rated WHERE rating = 1 AND h IS NOT NULL)
    SELECT d.seq, u.seq FROM d JOIN u ON u.h = d.h AND u.k = ((d.k - 1) % u.n) + 1`);
  return {
    rated: db.prepare('SELECT count(*) FROM temp.export_rated').pluck().get() as number,
    excludedByStatus: excluded,
    plannedRatingPairs: db.prepare('SELECT count(*) FROM temp.export_pairs').pluck().get() as number,
  };
}

/** A rated-down response and, when one exists, the rated-up response it is paired with. */
export interface PreferenceRow {
  down: LoggedResponse;
  up: LoggedResponse | null;
}

/**
 * Streams every rated-down response of the plan (seq order) with its partner. Rated-up responses whose
 * prompt is malformed are streamed too, as `{down: <that row>, up: null}` with `down.rating === 1`, so
 * the caller can report them; they yield no pair.
 */
export function* selectPreferenceRows(db: Db, options: { pageRows?: number } = {}): Generator<PreferenceRow> {
  // CROSS JOIN pins the loop order: walk export_rated by seq (no sort per page), look responses up.
  const page = db.prepare(
    `SELECT ${rowColumns('r', 'f')}, ${rowColumns('u', 'uf', 'u_')}
       FROM temp.export_rated e
       CROSS JOIN responses r ON r.seq = e.seq
       JOIN feedback f ON f.id = e.fb_id
       LEFT JOIN temp.export_pairs p ON p.down_seq = e.seq
       LEFT JOIN responses u ON u.seq = p.up_seq
       LEFT JOIN temp.export_rated eu ON eu.seq = p.up_seq
       LEFT JOIN feedback uf ON uf.id = eu.fb_id
      WHERE e.seq > @after AND (e.rating = -1 OR e.h IS NULL)
      ORDER BY e.seq
      LIMIT @limit`,
  );
  const limit = options.pageRows ?? SELECT_PAGE_ROWS;
  let after = 0;
  for (;;) {
    let n = 0;
    for (const raw of page.iterate({ after, limit }) as IterableIterator<Record<string, unknown>>) {
      n++;
      after = raw.seq as number;
      const down = toLogged(raw as unknown as RawRow);
      let up: LoggedResponse | null = null;
      if (raw.u_seq !== null) {
        const u: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(raw)) if (k.startsWith('u_')) u[k.slice(2)] = v;
        up = toLogged(u as unknown as RawRow);
      }
      yield { down, up };
    }
    if (n < limit) return;
  }
}

/** Drops the preference TEMP tables (also dropped when the connection closes). */
export function dropPreferencePlan(db: Db): void {
  db.exec('DROP TABLE IF EXISTS temp.export_pairs; DROP TABLE IF EXISTS temp.export_rated;');
}
