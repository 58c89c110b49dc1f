/**
 * Read-only aggregates for the admin pages (traffic, latency, feedback, corpus status).
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/monitoring.ts.
 */
export interface MonitoringStore {}
