-- Document-level full text: one row per live document (rowid = documents.id) over its title and the
-- heading paths and texts of all its chunks, so query terms spread over two chunks of one document
-- still count together. Contentless like chunks_fts; kept in step by the corpus store whenever a
-- document's chunks are replaced or deleted (sqlite/corpus.ts), not by triggers (a per-chunk trigger
-- would rebuild a document's row once per chunk).
CREATE VIRTUAL TABLE documents_fts USING fts5 (
  title, text,
  content = '', contentless_delete = 1,
  tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO documents_fts (rowid, title, text)
  SELECT d.id, d.title,
         (SELECT group_concat(t, char(10)) FROM (SELECT c.heading_path || char(10) || c.text AS t FROM chunks c WHERE c.document_id = d.id ORDER BY c.ord))
  FROM documents d
  WHERE d.deleted_at IS NULL AND EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id);
