-- The document-level full-text row of a document covers its title and its first 200 chunks
-- (DOC_FTS_MAX_CHUNKS in sqlite/fts-query.ts), no longer all of them: one 250k-record file made a
-- 12 MB row that cost ~300 ms of scoring per query. Rebuilds the rows of documents that have more.
DELETE FROM documents_fts WHERE rowid IN (SELECT document_id FROM chunks WHERE ord >= 200 GROUP BY document_id);
INSERT INTO documents_fts (rowid, title, text)
  SELECT d.id, d.title,
         (SELECT group_concat(t, char(10)) FROM (SELECT c.heading_path || char(10) || c.text AS t FROM chunks c WHERE c.document_id = d.id AND c.ord < 200 ORDER BY c.ord))
  FROM documents d
  WHERE d.deleted_at IS NULL AND d.id IN (SELECT document_id FROM chunks WHERE ord >= 200 GROUP BY document_id);
