-- HNSW ef_search calibration of an index generation (src/core/index-store.ts calibrateGeneration):
-- the smallest ef of a ladder whose recall@10 against exact search reached the target on a sample
-- of stored vectors, the recall measured at that ef, when, and the index size it was measured at.
-- NULL until calibrated; the server then uses hnsw_ef_search (MNEME_HNSW_EF_SEARCH overrides both).
ALTER TABLE index_meta ADD COLUMN calibrated_ef INTEGER;
ALTER TABLE index_meta ADD COLUMN calibrated_recall REAL;
ALTER TABLE index_meta ADD COLUMN calibrated_at timestamptz;
ALTER TABLE index_meta ADD COLUMN calibrated_vectors INTEGER;
