/**
 * Releases (issue 15): immutable, named, versioned bundles of everything that shapes an answer, the
 * traffic states that say which one answers (`live`, optionally one `candidate` with a share), and
 * an audit row for every change. Engine-neutral: record types, the Promise-returning interface and
 * the pure state machine both engines apply inside their transaction (`planReleaseAction`).
 *
 * States: `live` (exactly one once the server started), `candidate` (at most one, with a traffic
 * share in percent and an experiment id that keys the sticky assignment), `previous` (the release
 * that was live before the live one: what `rollback` restores), `draft` (created, never or no
 * longer serving) and `retired` (was live, then replaced twice or rolled back).
 */
import { ConflictError, NotFoundError } from '../errors.ts';

export type ReleaseState = 'live' | 'candidate' | 'previous' | 'draft' | 'retired';
export const RELEASE_STATES: readonly ReleaseState[] = ['live', 'candidate', 'previous', 'draft', 'retired'];

/** Retrieval modes a release may ask for (what HybridRetriever can run). */
export type ReleaseRetrievalMode = 'hybrid' | 'bm25' | 'dense';

/** Everything that shapes an answer, as stored (snake_case: it is also the JSON of `releases show`). */
export interface ReleaseParts {
  prompt: {
    name: string;
    version: string;
    /** sha256 (hex) of the template file bytes (what the prediction log records). */
    sha256: string;
    /** The template file text itself, so the release stays reproducible when the file changes. */
    text: string;
  };
  llm: {
    /** MNEME_LLM syntax: extractive | gguf:PATH | transformers:ID_OR_DIR | openai:BASE_URL. */
    spec: string;
    /** Server model name (openai: only), else null. */
    model: string | null;
    max_tokens: number;
    temperature: number;
    top_p: number;
    seed: number;
    context_tokens: number;
  };
  embedding: {
    /** Embedding model id of the index the release was built against; null = BM25 only. */
    model: string | null;
    /** Active index generation at creation; null = none. */
    generation: number | null;
  };
  retrieval: {
    mode: ReleaseRetrievalMode;
    /** Passages per question when the request does not say (1..50). */
    top_k: number;
    /** RRF constant k of score = Σ w/(k + rank). */
    rrf_k: number;
    /** RRF weight of the BM25 list. */
    bm25_weight: number;
    /** RRF weight of the dense list. */
    dense_weight: number;
  };
  personalization: { weight: number };
}

export interface ReleaseRecord {
  name: string;
  /** 1, 2, 3... in creation order. */
  version: number;
  parts: ReleaseParts;
  /** sha256 (hex) of the canonical parts JSON: two releases with the same parts have the same hash. */
  partsSha256: string;
  createdBy: string;
  createdAt: string;
  state: ReleaseState;
  /** Candidate only: percent of users (0..100) routed to it. */
  share: number | null;
  /** Candidate only: the experiment id that keys sticky assignment (new per canary start). */
  experiment: string | null;
  /** When the state last changed (ISO-8601 UTC). */
  stateChangedAt: string;
}

export interface NewRelease {
  name: string;
  parts: ReleaseParts;
  partsSha256: string;
  createdBy: string;
  createdAt: string;
}

export type ReleaseActionKind = 'create' | 'initial' | 'canary' | 'promote' | 'rollback' | 'stop';

/** A change of traffic states. */
export type ReleaseAction =
  | { kind: 'canary'; name: string; share: number; experiment: string }
  | { kind: 'promote'; name?: string | undefined }
  | { kind: 'rollback' }
  /** Ends the experiment: the candidate goes back to draft. */
  | { kind: 'stop' };

export interface ReleaseAudit {
  actor: string;
  reason: string | null;
  /** True when a gate was overridden (`promote --force`). */
  forced: boolean;
  at: string;
  /** Whatever else the change should record (the gate's scores). */
  detail?: Record<string, unknown> | undefined;
}

export interface ReleaseEventRecord {
  id: number;
  at: string;
  actor: string;
  action: ReleaseActionKind;
  from: string | null;
  to: string | null;
  reason: string | null;
  forced: boolean;
  detail: Record<string, unknown>;
}

/** The state row the planner needs of each release. */
export interface ReleaseStateRow {
  name: string;
  state: ReleaseState;
  share: number | null;
  experiment: string | null;
}

export interface ReleasePlan {
  updates: ReleaseStateRow[];
  action: ReleaseActionKind;
  from: string | null;
  to: string | null;
}

/**
 * The state changes of `action` given every release's current state. Pure; both engines call it
 * inside the write transaction that applies it.
 * @throws NotFoundError for an unknown release; ConflictError when the action does not apply
 * (promote without a candidate, rollback without a previous release, canary of the live release).
 */
export function planReleaseAction(rows: readonly ReleaseStateRow[], action: ReleaseAction): ReleasePlan {
  const byState = (s: ReleaseState) => rows.find((r) => r.state === s) ?? null;
  const find = (name: string) => {
    const r = rows.find((x) => x.name === name);
    if (!r) throw new NotFoundError(`no release named ${JSON.stringify(name)}`);
    return r;
  };
  const live = byState('live');
  const candidate = byState('candidate');
  const previous = byState('previous');
  const set = (r: ReleaseStateRow, state: ReleaseState, share: number | null = null, experiment: string | null = null): ReleaseStateRow => ({ name: r.name, state, share, experiment });
  switch (action.kind) {
    case 'canary': {
      const target = find(action.name);
      if (target.state === 'live') throw new ConflictError(`release ${target.name} is already live`);
      const updates: ReleaseStateRow[] = [];
      if (candidate && candidate.name !== target.name) updates.push(set(candidate, 'draft'));
      // A share change of the running candidate keeps its experiment (users already in stay in).
      const experiment = target.state === 'candidate' && target.experiment ? target.experiment : action.experiment;
      updates.push(set(target, 'candidate', action.share, experiment));
      return { updates, action: 'canary', from: candidate?.name ?? null, to: target.name };
    }
    case 'promote': {
      const name = action.name ?? candidate?.name;
      if (!name) throw new ConflictError('there is no candidate to promote (start one with `releases canary NAME --share PCT`, or name the release)');
      const target = find(name);
      if (target.state === 'live') throw new ConflictError(`release ${target.name} is already live`);
      const updates: ReleaseStateRow[] = [];
      if (previous && previous.name !== target.name) updates.push(set(previous, 'retired'));
      if (live) updates.push(set(live, 'previous'));
      updates.push(set(target, 'live'));
      return { updates, action: 'promote', from: live?.name ?? null, to: target.name };
    }
    case 'rollback': {
      if (!previous) throw new ConflictError('there is no previous live release to roll back to');
      const updates: ReleaseStateRow[] = [];
      if (live) updates.push(set(live, 'retired'));
      updates.push(set(previous, 'live'));
      return { updates, action: 'rollback', from: live?.name ?? null, to: previous.name };
    }
    case 'stop': {
      if (!candidate) throw new ConflictError('there is no candidate to stop');
      return { updates: [set(candidate, 'draft')], action: 'stop', from: candidate.name, to: live?.name ?? null };
    }
  }
}

/** One prediction-log row as the per-arm metrics need it. */
export interface ArmSampleRecord {
  release: string;
  arm: string | null;
  createdAt: string;
  status: 'ok' | 'error' | 'cancelled';
  totalMs: number | null;
  firstTokenMs: number | null;
  completionTokens: number | null;
  citations: number;
  retrieved: number;
  /** Score of the best retrieved chunk; null when nothing was retrieved. */
  topScore: number | null;
  /** Retrieved chunks that BM25 found (0: no term of the question is in the corpus vocabulary). */
  bm25Hits: number;
  /** The current rating (latest feedback row of the asking user): 1, -1 or null (unrated). */
  rating: 1 | -1 | null;
  /** True when any feedback row of this answer carries a correction. */
  corrected: boolean;
}

/** A logged answer usable for the regression set (rated, with its cited chunks). */
export interface RegressionSampleRecord {
  responseId: string;
  query: string;
  collection: string | null;
  release: string | null;
  /** Current rating. */
  rating: 1 | -1;
  /** The latest correction text, if any. */
  correction: string | null;
  /** Chunk ids cited by the answer. */
  citedChunks: number[];
  /** Chunk ids of the passages in the prompt, in prompt order (passage [n] is element n-1). */
  contextChunks: number[];
  createdAt: string;
}

export interface ReleaseStore {
  /**
   * Stores a new release in state `draft` (version = the next number) with a `create` audit row.
   * @throws ConflictError when the name is taken.
   */
  create(r: NewRelease): Promise<ReleaseRecord>;
  /**
   * When no release is live: creates `r` (unless a release of that name exists) and makes it live,
   * with an `initial` audit row, in one transaction (replicas starting together create it once).
   * @returns the live release (the existing one when there already was one) and whether it was created now.
   */
  ensureLive(r: NewRelease): Promise<{ live: ReleaseRecord; created: boolean }>;
  get(name: string): Promise<ReleaseRecord | null>;
  /** Every release, oldest first. */
  list(): Promise<ReleaseRecord[]>;
  /**
   * Applies `action` (see planReleaseAction) and writes its audit row, in one transaction.
   * @throws NotFoundError / ConflictError from the planner.
   */
  apply(action: ReleaseAction, audit: ReleaseAudit): Promise<ReleaseEventRecord>;
  /** Audit rows, newest first. */
  events(limit: number): Promise<ReleaseEventRecord[]>;
  /** A number that changes with every release change (the newest audit row id; 0 without any): cheap to poll. */
  changeMark(): Promise<number>;
  /** Prediction-log rows of `releases` created at or after `from`, newest first, at most `maxRows`. */
  armSamples(releases: readonly string[], from: string, maxRows: number): Promise<ArmSampleRecord[]>;
  /** Every rated ('ok') answer with citations or a correction, newest first, at most `maxRows`. */
  regressionSamples(maxRows: number): Promise<RegressionSampleRecord[]>;
}
