-- Ranking weight of a document: 1 for content, < 1 for navigation pages (indexes, tables of
-- contents, release notes) recognized by `mneme ingest`; the retriever multiplies the fused score
-- by it (src/chat/retrieve.ts, applyDocumentWeights).
ALTER TABLE documents ADD COLUMN weight REAL NOT NULL DEFAULT 1.0;
