-- Releases (issue 15): named, immutable bundles of everything that shapes an answer (prompt template
-- text + hash, chat model + sampling, embedding model / index generation, retrieval settings,
-- personalization weight), their traffic state, and an audit row per change.
CREATE TABLE releases (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  name             TEXT    NOT NULL UNIQUE,
  version          INTEGER NOT NULL UNIQUE,        -- 1, 2, 3... in creation order
  parts_json       TEXT    NOT NULL,               -- ReleaseParts (src/core/store/releases.ts), never changed
  parts_sha256     TEXT    NOT NULL,
  created_by       TEXT    NOT NULL,
  created_at       TEXT    NOT NULL,
  state            TEXT    NOT NULL CHECK (state IN ('live', 'candidate', 'previous', 'draft', 'retired')),
  share            REAL,                           -- candidate: percent of users routed to it
  experiment       TEXT,                           -- candidate: keys the sticky assignment
  state_changed_at TEXT    NOT NULL
);
-- At most one live, one candidate and one previous release.
CREATE UNIQUE INDEX releases_one_per_state ON releases (state) WHERE state IN ('live', 'candidate', 'previous');

-- Append-only audit of every release change: who, when, from which release to which, why.
CREATE TABLE release_events (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  at           TEXT    NOT NULL,
  actor        TEXT    NOT NULL,
  action       TEXT    NOT NULL,                   -- create | initial | canary | promote | rollback | stop
  from_release TEXT,
  to_release   TEXT,
  reason       TEXT,
  forced       INTEGER NOT NULL DEFAULT 0,         -- a gate was overridden (promote --force)
  detail_json  TEXT    NOT NULL DEFAULT '{}'
);

-- Which release answered, and on which arm of the experiment (live | candidate).
ALTER TABLE responses ADD COLUMN release TEXT;
ALTER TABLE responses ADD COLUMN arm TEXT;
CREATE INDEX responses_release ON responses (release, created_at);
