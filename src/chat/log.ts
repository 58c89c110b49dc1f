/**
 * Two logs live here:
 * - the PREDICTION LOG: one `responses` row per answer attempt (ok, error or cancelled), written with
 *   the conversation and its `messages` rows in one transaction (`writePredictionLog`, through
 *   `PredictionStore.write`; the record types live in src/core/store/predictions.ts);
 * - the server's operational log lines (`Logger`, JSON lines on stderr), for things a user of the
 *   HTTP API must not see (stack traces, dropped context chunks).
 */
import type { Writable } from 'node:stream';
import type { Store } from '../core/store/index.ts';
import type { PredictionRecord, PredictionWriteOutcome } from '../core/store/predictions.ts';

/** Operational log; every method takes a message and optional structured fields. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Logger writing one JSON object per line to `out` (stderr in `mneme serve`). */
export function jsonLineLogger(out: Writable): Logger {
  const write = (level: string, msg: string, fields?: Record<string, unknown>) => {
    out.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
  };
  return {
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

/** Logger that drops everything (tests, embedding). */
export const silentLogger: Logger = { info: () => {}, warn: () => {}, error: () => {} };

export type { LoggedChunk, PredictionRecord, PredictionWriteOutcome, ResponseStatus } from '../core/store/predictions.ts';
export { CONVERSATION_TITLE_CHARS } from '../core/store/predictions.ts';

/**
 * Writes the prediction-log row, creates the conversation when new and, for a successful answer,
 * appends the user and assistant `messages` (failed or cancelled attempts leave the transcript
 * untouched: they are in `responses` only, so they never become history for the next turn).
 * One transaction: either all of it is stored or none. Request content never fails the write (JSON
 * is serialized defensively). A row whose user was erased meanwhile is dropped on purpose: the
 * outcome says so (`{written: false, reason: 'user_erased'}`).
 */
export function writePredictionLog(store: Pick<Store, 'predictions'>, r: PredictionRecord): Promise<PredictionWriteOutcome> {
  return store.predictions.write(r);
}
