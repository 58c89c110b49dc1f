-- How an answer ended and what it rests on (issue 13); same columns as sqlite/050_answer_outcome.sql:
-- finish_reason 'stop' | 'length' | 'no_evidence', flags (JSON array, e.g. ["uncited"]), the retrieval
-- evidence the abstention decision read. JSON kept verbatim (`json`). NULL for older rows and failures.
ALTER TABLE responses ADD COLUMN finish_reason text;
ALTER TABLE responses ADD COLUMN flags_json json;
ALTER TABLE responses ADD COLUMN evidence_json json;
