-- Settings of this data dir, one value per name (e.g. 'export.user_hash_key': the random secret that
-- keys the pseudonymous user hashes of exported training data; created on first use, never exported).
CREATE TABLE settings (
  name  TEXT PRIMARY KEY,
  value BLOB NOT NULL
);

-- Every export that wrote a manifest (src/export/run.ts), recorded before its files are published,
-- so `users delete` can name the manifests that hold a user's data.
CREATE TABLE export_runs (
  id            INTEGER PRIMARY KEY,
  manifest_path TEXT    NOT NULL,            -- absolute path of FILE.manifest.json
  format        TEXT    NOT NULL,            -- sft | preference
  examples      INTEGER NOT NULL,
  created_at    TEXT    NOT NULL
);

-- The distinct pseudonymous user hashes of each run (never user ids: the rows outlive the user, and
-- an erased user's hash is what a downstream erasure is asked to remove).
CREATE TABLE export_run_users (
  user_hash TEXT    NOT NULL,
  run_id    INTEGER NOT NULL REFERENCES export_runs(id) ON DELETE CASCADE,
  PRIMARY KEY (user_hash, run_id)
) WITHOUT ROWID;
