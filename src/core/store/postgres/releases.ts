/**
 * PostgreSQL implementation of {@link ReleaseStore} (schema: migrations/postgres/060_releases.sql).
 * Same semantics as sqlite/releases.ts; every write takes the release lock (`mneme_lock_releases()`)
 * first, so replicas apply changes one at a time and `ensureLive` creates the initial release once.
 * `parts_json` is `json` (kept verbatim): records read back identical to the SQLite engine's.
 */
import pg from 'pg';
import { ConflictError } from '../../errors.ts';
import type {
  ArmSampleRecord,
  NewRelease,
  RegressionSampleRecord,
  ReleaseAction,
  ReleaseAudit,
  ReleaseEventRecord,
  ReleaseParts,
  ReleaseRecord,
  ReleaseState,
  ReleaseStateRow,
  ReleaseStore,
} from '../releases.ts';
import { planReleaseAction } from '../releases.ts';
import type { PgQueries, PgTx, PostgresConnection } from './connection.ts';
import { pgText } from './conversations.ts';

/** SQLSTATE of a unique-constraint violation. */
const PG_UNIQUE_VIOLATION = '23505';

const RELEASE_COLUMNS = 'name, version, parts_json::text AS parts_json, parts_sha256, created_by, created_at, state, share, experiment, state_changed_at';

interface ReleaseRow {
  name: string;
  version: number;
  parts_json: string;
  parts_sha256: string;
  created_by: string;
  created_at: string;
  state: ReleaseState;
  share: number | null;
  experiment: string | null;
  state_changed_at: string;
}

interface EventRow {
  id: number;
  at: string;
  actor: string;
  action: ReleaseEventRecord['action'];
  from_release: string | null;
  to_release: string | null;
  reason: string | null;
  forced: boolean;
  detail_json: string;
}

function toRelease(r: ReleaseRow): ReleaseRecord {
  return {
    name: r.name,
    version: r.version,
    parts: JSON.parse(r.parts_json) as ReleaseParts,
    partsSha256: r.parts_sha256,
    createdBy: r.created_by,
    createdAt: r.created_at,
    state: r.state,
    share: r.share,
    experiment: r.experiment,
    stateChangedAt: r.state_changed_at,
  };
}

function toEvent(r: EventRow): ReleaseEventRecord {
  let detail: Record<string, unknown> = {};
  try {
    detail = JSON.parse(r.detail_json) as Record<string, unknown>;
  } catch {
    // keep {}
  }
  return { id: r.id, at: r.at, actor: r.actor, action: r.action, from: r.from_release, to: r.to_release, reason: r.reason, forced: r.forced, detail };
}

/** SQL: the number at `path`, or NULL when it is not a number. */
function jsonNumber(path: string): string {
  return `CASE WHEN json_typeof(${path}) = 'number' THEN (${path})::text::float8 END`;
}

const SQL_ARM_SAMPLES = `SELECT r.release, r.arm, r.created_at, r.status,
    ${jsonNumber(`r.timings_json->'total_ms'`)} AS total_ms,
    ${jsonNumber(`r.timings_json->'first_token_ms'`)} AS first_token_ms,
    r.completion_tokens,
    CASE WHEN json_typeof(r.citations_json) = 'array' THEN json_array_length(r.citations_json) ELSE 0 END AS citations,
    CASE WHEN json_typeof(r.retrieved_json) = 'array' THEN json_array_length(r.retrieved_json) ELSE 0 END AS retrieved,
    ${jsonNumber(`CASE WHEN json_typeof(r.retrieved_json) = 'array' THEN r.retrieved_json->0->'score' END`)} AS top_score,
    (SELECT count(*) FROM json_array_elements(CASE WHEN json_typeof(r.retrieved_json) = 'array' THEN r.retrieved_json ELSE '[]'::json END) j
      WHERE json_typeof(j->'bm25_rank') = 'number') AS bm25_hits,
    (SELECT f.rating FROM feedback f WHERE f.response_id = r.id AND f.user_id = r.user_id ORDER BY f.id DESC LIMIT 1) AS rating,
    EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id AND f.correction IS NOT NULL AND f.correction <> '') AS corrected
  FROM responses r
  WHERE r.release = ANY($1::text[]) AND r.created_at >= $2
  ORDER BY r.created_at DESC
  LIMIT $3`;

const SQL_REGRESSION = `SELECT * FROM (
    SELECT r.id, r.query, r.collection, r.release, r.citations_json::text AS citations_json, r.retrieved_json::text AS retrieved_json, r.created_at,
      (SELECT f.rating FROM feedback f WHERE f.response_id = r.id AND f.user_id = r.user_id ORDER BY f.id DESC LIMIT 1) AS rating,
      (SELECT f.correction FROM feedback f WHERE f.response_id = r.id AND f.correction IS NOT NULL AND f.correction <> '' ORDER BY f.id DESC LIMIT 1) AS correction
    FROM responses r
    WHERE r.status = 'ok' AND EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id)) s
  WHERE rating IS NOT NULL
  ORDER BY created_at DESC
  LIMIT $1`;

function parseArray<T>(text: string): T[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    return [];
  }
}

export class PostgresReleaseStore implements ReleaseStore {
  constructor(protected readonly c: PostgresConnection) {}

  async create(r: NewRelease): Promise<ReleaseRecord> {
    return this.c.tx(async (q) => {
      await q.one('SELECT mneme_lock_releases()');
      const rec = await this.insert(q, r);
      await this.event(q, { actor: r.createdBy, reason: null, forced: false, at: r.createdAt }, 'create', null, r.name);
      return rec;
    });
  }

  async ensureLive(r: NewRelease): Promise<{ live: ReleaseRecord; created: boolean }> {
    return this.c.tx(async (q) => {
      await q.one('SELECT mneme_lock_releases()');
      const live = await q.one<ReleaseRow>(`SELECT ${RELEASE_COLUMNS} FROM releases WHERE state = 'live'`);
      if (live) return { live: toRelease(live), created: false };
      const existing = await this.getOn(q, r.name);
      if (!existing) await this.insert(q, r);
      await this.setState(q, { name: r.name, state: 'live', share: null, experiment: null }, r.createdAt);
      await this.event(q, { actor: r.createdBy, reason: 'first start without a release', forced: false, at: r.createdAt }, 'initial', null, r.name);
      return { live: (await this.getOn(q, r.name))!, created: !existing };
    });
  }

  async get(name: string): Promise<ReleaseRecord | null> {
    return this.getOn(this.c, name);
  }

  async list(): Promise<ReleaseRecord[]> {
    return (await this.c.rows<ReleaseRow>(`SELECT ${RELEASE_COLUMNS} FROM releases ORDER BY version`)).map(toRelease);
  }

  async apply(action: ReleaseAction, audit: ReleaseAudit): Promise<ReleaseEventRecord> {
    return this.c.tx(async (q) => {
      await q.one('SELECT mneme_lock_releases()');
      const rows = await q.rows<ReleaseStateRow>('SELECT name, state, share, experiment FROM releases');
      const plan = planReleaseAction(rows, action);
      // Vacate the unique per-state slots first, then fill them.
      for (const u of plan.updates) await q.run("UPDATE releases SET state = 'draft' WHERE name = $1", [u.name]);
      for (const u of plan.updates) await this.setState(q, u, audit.at);
      return this.event(q, audit, plan.action, plan.from, plan.to);
    });
  }

  async events(limit: number): Promise<ReleaseEventRecord[]> {
    const rows = await this.c.rows<EventRow>(
      'SELECT id, at, actor, action, from_release, to_release, reason, forced, detail_json::text AS detail_json FROM release_events ORDER BY id DESC LIMIT $1',
      [limit],
    );
    return rows.map(toEvent);
  }

  async changeMark(): Promise<number> {
    return (await this.c.one<{ m: number }>('SELECT coalesce(max(id), 0)::bigint AS m FROM release_events'))?.m ?? 0;
  }

  async armSamples(releases: readonly string[], from: string, maxRows: number): Promise<ArmSampleRecord[]> {
    if (releases.length === 0) return [];
    const rows = await this.c.rows<{
      release: string; arm: string | null; created_at: string; status: ArmSampleRecord['status']; total_ms: number | null; first_token_ms: number | null;
      completion_tokens: number | null; citations: number; retrieved: number; top_score: number | null; bm25_hits: number; rating: number | null; corrected: boolean;
    }>(SQL_ARM_SAMPLES, [releases.map((r) => pgText(r)), from, maxRows]);
    return rows.map((r) => ({
      release: r.release,
      arm: r.arm,
      createdAt: r.created_at,
      status: r.status,
      totalMs: r.total_ms,
      firstTokenMs: r.first_token_ms,
      completionTokens: r.completion_tokens,
      citations: r.citations,
      retrieved: r.retrieved,
      topScore: r.top_score,
      bm25Hits: r.bm25_hits,
      rating: r.rating === 1 || r.rating === -1 ? r.rating : null,
      corrected: r.corrected,
    }));
  }

  async regressionSamples(maxRows: number): Promise<RegressionSampleRecord[]> {
    const rows = await this.c.rows<{ id: string; query: string; collection: string | null; release: string | null; rating: number; correction: string | null; citations_json: string; retrieved_json: string; created_at: string }>(
      SQL_REGRESSION,
      [maxRows],
    );
    return rows.map((r) => ({
      responseId: r.id,
      query: r.query,
      collection: r.collection,
      release: r.release,
      rating: r.rating === 1 ? 1 : -1,
      correction: r.correction,
      citedChunks: parseArray<{ chunk_id: number }>(r.citations_json).map((x) => x.chunk_id),
      contextChunks: parseArray<{ chunk_id: number; in_context: boolean }>(r.retrieved_json).filter((x) => x.in_context).map((x) => x.chunk_id),
      createdAt: r.created_at,
    }));
  }

  private async getOn(q: PgQueries, name: string): Promise<ReleaseRecord | null> {
    const row = await q.one<ReleaseRow>(`SELECT ${RELEASE_COLUMNS} FROM releases WHERE name = $1`, [pgText(name)]);
    return row ? toRelease(row) : null;
  }

  /** Inserts a draft release. @throws ConflictError for a taken name. */
  private async insert(q: PgTx, r: NewRelease): Promise<ReleaseRecord> {
    const version = (await q.one<{ v: number }>('SELECT (coalesce(max(version), 0) + 1)::bigint AS v FROM releases'))?.v ?? 1;
    try {
      await q.run(
        `INSERT INTO releases (name, version, parts_json, parts_sha256, created_by, created_at, state, share, experiment, state_changed_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'draft', NULL, NULL, $6)`,
        [pgText(r.name), version, JSON.stringify(r.parts), r.partsSha256, pgText(r.createdBy), r.createdAt],
      );
    } catch (cause) {
      if (cause instanceof pg.DatabaseError && cause.code === PG_UNIQUE_VIOLATION) throw new ConflictError(`a release named ${JSON.stringify(r.name)} already exists`, { cause });
      throw cause;
    }
    return (await this.getOn(q, r.name))!;
  }

  private async setState(q: PgTx, u: ReleaseStateRow, at: string): Promise<void> {
    await q.run('UPDATE releases SET state = $1, share = $2, experiment = $3, state_changed_at = $4 WHERE name = $5', [u.state, u.share, u.experiment, at, u.name]);
  }

  private async event(q: PgTx, audit: ReleaseAudit, action: ReleaseEventRecord['action'], from: string | null, to: string | null): Promise<ReleaseEventRecord> {
    const row = await q.one<{ id: number; at: string }>(
      'INSERT INTO release_events (at, actor, action, from_release, to_release, reason, forced, detail_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, at',
      [audit.at, pgText(audit.actor), action, from, to, pgText(audit.reason), audit.forced, JSON.stringify(audit.detail ?? {})],
    );
    return { id: row!.id, at: row!.at, actor: audit.actor, action, from, to, reason: audit.reason, forced: audit.forced, detail: audit.detail ?? {} };
  }
}
