-- Ingest jobs (issue 14): uploads through POST /v1/documents (and CLI runs) with their progress, so
-- any process on this database can report them (GET /v1/jobs/:id). Not copied by `mneme migrate`
-- (transient state).
CREATE TABLE jobs (
  id              TEXT    PRIMARY KEY,                 -- job_<uuid>
  kind            TEXT    NOT NULL,                    -- upload | ingest
  state           TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  collection      TEXT    NOT NULL,
  user_id         INTEGER REFERENCES users(id) ON DELETE CASCADE,   -- who started it (null: the CLI)
  files_total     INTEGER NOT NULL DEFAULT 0,
  files_done      INTEGER NOT NULL DEFAULT 0,          -- processed (stored, unchanged or failed)
  files_failed    INTEGER NOT NULL DEFAULT 0,
  chunks_embedded INTEGER NOT NULL DEFAULT 0,
  eta_s           REAL,                                -- seconds left, estimated; null: unknown / finished
  failures_json   TEXT    NOT NULL DEFAULT '[]',       -- [{file, reason}]
  error           TEXT,                                -- why the whole job failed
  summary_json    TEXT,                                -- the pipeline's summary when done
  created_at      TEXT    NOT NULL,
  started_at      TEXT,
  updated_at      TEXT    NOT NULL,
  finished_at     TEXT
);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
