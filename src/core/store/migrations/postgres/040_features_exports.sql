-- mneme user feature store and training-data export records on PostgreSQL: the SQLite engine's
-- feature tables (001_core.sql, 020_features.sql), watermarks, settings and export runs
-- (040_exports.sql). Needs users (035_users_chat.sql). Times are timestamptz (read back as ISO-8601
-- UTC strings with milliseconds, the stored form the pipeline compares); feature names sort with
-- COLLATE "C" (byte order), so a user's history keys come back in the order JavaScript compares them.

-- Pipeline watermarks (e.g. last materialized responses.seq). IF NOT EXISTS: the table is generic
-- (SQLite creates it with the core schema), another migration may have made it first.
CREATE TABLE IF NOT EXISTS watermarks (
  name  text   PRIMARY KEY,
  value bigint NOT NULL
);
-- The optimistic token of materialization's read → fold → commit: a commit is a compare-and-set
-- (UPDATE … WHERE value = token), so the row must exist before the first commit.
INSERT INTO watermarks (name, value) VALUES ('features.generation', 0) ON CONFLICT (name) DO NOTHING;

-- Per-user running aggregates that make materialization incremental (see 020_features.sql).
CREATE TABLE feature_user_state (
  user_id      bigint      PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  state_json   text        NOT NULL,        -- UserFeatureState (src/features/definitions.ts) but the interest sum
  interest_sum bytea,                       -- the interest vector's decayed sum, float64 little-endian (exact)
  updated_at   timestamptz NOT NULL
);

-- Offline history: every value with the time it became true. value_json is text, not jsonb: the
-- pipeline compares values by their exact JSON text.
CREATE TABLE feature_history (
  user_id    bigint           NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  feature    text COLLATE "C" NOT NULL,
  event_time timestamptz      NOT NULL,
  value_json text             NOT NULL,
  created_at timestamptz      NOT NULL,     -- when the pipeline computed it
  PRIMARY KEY (user_id, feature, event_time)
);

-- The online (latest) value per user and feature: what chat reads.
CREATE TABLE feature_online (
  user_id    bigint           NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  feature    text COLLATE "C" NOT NULL,
  value_json text             NOT NULL,
  event_time timestamptz      NOT NULL,
  PRIMARY KEY (user_id, feature)
);

-- Settings of this database, one value per name (e.g. 'export.user_hash_key': the random secret that
-- keys the pseudonymous user hashes of exported training data; created on first use, never exported).
CREATE TABLE IF NOT EXISTS settings (
  name  text  PRIMARY KEY,
  value bytea NOT NULL
);

-- Every export that wrote a manifest (src/export/run.ts), recorded before its files are published,
-- so `users delete` can name the manifests that hold a user's data.
CREATE TABLE export_runs (
  id            bigserial   PRIMARY KEY,
  manifest_path text        NOT NULL,       -- absolute path of FILE.manifest.json
  format        text        NOT NULL,       -- sft | preference
  examples      integer     NOT NULL,
  created_at    timestamptz NOT NULL
);

-- The distinct pseudonymous user hashes of each run (never user ids: the rows outlive the user, and
-- an erased user's hash is what a downstream erasure is asked to remove).
CREATE TABLE export_run_users (
  user_hash text   NOT NULL,
  run_id    bigint NOT NULL REFERENCES export_runs(id) ON DELETE CASCADE,
  PRIMARY KEY (user_hash, run_id)
);
CREATE INDEX export_run_users_run ON export_run_users (run_id);
