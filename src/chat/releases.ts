/**
 * Release operations shared by `mneme releases …` and the admin routes (issue 15): create (parts
 * checked, refused with the reason when one is missing), the initial release of a first start,
 * canary, promote (behind the regression gate unless forced; the audit row says so), rollback and
 * stopping an experiment. Every change is one audit row, written with the state change.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.ts';
import { ConflictError, NotFoundError, ValidationError } from '../core/errors.ts';
import { PROMPTS_DIR } from '../core/prompts.ts';
import type { Store } from '../core/store/index.ts';
import type { ReleaseEventRecord, ReleaseParts, ReleaseRecord } from '../core/store/releases.ts';
import type { GateReport } from './regression.ts';
import type { DayStats, ReleaseReport } from './release-metrics.ts';
import { BASELINE_DAYS, REPORT_MAX_ROWS, computeReport, dailyMonitoring } from './release-metrics.ts';
import { INITIAL_RELEASE, SYSTEM_ACTOR, applySettings, checkParts, missingParts, partsFromConfig, partsSha256, withPromptFile } from './release-parts.ts';

/** The template name answers use. */
export const ANSWER_PROMPT_NAME = 'answer';

type ReleaseStoreDeps = Pick<Store, 'releases' | 'monitoring'>;

/** The active index generation's embedding model (null: BM25 only). */
export async function activeEmbedding(store: Pick<Store, 'monitoring'>): Promise<{ model: string | null; generation: number | null }> {
  const active = (await store.monitoring.corpus()).generations.find((g) => g.status === 'active');
  return active ? { model: active.modelId, generation: active.generation } : { model: null, generation: null };
}

/** The parts of the current configuration (env + `<promptsDir>/answer.md` + the active index). */
export async function currentParts(store: Pick<Store, 'monitoring'>, config: Config, promptsDir = PROMPTS_DIR): Promise<ReleaseParts> {
  const file = path.join(promptsDir, `${ANSWER_PROMPT_NAME}.md`);
  return partsFromConfig(config, { promptText: fs.readFileSync(file, 'utf8'), promptFile: file, embedding: await activeEmbedding(store) });
}

/** Prefix of the releases a start creates when the configuration changed (`config-<parts hash>`). */
export const CONFIG_RELEASE_PREFIX = 'config-';

/** The parts hash of what the configuration controls (the embedding part follows the index, not the environment). */
function configHash(parts: ReleaseParts): string {
  return partsSha256({ ...parts, embedding: { model: null, generation: null } });
}

/**
 * At server start. First start without a live release: creates `initial` from the current
 * configuration and makes it live (once, whatever the number of replicas starting). Later starts:
 * when the configuration (MNEME_LLM_*, MNEME_PERSONALIZATION_WEIGHT, prompts/answer.md) differs from
 * the one the newest configuration-made release was built from, it becomes release
 * `config-<hash>` and is promoted (audited, actor `system`; `releases rollback` undoes it). An
 * unchanged configuration leaves the releases alone, whatever was promoted since.
 */
export async function ensureInitialRelease(store: ReleaseStoreDeps, config: Config, promptsDir = PROMPTS_DIR): Promise<{ live: ReleaseRecord; created: boolean }> {
  const parts = await currentParts(store, config, promptsDir);
  const now = new Date().toISOString();
  const first = await store.releases.ensureLive({ name: INITIAL_RELEASE, parts, partsSha256: partsSha256(parts), createdBy: SYSTEM_ACTOR, createdAt: now });
  if (first.created) return first;
  const fromConfig = (await store.releases.list()).filter((r) => r.createdBy === SYSTEM_ACTOR).pop();
  if (!fromConfig || configHash(fromConfig.parts) === configHash(parts)) return first;
  const name = `${CONFIG_RELEASE_PREFIX}${configHash(parts).slice(0, 8)}`;
  // Replicas starting together race here: the name is the same for all, the loser finds it made.
  let made = await store.releases.get(name);
  if (!made) made = await store.releases.create({ name, parts, partsSha256: partsSha256(parts), createdBy: SYSTEM_ACTOR, createdAt: now }).catch(async (err: unknown) => {
    if (err instanceof ConflictError) return (await store.releases.get(name))!;
    throw err;
  });
  if (made.state !== 'live') {
    await store.releases
      .apply({ kind: 'promote', name }, { actor: SYSTEM_ACTOR, reason: `the configuration changed since release ${fromConfig.name} was made from it`, forced: false, at: now })
      .catch((err: unknown) => {
        if (!(err instanceof ConflictError)) throw err;
      });
  }
  return { live: (await store.releases.get(name))!, created: true };
}

export interface CreateReleaseOptions {
  name: string;
  /** 'current' (the configuration), 'live' (default; the configuration when none is live) or a release name. */
  from?: string | undefined;
  promptFile?: string | undefined;
  /** MNEME_LLM syntax. */
  llm?: string | undefined;
  sets?: readonly string[] | undefined;
  actor: string;
  promptsDir?: string | undefined;
}

/**
 * Creates a draft release. The embedding part is always the active index's (the only one a server
 * can search).
 * @throws ValidationError for bad settings; NotFoundError for an unknown --from release or a missing
 * part (prompt file gone, model not present: the message says which); ConflictError for a taken name.
 */
export async function createRelease(store: ReleaseStoreDeps, config: Config, o: CreateReleaseOptions): Promise<ReleaseRecord> {
  const from = o.from ?? 'live';
  let parts: ReleaseParts;
  if (from === 'current') parts = await currentParts(store, config, o.promptsDir);
  else {
    const base = from === 'live' ? (await store.releases.list()).find((r) => r.state === 'live') : await store.releases.get(from);
    if (!base && from !== 'live') throw new NotFoundError(`--from: no release named ${JSON.stringify(from)}`);
    parts = base ? structuredClone(base.parts) : await currentParts(store, config, o.promptsDir);
  }
  if (o.promptFile !== undefined) {
    if (!fs.existsSync(o.promptFile)) throw new NotFoundError(`release ${o.name} refused: prompt file ${o.promptFile} does not exist`);
    parts = withPromptFile(parts, o.promptFile);
  }
  if (o.llm !== undefined) parts = { ...parts, llm: { ...parts.llm, spec: o.llm } };
  parts = applySettings(parts, o.sets ?? []);
  const embedding = await activeEmbedding(store);
  parts = checkParts({ ...parts, embedding });
  const missing = missingParts(parts, { config, activeEmbedding: embedding });
  if (missing) throw new NotFoundError(`release ${o.name} refused: ${missing}`);
  return store.releases.create({ name: o.name, parts, partsSha256: partsSha256(parts), createdBy: o.actor, createdAt: new Date().toISOString() });
}

export interface ChangeOptions {
  actor: string;
  reason?: string | null | undefined;
}

/**
 * Gives `name` `share` percent of users (sticky per user), as the candidate.
 * @throws ValidationError for a share outside 0..100; NotFoundError / ConflictError from the store.
 */
export async function canaryRelease(store: Pick<Store, 'releases'>, name: string, share: number, o: ChangeOptions): Promise<ReleaseEventRecord> {
  if (!(share >= 0 && share <= 100)) throw new ValidationError(`--share must be a percentage from 0 to 100, got ${share}`);
  return store.releases.apply(
    { kind: 'canary', name, share, experiment: `exp_${randomUUID()}` },
    { actor: o.actor, reason: o.reason ?? null, forced: false, at: new Date().toISOString(), detail: { share } },
  );
}

/** Scores the live release and the target on the regression set. */
export type PromotionGate = (live: ReleaseRecord, target: ReleaseRecord) => Promise<GateReport>;

export interface PromoteOptions extends ChangeOptions {
  /** Default: the candidate. */
  name?: string | undefined;
  /** Promote even when the gate fails (recorded in the audit row). */
  force?: boolean | undefined;
  /** Absent: no gate (nothing to score with). */
  gate?: PromotionGate | undefined;
}

/**
 * Makes the candidate (or `name`) live; the live release becomes `previous` (what rollback restores).
 * @throws ConflictError when the gate fails without `force` (the message gives the scores), when
 * there is no candidate, or the release is already live; NotFoundError for an unknown name.
 */
export async function promoteRelease(store: Pick<Store, 'releases'>, o: PromoteOptions): Promise<{ event: ReleaseEventRecord; gate: GateReport | null }> {
  const all = await store.releases.list();
  const live = all.find((r) => r.state === 'live');
  const name = o.name ?? all.find((r) => r.state === 'candidate')?.name;
  if (!name) throw new ConflictError('there is no candidate to promote (start one with `releases canary NAME --share PCT`, or name the release)');
  const target = all.find((r) => r.name === name);
  if (!target) throw new NotFoundError(`no release named ${JSON.stringify(name)}`);
  const gate = live && o.gate && live.name !== target.name ? await o.gate(live, target) : null;
  if (gate && !gate.passed && !o.force) throw new ConflictError(`promotion refused: ${gate.reason} (--force promotes anyway; the audit row records it)`);
  const forced = Boolean(gate && !gate.passed && o.force);
  const event = await store.releases.apply(
    { kind: 'promote', name },
    { actor: o.actor, reason: o.reason ?? null, forced, at: new Date().toISOString(), detail: gate ? { gate } : {} },
  );
  return { event, gate };
}

/** Makes the previous live release live again at once. @throws ConflictError when there is none. */
export async function rollbackRelease(store: Pick<Store, 'releases'>, o: ChangeOptions): Promise<ReleaseEventRecord> {
  return store.releases.apply({ kind: 'rollback' }, { actor: o.actor, reason: o.reason ?? null, forced: false, at: new Date().toISOString() });
}

/** Ends the experiment: the candidate goes back to draft, every user to live. */
export async function stopCanary(store: Pick<Store, 'releases'>, o: ChangeOptions): Promise<ReleaseEventRecord> {
  return store.releases.apply({ kind: 'stop' }, { actor: o.actor, reason: o.reason ?? null, forced: false, at: new Date().toISOString() });
}

/** The JSON shape of a release in `releases list --json` and the admin API. */
export function releaseJson(r: ReleaseRecord) {
  return {
    name: r.name,
    version: r.version,
    state: r.state,
    share: r.share,
    created_at: r.createdAt,
    created_by: r.createdBy,
    state_changed_at: r.stateChangedAt,
    parts_sha256: r.partsSha256,
    parts: r.parts,
  };
}

export function eventJson(e: ReleaseEventRecord) {
  return { id: e.id, at: e.at, actor: e.actor, action: e.action, from: e.from, to: e.to, reason: e.reason, forced: e.forced, detail: e.detail };
}

/**
 * Per-arm metrics of the running experiment: the live and candidate releases' log rows since the
 * candidate's last state change (without a candidate: the live release since it went live).
 * @throws ConflictError when no release is live.
 */
export async function releaseReport(store: Pick<Store, 'releases'>): Promise<ReleaseReport> {
  const all = await store.releases.list();
  const live = all.find((r) => r.state === 'live');
  if (!live) throw new ConflictError('no release is live yet (start the server once, or promote one)');
  const cand = all.find((r) => r.state === 'candidate') ?? null;
  const from = cand ? (cand.stateChangedAt > live.stateChangedAt ? cand.stateChangedAt : live.stateChangedAt) : live.stateChangedAt;
  const rows = await store.releases.armSamples(cand ? [live.name, cand.name] : [live.name], from, REPORT_MAX_ROWS);
  return computeReport(rows, live.name, cand?.name ?? null, from);
}

/** Days shown by the data monitoring. */
export const MONITORING_DAYS = 7;

/** Data monitoring of the last MONITORING_DAYS days per release (each compared with its previous BASELINE_DAYS). */
export async function releaseDataMonitoring(store: Pick<Store, 'releases'>, nowMs = Date.now()): Promise<DayStats[]> {
  const names = (await store.releases.list()).map((r) => r.name);
  const dayMs = 86_400_000;
  const from = new Date(Math.floor(nowMs / dayMs) * dayMs - (MONITORING_DAYS - 1 + BASELINE_DAYS) * dayMs).toISOString();
  const shownFrom = new Date(Math.floor(nowMs / dayMs) * dayMs - (MONITORING_DAYS - 1) * dayMs).toISOString().slice(0, 10);
  const rows = await store.releases.armSamples(names, from, REPORT_MAX_ROWS);
  return dailyMonitoring(rows).filter((d) => d.day >= shownFrom);
}
