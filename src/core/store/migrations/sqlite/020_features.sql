-- User feature store (src/features/).

-- Per-user running aggregates that make materialization incremental: the pipeline folds each new
-- responses/feedback row into this state instead of re-reading the log; `watermarks`
-- ('features.responses_seq', 'features.feedback_id', 'features.definitions_version') record how
-- far it got. State, history, online values and watermarks change in one transaction per batch.
CREATE TABLE feature_user_state (
  user_id      INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  state_json   TEXT    NOT NULL,            -- UserFeatureState (src/features/definitions.ts) but the interest sum
  interest_sum BLOB,                        -- the interest vector's decayed sum, float64 little-endian (exact, no text round trip)
  updated_at   TEXT    NOT NULL
);

-- feature_history and feature_online again, same columns and keys, as rowid tables with a UNIQUE
-- index instead of WITHOUT ROWID. Why: one history row per question holds the 384-d interest vector (~3 KB of JSON);
-- a WITHOUT ROWID b-tree keeps at most ~1 KB of a row in its leaf (SQLite advises it only for rows
-- under ~1/20 of a page), so every such row spilled to overflow pages inside the key order.
-- Measured (60k vector rows + 240k scalar rows, sorted batches): inserts 2.1 s CPU vs 4.2 s,
-- file 11% smaller, per-user scans 40% faster. Reads by (user_id, feature, event_time) use the index.
CREATE TABLE feature_history_rowid (
  user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  feature    TEXT    NOT NULL,
  event_time TEXT    NOT NULL,
  value_json TEXT    NOT NULL,
  created_at TEXT    NOT NULL,               -- when the pipeline computed it
  UNIQUE (user_id, feature, event_time)
);
INSERT INTO feature_history_rowid (user_id, feature, event_time, value_json, created_at)
  SELECT user_id, feature, event_time, value_json, created_at FROM feature_history;
DROP TABLE feature_history;
ALTER TABLE feature_history_rowid RENAME TO feature_history;

-- Upserts (ON CONFLICT DO UPDATE) keep a row's rowid, so a user's online rows stay together on disk.
CREATE TABLE feature_online_rowid (
  user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  feature    TEXT    NOT NULL,
  value_json TEXT    NOT NULL,
  event_time TEXT    NOT NULL,
  UNIQUE (user_id, feature)
);
INSERT INTO feature_online_rowid (user_id, feature, value_json, event_time)
  SELECT user_id, feature, value_json, event_time FROM feature_online;
DROP TABLE feature_online;
ALTER TABLE feature_online_rowid RENAME TO feature_online;
