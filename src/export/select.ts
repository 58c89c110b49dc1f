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
import { promptHashOfJson } from './format.ts';

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
