/** SQLite implementation of {@link ReleaseStore} (schema: migrations/sqlite/060_releases.sql). */
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
import type { SqliteConnection } from './connection.ts';
import { sqliteCode } from './connection.ts';
import { parseJsonOr } from './conversations.ts';

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
  forced: number;
  detail_json: string;
}

const RELEASE_COLUMNS = 'name, version, parts_json, parts_sha256, created_by, created_at, state, share, experiment, state_changed_at';

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
  return {
    id: r.id,
    at: r.at,
    actor: r.actor,
    action: r.action,
    from: r.from_release,
    to: r.to_release,
    reason: r.reason,
    forced: r.forced === 1,
    detail: parseJsonOr<Record<string, unknown>>(r.detail_json, {}),
  };
}

interface ArmRow {
  release: string;
  arm: string | null;
  created_at: string;
  status: ArmSampleRecord['status'];
  total_ms: number | null;
  first_token_ms: number | null;
  completion_tokens: number | null;
  citations: number;
  retrieved: number;
  top_score: number | null;
  bm25_hits: number;
  rating: number | null;
  corrected: number;
}

export class SqliteReleaseStore implements ReleaseStore {
  constructor(protected readonly c: SqliteConnection) {}

  async create(r: NewRelease): Promise<ReleaseRecord> {
    return this.c.write(() => {
      const rec = this.insert(r, 'draft');
      this.event({ actor: r.createdBy, reason: null, forced: false, at: r.createdAt }, 'create', null, r.name);
      return rec;
    });
  }

  async ensureLive(r: NewRelease): Promise<{ live: ReleaseRecord; created: boolean }> {
    return this.c.write(() => {
      const live = this.byState('live');
      if (live) return { live, created: false };
      const existing = this.getSync(r.name);
      if (!existing) this.insert(r, 'draft');
      this.setState({ name: r.name, state: 'live', share: null, experiment: null }, r.createdAt);
      this.event({ actor: r.createdBy, reason: 'first start without a release', forced: false, at: r.createdAt }, 'initial', null, r.name);
      return { live: this.getSync(r.name)!, created: !existing };
    });
  }

  async get(name: string): Promise<ReleaseRecord | null> {
    return this.getSync(name);
  }

  async list(): Promise<ReleaseRecord[]> {
    return this.c.stmt<[], ReleaseRow>(`SELECT ${RELEASE_COLUMNS} FROM releases ORDER BY version`).all().map(toRelease);
  }

  async apply(action: ReleaseAction, audit: ReleaseAudit): Promise<ReleaseEventRecord> {
    return this.c.write(() => {
      const rows = this.c.stmt<[], ReleaseStateRow>('SELECT name, state, share, experiment FROM releases').all();
      const plan = planReleaseAction(rows, action);
      // Vacate the unique per-state slots first, then fill them.
      for (const u of plan.updates) this.c.stmt<[string]>("UPDATE releases SET state = 'draft' WHERE name = ?").run(u.name);
      for (const u of plan.updates) this.setState(u, audit.at);
      return this.event(audit, plan.action, plan.from, plan.to);
    });
  }

  async events(limit: number): Promise<ReleaseEventRecord[]> {
    return this.c.stmt<[number], EventRow>('SELECT * FROM release_events ORDER BY id DESC LIMIT ?').all(limit).map(toEvent);
  }

  async changeMark(): Promise<number> {
    return this.c.stmt<[], number>('SELECT coalesce(max(id), 0) FROM release_events').pluck().get() ?? 0;
  }

  async armSamples(releases: readonly string[], from: string, maxRows: number): Promise<ArmSampleRecord[]> {
    if (releases.length === 0) return [];
    const rows = this.c
      .stmt<[string, string, number], ArmRow>(
        `SELECT r.release, r.arm, r.created_at, r.status,
                json_extract(r.timings_json, '$.total_ms') AS total_ms,
                json_extract(r.timings_json, '$.first_token_ms') AS first_token_ms,
                r.completion_tokens,
                json_array_length(r.citations_json) AS citations,
                json_array_length(r.retrieved_json) AS retrieved,
                json_extract(r.retrieved_json, '$[0].score') AS top_score,
                (SELECT count(*) FROM json_each(r.retrieved_json) j WHERE json_extract(j.value, '$.bm25_rank') IS NOT NULL) AS bm25_hits,
                (SELECT f.rating FROM feedback f WHERE f.response_id = r.id AND f.user_id = r.user_id ORDER BY f.id DESC LIMIT 1) AS rating,
                EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id AND f.correction IS NOT NULL AND f.correction <> '') AS corrected
           FROM responses r
          WHERE r.release IN (SELECT value FROM json_each(?)) AND r.created_at >= ?
            AND json_valid(r.timings_json) AND json_valid(r.retrieved_json) AND json_valid(r.citations_json)
          ORDER BY r.created_at DESC
          LIMIT ?`,
      )
      .all(JSON.stringify(releases), from, maxRows);
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
      corrected: r.corrected === 1,
    }));
  }

  async regressionSamples(maxRows: number): Promise<RegressionSampleRecord[]> {
    const rows = this.c
      .stmt<[number], { id: string; query: string; collection: string | null; release: string | null; rating: number; correction: string | null; citations_json: string; retrieved_json: string; created_at: string }>(
        `SELECT * FROM (
           SELECT r.id, r.query, r.collection, r.release, r.citations_json, r.retrieved_json, r.created_at,
                  (SELECT f.rating FROM feedback f WHERE f.response_id = r.id AND f.user_id = r.user_id ORDER BY f.id DESC LIMIT 1) AS rating,
                  (SELECT f.correction FROM feedback f WHERE f.response_id = r.id AND f.correction IS NOT NULL AND f.correction <> '' ORDER BY f.id DESC LIMIT 1) AS correction
             FROM responses r
            WHERE r.status = 'ok' AND EXISTS (SELECT 1 FROM feedback f WHERE f.response_id = r.id))
          WHERE rating IS NOT NULL
          ORDER BY created_at DESC
          LIMIT ?`,
      )
      .all(maxRows);
    return rows.map((r) => ({
      responseId: r.id,
      query: r.query,
      collection: r.collection,
      release: r.release,
      rating: r.rating === 1 ? 1 : -1,
      correction: r.correction,
      citedChunks: parseJsonOr<Array<{ chunk_id: number }>>(r.citations_json, []).map((x) => x.chunk_id),
      contextChunks: parseJsonOr<Array<{ chunk_id: number; in_context: boolean }>>(r.retrieved_json, []).filter((x) => x.in_context).map((x) => x.chunk_id),
      createdAt: r.created_at,
    }));
  }

  private getSync(name: string): ReleaseRecord | null {
    const row = this.c.stmt<[string], ReleaseRow>(`SELECT ${RELEASE_COLUMNS} FROM releases WHERE name = ?`).get(name);
    return row ? toRelease(row) : null;
  }

  private byState(state: ReleaseState): ReleaseRecord | null {
    const row = this.c.stmt<[string], ReleaseRow>(`SELECT ${RELEASE_COLUMNS} FROM releases WHERE state = ? ORDER BY version DESC LIMIT 1`).get(state);
    return row ? toRelease(row) : null;
  }

  /** Inserts a release (inside a write transaction). @throws ConflictError for a taken name. */
  private insert(r: NewRelease, state: ReleaseState): ReleaseRecord {
    const version = (this.c.stmt<[], number>('SELECT coalesce(max(version), 0) + 1 FROM releases').pluck().get() ?? 1);
    try {
      this.c
        .stmt<unknown[]>(`INSERT INTO releases (${RELEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)`)
        .run(r.name, version, JSON.stringify(r.parts), r.partsSha256, r.createdBy, r.createdAt, state, r.createdAt);
    } catch (cause) {
      if (sqliteCode(cause) === 'SQLITE_CONSTRAINT_UNIQUE') throw new ConflictError(`a release named ${JSON.stringify(r.name)} already exists`, { cause });
      throw cause;
    }
    return this.getSync(r.name)!;
  }

  private setState(u: ReleaseStateRow, at: string): void {
    this.c
      .stmt<[string, number | null, string | null, string, string]>('UPDATE releases SET state = ?, share = ?, experiment = ?, state_changed_at = ? WHERE name = ?')
      .run(u.state, u.share, u.experiment, at, u.name);
  }

  private event(audit: ReleaseAudit, action: ReleaseEventRecord['action'], from: string | null, to: string | null): ReleaseEventRecord {
    const res = this.c
      .stmt<unknown[]>('INSERT INTO release_events (at, actor, action, from_release, to_release, reason, forced, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(audit.at, audit.actor, action, from, to, audit.reason, audit.forced ? 1 : 0, JSON.stringify(audit.detail ?? {}));
    return { id: Number(res.lastInsertRowid), at: audit.at, actor: audit.actor, action, from, to, reason: audit.reason, forced: audit.forced, detail: audit.detail ?? {} };
  }
}
