-- Document-level full text: a tsvector per document over its title (weight A) and the heading paths
-- and texts of all its chunks (weight C), so query terms spread over two chunks of one document still
-- count together. Maintained by statement-level triggers on chunks (any write path: replace, staged
-- writes, deletes, `mneme migrate`), recomputed once per statement per touched document.
ALTER TABLE documents ADD COLUMN tsv tsvector;
CREATE INDEX documents_tsv ON documents USING gin (tsv);

-- The text is capped at 500,000 characters: a tsvector is limited to 1 MB.
CREATE FUNCTION mneme_document_tsv(doc bigint) RETURNS tsvector LANGUAGE sql STABLE AS $$
  SELECT setweight(to_tsvector('english'::regconfig, coalesce((SELECT title FROM documents WHERE id = doc), '')), 'A')
      || setweight(to_tsvector('english'::regconfig, left(coalesce(string_agg(c.heading_path || E'\n' || c.text, E'\n' ORDER BY c.ord), ''), 500000)), 'C')
  FROM chunks c WHERE c.document_id = doc
$$;

CREATE FUNCTION mneme_refresh_document_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE documents d SET tsv = mneme_document_tsv(d.id) WHERE d.id IN (SELECT DISTINCT document_id FROM new_rows);
  ELSE
    UPDATE documents d SET tsv = CASE WHEN EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id) THEN mneme_document_tsv(d.id) END
      WHERE d.id IN (SELECT DISTINCT document_id FROM old_rows);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER chunks_document_tsv_insert AFTER INSERT ON chunks
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mneme_refresh_document_tsv();
CREATE TRIGGER chunks_document_tsv_delete AFTER DELETE ON chunks
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION mneme_refresh_document_tsv();

UPDATE documents d SET tsv = mneme_document_tsv(d.id) WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id);
