/**
 * Selection of prediction-log rows for export, over the store's export source
 * (`store.exports`, src/core/store/exports.ts: the filters, the snapshot and paging live there).
 *
 * Consistency: the export reads the log up to the largest `seq` present when it starts (`logSnapshot`);
 * rows logged while it runs wait for the next export. Feedback given during the export may or may not
 * be seen by rows not yet read.
 */
import type { Store } from '../core/store/index.ts';
import type { LogSnapshot, LoggedResponse, PreferenceSelection, SelectOptions, SelectionStats } from '../core/store/exports.ts';
import { isBlank, promptHashOfJson, targetOf } from './format.ts';

export { PROMPT_HASH_MIN_PREFIX } from '../core/store/exports.ts';
export type { ExportFilters, PreferencePlan, PreferenceRow, PreferenceSelection, SelectOptions, SelectionStats } from '../core/store/exports.ts';

/** Log bounds at the start of an export: the snapshot every later page stays within. */
export function logSnapshot(store: Store): Promise<LogSnapshot> {
  return store.exports.logSnapshot();
}

/**
 * Streams the responses matching `filters` in seq order with their current feedback, counting the
 * ones excluded for their status into `stats` (which the caller reads after the stream ends).
 */
export function selectResponses(store: Store, options: SelectOptions, stats: SelectionStats): AsyncGenerator<LoggedResponse> {
  return store.exports.selectResponses(options, stats);
}

/**
 * Plans preference pairs: rated responses grouped by prompt (`promptHashOfJson` of the rendered
 * prompt: identical messages, whatever the JSON spelling). Close the selection when done.
 */
export function planPreference(store: Store, options: Omit<SelectOptions, 'pageRows'>): Promise<PreferenceSelection> {
  return store.exports.planPreference(options, promptHashOfJson);
}

/** `model_backend` of answers quoted from the passages when no language model is configured. */
export const EXTRACTIVE_BACKEND = 'extractive';

/** Why a selected response is not turned into a training target (counted in the manifest). */
export type Exclusion = 'rated_down_uncorrected' | 'extractive';

export interface ExclusionPolicy {
  /** Train on rated-down answers without a correction (only with an explicit `--min-rating -1`). */
  keepRatedDown: boolean;
  /** Train on extractive answers (`--include-extractive`). */
  includeExtractive: boolean;
}

/**
 * Why an SFT row is left out, or null to keep it. Its target is the correction when there is one
 * (always kept, whatever the answer was); otherwise the logged answer, which is excluded when the
 * user rated it down, or when it is an extractive placeholder rather than a model's answer. Done
 * here, after the engine's selection, so every engine behaves the same and each reason is counted.
 */
export function sftExclusion(row: Pick<LoggedResponse, 'rating' | 'correction' | 'modelBackend'>, policy: ExclusionPolicy): Exclusion | null {
  if (!isBlank(row.correction)) return null;
  if (row.rating === -1 && !policy.keepRatedDown) return 'rated_down_uncorrected';
  if (row.modelBackend === EXTRACTIVE_BACKEND && !policy.includeExtractive) return 'extractive';
  return null;
}

/**
 * Whether a preference pair is left out for an extractive answer on either side: the rejected side
 * is always the rated-down answer as logged, the chosen side the rated-up response's correction or
 * answer (null `up`: a correction pair, whose chosen side is the user's own text).
 */
export function pairExclusion(
  down: Pick<LoggedResponse, 'modelBackend'>,
  up: Pick<LoggedResponse, 'answer' | 'correction' | 'modelBackend'> | null,
  policy: Pick<ExclusionPolicy, 'includeExtractive'>,
): Exclusion | null {
  if (policy.includeExtractive) return null;
  if (down.modelBackend === EXTRACTIVE_BACKEND) return 'extractive';
  if (up && up.modelBackend === EXTRACTIVE_BACKEND && targetOf(up)?.source === 'answer') return 'extractive';
  return null;
}
