/**
 * The prediction log (one row per answer) and feedback on it.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/predictions.ts.
 */
export interface PredictionStore {}
