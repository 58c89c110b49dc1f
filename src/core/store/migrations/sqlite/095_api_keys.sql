-- Named API keys (issue 14, item 5): a user may hold several keys (one per client, say), each with a
-- name, its own prefix, creation, last use and revocation. Authentication looks keys up here only.
-- Every existing user's key moves in as a key named 'default' (revoked with the user if the user was
-- revoked), so every key that worked before keeps working.
--
-- users.api_key_hash / users.key_prefix stay (dropping a UNIQUE column needs a table rebuild, and
-- rebuilding `users` would cascade-delete every table referencing it): they keep the hash and prefix
-- of the user's FIRST key and are no longer read for authentication.
--
-- last_used_at is written by the server at most once a minute per key, off the request path
-- (src/chat/http/auth.ts): it is accurate to about a minute.
CREATE TABLE api_keys (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,     -- never reused: a revoked key's id stays its own
  user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name         TEXT    NOT NULL,                      -- e.g. 'default', 'laptop', 'ci'
  key_hash     TEXT    NOT NULL UNIQUE,               -- sha256 hex of the key
  key_prefix   TEXT    NOT NULL,                      -- first characters of the key, for listings
  created_at   TEXT    NOT NULL,
  last_used_at TEXT,
  revoked_at   TEXT
);
CREATE INDEX api_keys_user ON api_keys (user_id, id);
-- One live key per name and user (a revoked key's name can be reused).
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (user_id, name) WHERE revoked_at IS NULL;

INSERT INTO api_keys (user_id, name, key_hash, key_prefix, created_at, revoked_at)
  SELECT id, 'default', api_key_hash, key_prefix, created_at, revoked_at FROM users ORDER BY id;
