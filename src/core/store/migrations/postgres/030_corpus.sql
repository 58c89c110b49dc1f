-- mneme corpus schema on PostgreSQL (the SQLite engine's 001_core.sql corpus tables + 030_change_feed.sql).
-- Same numbering ranges as the SQLite engine: corpus 030–039, features/exports 040–049,
-- users/chat 050–059, others 060+. Times are timestamptz (read back as ISO-8601 UTC strings).
--
-- pgvector: CREATE EXTENSION needs a superuser unless an administrator created it beforehand
-- (IF NOT EXISTS then succeeds for any user).
CREATE EXTENSION IF NOT EXISTS vector;

-- Every corpus write transaction (and every trigger writing the change feed) takes this lock first,
-- so change-feed sequence numbers are assigned in commit order: a reader that has seen seq N has
-- seen every committed seq below N (a bigserial alone does not give that: nextval is not
-- transactional). Corpus writers are serialized, as they are on SQLite (one writer).
CREATE FUNCTION mneme_lock_corpus() RETURNS void LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(7749310030)
$$;

-- The weighted full-text vector of a chunk: title A, heading path B, passage text C.
-- searchText ranks with ts_rank_cd weights {D,C,B,A} = {0.1, 1.0, 0.5, 0.5}: the same relative
-- weights as the SQLite engine's bm25(text 1.0, heading 0.5, title 0.5).
CREATE FUNCTION mneme_chunk_tsv(title text, heading_path text, body text) RETURNS tsvector
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A')
      || setweight(to_tsvector('english'::regconfig, coalesce(heading_path, '')), 'B')
      || setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'C')
$$;

CREATE TABLE documents (
  id             bigserial   PRIMARY KEY,
  collection     text        NOT NULL,
  source_uri     text        NOT NULL,            -- absolute path or URL; staging:/replaced: prefixes while swapping
  content_sha256 text        NOT NULL,
  title          text        NOT NULL,
  kind           text        NOT NULL,
  bytes          bigint      NOT NULL,
  ingested_at    timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  deleted_at     timestamptz,                     -- tombstone (pruned, or a staging copy not yet visible)
  UNIQUE (collection, source_uri)
);
CREATE INDEX documents_live_collection ON documents (collection) WHERE deleted_at IS NULL;
CREATE INDEX documents_tombstoned ON documents (id) WHERE deleted_at IS NOT NULL;

-- bigserial: a chunk id is also an HNSW label and is never reused by a later chunk.
CREATE TABLE chunks (
  id             bigserial PRIMARY KEY,
  document_id    bigint    NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  ord            integer   NOT NULL,
  text           text      NOT NULL,
  heading_path   text      NOT NULL,
  token_count    integer   NOT NULL,
  content_sha256 text      NOT NULL,
  tsv            tsvector  NOT NULL,              -- mneme_chunk_tsv(document title, heading_path, text)
  UNIQUE (document_id, ord)
);
CREATE INDEX chunks_sha ON chunks (content_sha256);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);

-- One row per (chunk, embedding model). The column has no fixed dimension (a model switch builds
-- beside the old vectors); each model gets its own HNSW index when its generation is created:
--   CREATE INDEX ... USING hnsw ((vector::vector(<dim>)) vector_cosine_ops) WHERE model_id = '<model>'
CREATE TABLE embeddings (
  chunk_id bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
  model_id text   NOT NULL,
  vector   vector NOT NULL,
  PRIMARY KEY (chunk_id, model_id)
);
CREATE INDEX embeddings_model ON embeddings (model_id, chunk_id);

CREATE TABLE corpus_state (
  id             integer PRIMARY KEY CHECK (id = 1),
  version        bigint  NOT NULL,               -- bumped by every statement changing chunks or embeddings
  last_ingest_at timestamptz,
  feed_floor     bigint  NOT NULL DEFAULT 0      -- highest seq removed by truncateFeed: the head survives truncation
);
INSERT INTO corpus_state (id, version) VALUES (1, 0);

CREATE TABLE index_meta (
  generation           bigserial   PRIMARY KEY,
  model_id             text        NOT NULL,
  dimension            integer     NOT NULL,
  pooling              text        NOT NULL,
  normalized           boolean     NOT NULL,
  max_tokens           integer     NOT NULL,
  space                text        NOT NULL,
  hnsw_m               integer     NOT NULL,
  hnsw_ef_construction integer     NOT NULL,
  hnsw_ef_search       integer     NOT NULL,
  file                 text        NOT NULL,
  status               text        NOT NULL CHECK (status IN ('building', 'active', 'retired')),
  created_at           timestamptz NOT NULL,
  activated_at         timestamptz,
  saved_feed_seq       bigint
);
CREATE UNIQUE INDEX index_meta_one_active ON index_meta (status) WHERE status = 'active';

CREATE TABLE ingest_runs (
  id           bigserial   PRIMARY KEY,
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz,
  summary_json jsonb
);

-- Append-only change feed (see 030_change_feed.sql of the SQLite engine): every insert/delete of a
-- chunk and of an embedding gets a sequence number, never reused, assigned in commit order (the
-- triggers take mneme_lock_corpus() before writing).
CREATE TABLE corpus_changes (
  seq        bigserial PRIMARY KEY,
  op         text      NOT NULL CHECK (op IN ('chunk+', 'chunk-', 'vector+', 'vector-')),
  chunk_id   bigint    NOT NULL,
  model_id   text,                               -- vector rows: the embedding model
  collection text                                -- chunk rows: the document's collection
);

-- Statement-level triggers with transition tables: one feed insert per statement, rows in id order
-- (a statement that changed no row writes nothing and takes no lock).
CREATE FUNCTION mneme_feed_chunks_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  INSERT INTO corpus_changes (op, chunk_id, collection)
    SELECT 'chunk+', n.id, d.collection FROM new_rows n LEFT JOIN documents d ON d.id = n.document_id ORDER BY n.id;
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_feed_chunks_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  INSERT INTO corpus_changes (op, chunk_id, collection)
    SELECT 'chunk-', o.id, d.collection FROM old_rows o LEFT JOIN documents d ON d.id = o.document_id ORDER BY o.id;
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_feed_embeddings_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  INSERT INTO corpus_changes (op, chunk_id, model_id)
    SELECT 'vector+', n.chunk_id, n.model_id FROM new_rows n ORDER BY n.chunk_id, n.model_id;
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_feed_embeddings_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  INSERT INTO corpus_changes (op, chunk_id, model_id)
    SELECT 'vector-', o.chunk_id, o.model_id FROM old_rows o ORDER BY o.chunk_id, o.model_id;
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
  RETURN NULL;
END $$;

CREATE TRIGGER chunks_feed_ai AFTER INSERT ON chunks REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_feed_chunks_ins();
CREATE TRIGGER chunks_feed_ad AFTER DELETE ON chunks REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_feed_chunks_del();
CREATE TRIGGER embeddings_feed_ai AFTER INSERT ON embeddings REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_feed_embeddings_ins();
CREATE TRIGGER embeddings_feed_ad AFTER DELETE ON embeddings REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_feed_embeddings_del();
