-- Named API keys (issue 14, item 5): the SQLite engine's 095_api_keys.sql. Every existing user's key
-- moves in as a key named 'default' (revoked with the user if the user was revoked), so every key
-- that worked before keeps working. users.api_key_hash / key_prefix stay, holding the user's FIRST
-- key, and are no longer read for authentication (kept so both engines' users tables stay alike).
-- last_used_at is written at most once a minute per key, off the request path.
CREATE TABLE api_keys (
  id           bigserial   PRIMARY KEY,
  user_id      bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         text        NOT NULL,
  key_hash     text        NOT NULL UNIQUE,
  key_prefix   text        NOT NULL,
  created_at   timestamptz NOT NULL,
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (user_id, name) WHERE revoked_at IS NULL;

INSERT INTO api_keys (user_id, name, key_hash, key_prefix, created_at, revoked_at)
  SELECT id, 'default', api_key_hash, key_prefix, created_at, revoked_at FROM users ORDER BY id;
