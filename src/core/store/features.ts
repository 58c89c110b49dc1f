/**
 * The user feature tables: offline history, online values, per-user state and watermarks.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/features.ts.
 */
export interface FeatureTableStore {}
