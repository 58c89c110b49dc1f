/**
 * What the training-data export reads: a snapshot of the prediction log with its feedback.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/exports.ts.
 */
export interface ExportSource {}
