-- Releases (issue 15): the SQLite engine's 060_releases.sql. Every change takes the release lock
-- (mneme_lock_releases(), a transaction-scoped advisory lock), so replicas change states one at a time.
CREATE FUNCTION mneme_lock_releases() RETURNS void LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(7749310060)
$$;

CREATE TABLE releases (
  id               bigserial        PRIMARY KEY,
  name             text COLLATE "C" NOT NULL UNIQUE,
  version          integer          NOT NULL UNIQUE,
  parts_json       json             NOT NULL,      -- kept verbatim, as written (byte-identical to SQLite's)
  parts_sha256     text             NOT NULL,
  created_by       text             NOT NULL,
  created_at       timestamptz      NOT NULL,
  state            text             NOT NULL CHECK (state IN ('live', 'candidate', 'previous', 'draft', 'retired')),
  share            double precision,
  experiment       text,
  state_changed_at timestamptz      NOT NULL
);
CREATE UNIQUE INDEX releases_one_per_state ON releases (state) WHERE state IN ('live', 'candidate', 'previous');

CREATE TABLE release_events (
  id           bigserial   PRIMARY KEY,
  at           timestamptz NOT NULL,
  actor        text        NOT NULL,
  action       text        NOT NULL,
  from_release text,
  to_release   text,
  reason       text,
  forced       boolean     NOT NULL DEFAULT false,
  detail_json  json        NOT NULL DEFAULT '{}'
);

ALTER TABLE responses ADD COLUMN release text;
ALTER TABLE responses ADD COLUMN arm text;
CREATE INDEX responses_release ON responses (release, created_at);
