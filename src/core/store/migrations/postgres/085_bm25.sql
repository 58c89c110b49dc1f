-- Okapi BM25 on PostgreSQL (searchText / searchDocuments in postgres/corpus.ts): the term statistics
-- ts_rank_cd lacks. Two scopes, each with its own document frequencies and lengths:
--   'chunk'    over chunks.tsv    (term_stats)
--   'document' over documents.tsv (document_term_stats; a document counts while its tsv is set)
-- Maintained by statement-level triggers with transition tables on every write path (replace, staged
-- writes, deletes, cascades, `mneme migrate`); TRUNCATE (`mneme migrate --force`) resets them. Corpus
-- writes are serialized by mneme_lock_corpus() (030_corpus.sql): the triggers take it too, so the
-- counters are never updated by two transactions at once. Tombstoned rows count (as in SQLite's FTS5
-- tables) until their chunks are deleted.

-- Length of a tsvector = its number of token positions, whatever their weight (title, heading and
-- text tokens count alike, as FTS5 counts the tokens of every column); a lexeme stored without
-- positions counts once. Stopwords are not in a tsvector, so they are not counted. PostgreSQL keeps
-- at most 256 positions per lexeme and caps positions at 16383: very long texts count short.
CREATE FUNCTION mneme_tsv_len(v tsvector) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0)::integer FROM unnest(v) AS u
$$;

-- Computed on every insert/update of tsv (and backfilled here by the table rewrite).
ALTER TABLE chunks ADD COLUMN tsv_len integer GENERATED ALWAYS AS (mneme_tsv_len(tsv)) STORED;
ALTER TABLE documents ADD COLUMN tsv_len integer GENERATED ALWAYS AS (mneme_tsv_len(tsv)) STORED;

-- df = number of chunks (documents) whose tsv holds the lexeme; rows with df 0 are removed.
CREATE TABLE term_stats (lexeme text PRIMARY KEY, df bigint NOT NULL);
CREATE TABLE document_term_stats (lexeme text PRIMARY KEY, df bigint NOT NULL);
-- n = rows counted, total_len = sum of their tsv_len (average length = total_len / n).
CREATE TABLE corpus_stats (
  scope     text   PRIMARY KEY CHECK (scope IN ('chunk', 'document')),
  n         bigint NOT NULL,
  total_len bigint NOT NULL
);

-- Chunks: +1 df per lexeme of each inserted row, -1 per lexeme of each deleted row.
CREATE FUNCTION mneme_chunk_stats_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  INSERT INTO term_stats AS t (lexeme, df)
    SELECT u.lexeme, count(*) FROM new_rows n, unnest(n.tsv) AS u GROUP BY u.lexeme ORDER BY u.lexeme
    ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;
  UPDATE corpus_stats AS cs SET n = cs.n + s.n, total_len = cs.total_len + s.len
    FROM (SELECT count(*) AS n, coalesce(sum(tsv_len), 0) AS len FROM new_rows) AS s WHERE scope = 'chunk';
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_chunk_stats_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  UPDATE term_stats t SET df = t.df - g.df
    FROM (SELECT u.lexeme, count(*) AS df FROM old_rows o, unnest(o.tsv) AS u GROUP BY u.lexeme) AS g WHERE t.lexeme = g.lexeme;
  DELETE FROM term_stats WHERE df <= 0;
  UPDATE corpus_stats AS cs SET n = cs.n - s.n, total_len = cs.total_len - s.len
    FROM (SELECT count(*) AS n, coalesce(sum(tsv_len), 0) AS len FROM old_rows) AS s WHERE scope = 'chunk';
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_chunk_stats_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM term_stats;
  UPDATE corpus_stats SET n = 0, total_len = 0 WHERE scope = 'chunk';
  RETURN NULL;
END $$;

CREATE TRIGGER chunks_term_stats_ai AFTER INSERT ON chunks REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_chunk_stats_ins();
CREATE TRIGGER chunks_term_stats_ad AFTER DELETE ON chunks REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_chunk_stats_del();
CREATE TRIGGER chunks_term_stats_truncate AFTER TRUNCATE ON chunks
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_chunk_stats_truncate();

-- Documents: the tsv is rewritten by 033's chunk triggers (UPDATE documents), so an update counts
-- as the old tsv out and the new one in, for the rows whose tsv changed. One helper applies a delta:
-- each tsv of `vs` counted with the sign at the same index (null tsvs count nothing).
CREATE FUNCTION mneme_document_stats_apply(vs tsvector[], signs integer[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(array_length(vs, 1), 0) = 0 THEN RETURN; END IF;
  PERFORM mneme_lock_corpus();
  INSERT INTO document_term_stats AS t (lexeme, df)
    SELECT u.lexeme, sum(x.s) FROM unnest(vs, signs) AS x(v, s), unnest(x.v) AS u
    GROUP BY u.lexeme HAVING sum(x.s) <> 0 ORDER BY u.lexeme
    ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df;
  DELETE FROM document_term_stats WHERE df <= 0;
  UPDATE corpus_stats AS cs SET n = cs.n + s.n, total_len = cs.total_len + s.len
    FROM (SELECT coalesce(sum(x.s) FILTER (WHERE x.v IS NOT NULL), 0) AS n, coalesce(sum(x.s * mneme_tsv_len(x.v)), 0) AS len
          FROM unnest(vs, signs) AS x(v, s)) AS s
    WHERE scope = 'document';
END $$;

CREATE FUNCTION mneme_document_stats_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM mneme_document_stats_apply(ARRAY(SELECT tsv FROM new_rows WHERE tsv IS NOT NULL), ARRAY(SELECT 1 FROM new_rows WHERE tsv IS NOT NULL));
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_document_stats_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM mneme_document_stats_apply(ARRAY(SELECT tsv FROM old_rows WHERE tsv IS NOT NULL), ARRAY(SELECT -1 FROM old_rows WHERE tsv IS NOT NULL));
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_document_stats_upd() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  vs tsvector[];
  signs integer[];
BEGIN
  SELECT coalesce(array_agg(x.v), '{}'), coalesce(array_agg(x.s), '{}') INTO vs, signs
    FROM (SELECT n.tsv AS nv, o.tsv AS ov FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.tsv IS DISTINCT FROM n.tsv) AS c,
         LATERAL (VALUES (c.nv, 1), (c.ov, -1)) AS x(v, s)
    WHERE x.v IS NOT NULL;
  PERFORM mneme_document_stats_apply(vs, signs);
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_document_stats_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM document_term_stats;
  UPDATE corpus_stats SET n = 0, total_len = 0 WHERE scope = 'document';
  RETURN NULL;
END $$;

CREATE TRIGGER documents_term_stats_ai AFTER INSERT ON documents REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_document_stats_ins();
CREATE TRIGGER documents_term_stats_au AFTER UPDATE ON documents REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_document_stats_upd();
CREATE TRIGGER documents_term_stats_ad AFTER DELETE ON documents REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_document_stats_del();
CREATE TRIGGER documents_term_stats_truncate AFTER TRUNCATE ON documents
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_document_stats_truncate();

-- Backfill from the existing rows.
INSERT INTO corpus_stats (scope, n, total_len)
  SELECT 'chunk', count(*), coalesce(sum(tsv_len), 0) FROM chunks
  UNION ALL SELECT 'document', count(*), coalesce(sum(tsv_len), 0) FROM documents WHERE tsv IS NOT NULL;
INSERT INTO term_stats (lexeme, df) SELECT u.lexeme, count(*) FROM chunks c, unnest(c.tsv) AS u GROUP BY u.lexeme;
INSERT INTO document_term_stats (lexeme, df) SELECT u.lexeme, count(*) FROM documents d, unnest(d.tsv) AS u GROUP BY u.lexeme;
