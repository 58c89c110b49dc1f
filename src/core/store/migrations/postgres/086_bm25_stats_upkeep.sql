-- Upkeep of 085_bm25.sql's term statistics, measured on a 100k-chunk bulk insert (bench/retrieval.ts):
-- every chunk statement updates the df of each of its lexemes, so term_stats rows are rewritten
-- constantly. With full pages those updates cannot be HOT and dead index entries pile up (with
-- autovacuum off, 450k dead rows after 9,000 chunks: 0.4 ms per upsert). Half-empty pages let the
-- updates be HOT (dead versions pruned on the page as it is read); vacuum these tables early.
ALTER TABLE term_stats SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE document_term_stats SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
ALTER TABLE corpus_stats SET (fillfactor = 50);

-- Lexemes whose df reaches 0 are removed by key (085 scanned the whole table after every delete).
CREATE OR REPLACE FUNCTION mneme_chunk_stats_del() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  gone text[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
  PERFORM mneme_lock_corpus();
  WITH g AS (SELECT u.lexeme, count(*) AS df FROM old_rows o, unnest(o.tsv) AS u GROUP BY u.lexeme),
       upd AS (UPDATE term_stats t SET df = t.df - g.df FROM g WHERE t.lexeme = g.lexeme RETURNING t.lexeme, t.df)
    SELECT array_agg(upd.lexeme) FILTER (WHERE upd.df <= 0) INTO gone FROM upd;
  IF gone IS NOT NULL THEN DELETE FROM term_stats WHERE lexeme = ANY(gone); END IF;
  UPDATE corpus_stats AS cs SET n = cs.n - s.n, total_len = cs.total_len - s.len
    FROM (SELECT count(*) AS n, coalesce(sum(tsv_len), 0) AS len FROM old_rows) AS s WHERE scope = 'chunk';
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION mneme_document_stats_apply(vs tsvector[], signs integer[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  gone text[];
BEGIN
  IF coalesce(array_length(vs, 1), 0) = 0 THEN RETURN; END IF;
  PERFORM mneme_lock_corpus();
  WITH upd AS (
    INSERT INTO document_term_stats AS t (lexeme, df)
      SELECT u.lexeme, sum(x.s) FROM unnest(vs, signs) AS x(v, s), unnest(x.v) AS u
      GROUP BY u.lexeme HAVING sum(x.s) <> 0 ORDER BY u.lexeme
      ON CONFLICT (lexeme) DO UPDATE SET df = t.df + excluded.df
      RETURNING t.lexeme, t.df)
    SELECT array_agg(upd.lexeme) FILTER (WHERE upd.df <= 0) INTO gone FROM upd;
  IF gone IS NOT NULL THEN DELETE FROM document_term_stats WHERE lexeme = ANY(gone); END IF;
  UPDATE corpus_stats AS cs SET n = cs.n + s.n, total_len = cs.total_len + s.len
    FROM (SELECT coalesce(sum(x.s) FILTER (WHERE x.v IS NOT NULL), 0) AS n, coalesce(sum(x.s * mneme_tsv_len(x.v)), 0) AS len
          FROM unnest(vs, signs) AS x(v, s)) AS s
    WHERE scope = 'document';
END $$;
