-- How an answer ended and what it rests on (issue 13): finish_reason 'stop' | 'length' | 'no_evidence'
-- (the documents did not cover the question: the answer says so and lists the closest sources),
-- flags (JSON array, e.g. ["uncited"]: an answer that cites nothing), and the retrieval evidence the
-- abstention decision read (JSON: key terms, coverage, BM25 hits among the top chunks, thresholds).
-- NULL for rows written before this migration and for failed attempts.
ALTER TABLE responses ADD COLUMN finish_reason TEXT;
ALTER TABLE responses ADD COLUMN flags_json TEXT;
ALTER TABLE responses ADD COLUMN evidence_json TEXT;
