-- Each chunk's document and position without its text. Searches look chunks up by id only for
-- these (liveness, scope, the hydration meta of a ranked list); through the table itself each
-- lookup reads a leaf page full of chunk text (~600 MB at 1M chunks, mostly outside SQLite's page
-- cache), through this index (~20 MB) it stays in cache: 100 ids 1.32 / 7.83 ms p50 / p99 on a
-- first pass at 1M chunks, 0.41 / 0.85 ms with it (bench/README.md, "Issue 17: the chunk-owner
-- index"). Queries name it with INDEXED BY: the planner prefers the rowid for `id = ?`.
-- Built once on an existing data dir: ~11 s at 1M chunks.
CREATE INDEX IF NOT EXISTS chunks_owner ON chunks (id, document_id, ord);
