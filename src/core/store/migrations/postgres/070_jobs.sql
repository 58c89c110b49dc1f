-- Ingest jobs (issue 14): the SQLite engine's 070_jobs.sql. Any replica reports any job.
CREATE TABLE jobs (
  id              text        PRIMARY KEY,
  kind            text        NOT NULL,
  state           text        NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  collection      text        NOT NULL,
  user_id         bigint      REFERENCES users(id) ON DELETE CASCADE,
  files_total     integer     NOT NULL DEFAULT 0,
  files_done      integer     NOT NULL DEFAULT 0,
  files_failed    integer     NOT NULL DEFAULT 0,
  chunks_embedded integer     NOT NULL DEFAULT 0,
  eta_s           double precision,
  failures_json   json        NOT NULL DEFAULT '[]',
  error           text,
  summary_json    json,
  created_at      timestamptz NOT NULL,
  started_at      timestamptz,
  updated_at      timestamptz NOT NULL,
  finished_at     timestamptz
);
CREATE INDEX jobs_user ON jobs (user_id, created_at);
