/**
 * Conversations and their messages (the transcripts users see).
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/conversations.ts.
 */
export interface ConversationStore {}
