-- Append-only change feed of everything retrieval can see: every insert/delete of a chunk and of an
-- embedding gets a monotonically increasing `seq` (AUTOINCREMENT: never reused, even after the
-- feed is truncated). A running server keeps the last seq it applied and applies only newer rows,
-- so its sync cost is proportional to the changes, never to the corpus.
CREATE TABLE corpus_changes (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  op         TEXT    NOT NULL CHECK (op IN ('chunk+', 'chunk-', 'vector+', 'vector-')),
  chunk_id   INTEGER NOT NULL,
  model_id   TEXT,                        -- vector rows: the embedding model
  collection TEXT                         -- chunk rows: the document's collection
);

CREATE TRIGGER chunks_feed_ai AFTER INSERT ON chunks BEGIN
  INSERT INTO corpus_changes (op, chunk_id, collection)
    VALUES ('chunk+', new.id, (SELECT collection FROM documents WHERE id = new.document_id));
END;
CREATE TRIGGER chunks_feed_ad AFTER DELETE ON chunks BEGIN
  INSERT INTO corpus_changes (op, chunk_id, collection)
    VALUES ('chunk-', old.id, (SELECT collection FROM documents WHERE id = old.document_id));
END;
CREATE TRIGGER embeddings_feed_ai AFTER INSERT ON embeddings BEGIN
  INSERT INTO corpus_changes (op, chunk_id, model_id) VALUES ('vector+', new.chunk_id, new.model_id);
END;
CREATE TRIGGER embeddings_feed_ad AFTER DELETE ON embeddings BEGIN
  INSERT INTO corpus_changes (op, chunk_id, model_id) VALUES ('vector-', old.chunk_id, old.model_id);
END;

-- The feed position an index generation's file reflects (NULL: unknown, apply a full reconcile).
ALTER TABLE index_meta ADD COLUMN saved_feed_seq INTEGER;

-- Seed the sequence so a data dir migrated with an existing corpus starts with a non-zero head: a
-- server whose index file predates the feed (saved_feed_seq NULL) then reconciles once in full.
INSERT INTO corpus_changes (op, chunk_id) SELECT 'chunk+', 0 WHERE EXISTS (SELECT 1 FROM chunks);
DELETE FROM corpus_changes WHERE chunk_id = 0;
