/**
 * Users and their API keys; erasure of everything a user left.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/users.ts.
 */
export interface UserStore {}
