/**
 * Documents, chunks, embeddings, index generations, corpus state and the change feed.
 * Engine-neutral: record types and a Promise-returning interface; the SQLite implementation is
 * sqlite/corpus.ts.
 */
export interface CorpusStore {}
