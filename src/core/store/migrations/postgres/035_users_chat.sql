-- mneme users, conversations, prediction log and feedback on PostgreSQL (the SQLite engine's
-- 001_core.sql tables of the same names). Times are timestamptz (read back as ISO-8601 UTC strings
-- with milliseconds). Numbered 035 so that 040_features_exports.sql, whose tables reference
-- users(id), finds the table.
--
-- Engine differences, on purpose:
-- - ids are bigserial: an erased user's id is never handed to a later user (SQLite may reuse the
--   highest one; the prediction log's userCreatedAt check covers both).
-- - public text ids (conv_…, resp_…) are COLLATE "C": they compare and sort byte-wise, as on
--   SQLite, whatever the database's default collation.
-- - the log's JSON columns are `json`, not `jsonb`: the text is kept exactly as written (key order,
--   numbers), so records and exports read back byte-identical to the SQLite engine's, and `json`
--   accepts the \u0000 escape that `jsonb` rejects (request content must never fail a write).
-- - query_vector is bytea, float32 little-endian: the SQLite engine's BLOB, byte for byte.
--
-- Commit order: `responses.seq` and `feedback.id` are what the feature materializer and the export
-- page through (`WHERE seq > watermark`). A bigserial alone is not assigned in commit order (nextval
-- is not transactional: seq 11 can commit before seq 10, and a reader that saw 11 would skip 10 for
-- good). So every insert into either table first takes that table's transaction-scoped advisory lock
-- (a BEFORE INSERT statement trigger, and the store takes it explicitly at the start of its write):
-- writers of the log are serialized, as they are on SQLite, and a reader that has seen seq N has seen
-- every committed seq below N. The lock is held only for a few short statements per answer.

CREATE FUNCTION mneme_lock_response_log() RETURNS void LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(7749310035)
$$;
CREATE FUNCTION mneme_lock_feedback_log() RETURNS void LANGUAGE sql AS $$
  SELECT pg_advisory_xact_lock(7749310036)
$$;

CREATE TABLE users (
  id           bigserial   PRIMARY KEY,
  name         text        NOT NULL UNIQUE,
  api_key_hash text        NOT NULL UNIQUE,      -- sha256 hex; keys are 256-bit random, so no slow hash needed
  key_prefix   text        NOT NULL,             -- first characters, to recognise a key in listings
  is_admin     boolean     NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL,
  revoked_at   timestamptz
);

CREATE TABLE conversations (
  id         text COLLATE "C" PRIMARY KEY,       -- conv_<uuid>
  user_id    bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title      text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE INDEX conversations_user ON conversations (user_id, updated_at DESC, id DESC);

-- The prediction log: everything needed to reproduce one answer. `seq` orders the log (commit order, see above).
CREATE TABLE responses (
  seq                  bigserial        PRIMARY KEY,
  id                   text COLLATE "C" NOT NULL UNIQUE,   -- resp_<uuid>, the public id
  user_id              bigint           NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  conversation_id      text COLLATE "C" NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  turn_index           integer          NOT NULL,
  created_at           timestamptz      NOT NULL,
  endpoint             text             NOT NULL,          -- chat | chat.completions
  request_json         json             NOT NULL,
  query                text             NOT NULL,
  query_vector         bytea,                              -- float32 little-endian, when an embedder ran
  history_json         json             NOT NULL,
  collection           text,
  top_k                integer          NOT NULL,
  retrieved_json       json             NOT NULL,
  features_json        json             NOT NULL,
  prompt_name          text             NOT NULL,
  prompt_sha256        text             NOT NULL,
  rendered_prompt_json json             NOT NULL,
  model_backend        text             NOT NULL,
  model_id             text             NOT NULL,
  sampling_json        json             NOT NULL,
  answer               text,
  citations_json       json             NOT NULL,
  timings_json         json             NOT NULL,
  prompt_tokens        integer,
  completion_tokens    integer,
  status               text             NOT NULL CHECK (status IN ('ok', 'error', 'cancelled')),
  error_code           text,
  error_message        text
);
CREATE INDEX responses_user ON responses (user_id, seq);
CREATE INDEX responses_conversation ON responses (conversation_id, seq);
CREATE INDEX responses_created ON responses (created_at);

-- Conversation turns as shown to users (the assistant turn links to its response row).
CREATE TABLE messages (
  id              bigserial        PRIMARY KEY,
  conversation_id text COLLATE "C" NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  user_id         bigint           NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role            text             NOT NULL CHECK (role IN ('user', 'assistant')),
  content         text             NOT NULL,
  response_id     text COLLATE "C" REFERENCES responses(id) ON DELETE SET NULL,
  created_at      timestamptz      NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
-- Erasure and "last asked at" by user; ON DELETE SET NULL of a response finds its messages.
CREATE INDEX messages_user ON messages (user_id, created_at) WHERE role = 'user';
CREATE INDEX messages_user_all ON messages (user_id);
CREATE INDEX messages_response ON messages (response_id) WHERE response_id IS NOT NULL;

-- Append-only; the latest row per (response, user) is the current rating. `id` in commit order (see above).
CREATE TABLE feedback (
  id          bigserial        PRIMARY KEY,
  response_id text COLLATE "C" NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
  user_id     bigint           NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  rating      smallint         NOT NULL CHECK (rating IN (1, -1)),
  correction  text,
  created_at  timestamptz      NOT NULL
);
CREATE INDEX feedback_response ON feedback (response_id, id);
CREATE INDEX feedback_user ON feedback (user_id, id);
CREATE INDEX feedback_created ON feedback (created_at);

CREATE FUNCTION mneme_lock_response_log_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM mneme_lock_response_log();
  RETURN NULL;
END $$;
CREATE FUNCTION mneme_lock_feedback_log_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM mneme_lock_feedback_log();
  RETURN NULL;
END $$;
CREATE TRIGGER responses_commit_order BEFORE INSERT ON responses
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_lock_response_log_trg();
CREATE TRIGGER feedback_commit_order BEFORE INSERT ON feedback
  FOR EACH STATEMENT EXECUTE FUNCTION mneme_lock_feedback_log_trg();
