-- mneme core schema. SQLite is the source of truth; the HNSW file is a derived cache rebuilt from
-- `embeddings`. Times are ISO-8601 UTC strings with milliseconds (they sort as text).

CREATE TABLE documents (
  id             INTEGER PRIMARY KEY,
  collection     TEXT    NOT NULL,
  source_uri     TEXT    NOT NULL,            -- absolute path of the file
  content_sha256 TEXT    NOT NULL,            -- of the raw bytes; unchanged hash = nothing to do
  title          TEXT    NOT NULL,
  kind           TEXT    NOT NULL,            -- text/markdown, text/html, application/pdf, ...
  bytes          INTEGER NOT NULL,
  ingested_at    TEXT    NOT NULL,            -- first seen
  updated_at     TEXT    NOT NULL,            -- last content change
  deleted_at     TEXT,                        -- tombstone (pruned); chunks are gone, the row stays for old logs
  UNIQUE (collection, source_uri)
);

-- AUTOINCREMENT: a chunk id is also its HNSW label and must never be reused by a later chunk.
CREATE TABLE chunks (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  document_id    INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  ord            INTEGER NOT NULL,
  text           TEXT    NOT NULL,
  heading_path   TEXT    NOT NULL,
  token_count    INTEGER NOT NULL,
  content_sha256 TEXT    NOT NULL,            -- of heading_path + "\n" + text, exactly what was embedded
  UNIQUE (document_id, ord)
);
CREATE INDEX chunks_sha ON chunks (content_sha256);

-- One row per (chunk, embedding model): a model switch builds beside the old vectors, never mixes.
CREATE TABLE embeddings (
  chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
  model_id TEXT    NOT NULL,
  vector   BLOB    NOT NULL,                 -- float32 little-endian, `dimension` values
  PRIMARY KEY (chunk_id, model_id)
) WITHOUT ROWID;
CREATE INDEX embeddings_model ON embeddings (model_id, chunk_id);

-- Contentless FTS5: the text lives in `chunks`; rowid = chunk id.
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
  text, heading_path, title,
  content = '', contentless_delete = 1,
  tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Bumped by every change to what retrieval can see, so a running server notices new ingestions
-- with one cheap read instead of a scan.
CREATE TABLE corpus_state (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  version         INTEGER NOT NULL,
  last_ingest_at  TEXT
);
INSERT INTO corpus_state (id, version) VALUES (1, 0);

CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
  INSERT INTO chunks_fts (rowid, text, heading_path, title)
    VALUES (new.id, new.text, new.heading_path, (SELECT title FROM documents WHERE id = new.document_id));
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
  DELETE FROM chunks_fts WHERE rowid = old.id;
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER embeddings_ai AFTER INSERT ON embeddings BEGIN
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER embeddings_ad AFTER DELETE ON embeddings BEGIN
  UPDATE corpus_state SET version = version + 1 WHERE id = 1;
END;

-- One row per vector-index generation. Exactly one is 'active'; `reindex --model X` builds a
-- 'building' one beside it and switches when complete.
CREATE TABLE index_meta (
  generation           INTEGER PRIMARY KEY AUTOINCREMENT,
  model_id             TEXT    NOT NULL,
  dimension            INTEGER NOT NULL,
  pooling              TEXT    NOT NULL,
  normalized           INTEGER NOT NULL,
  max_tokens           INTEGER NOT NULL,
  space                TEXT    NOT NULL,
  hnsw_m               INTEGER NOT NULL,
  hnsw_ef_construction INTEGER NOT NULL,
  hnsw_ef_search       INTEGER NOT NULL,
  file                 TEXT    NOT NULL,   -- relative to the data dir
  status               TEXT    NOT NULL CHECK (status IN ('building', 'active', 'retired')),
  created_at           TEXT    NOT NULL,
  activated_at         TEXT,
  saved_corpus_version INTEGER                  -- corpus_state.version the file reflects; differs = file lags SQLite
);
CREATE UNIQUE INDEX index_meta_one_active ON index_meta (status) WHERE status = 'active';

CREATE TABLE ingest_runs (
  id           INTEGER PRIMARY KEY,
  started_at   TEXT NOT NULL,
  finished_at  TEXT,
  summary_json TEXT
);

CREATE TABLE users (
  id           INTEGER PRIMARY KEY,
  name         TEXT    NOT NULL UNIQUE,
  api_key_hash TEXT    NOT NULL UNIQUE,      -- sha256 hex; keys are 256-bit random, so no slow hash needed
  key_prefix   TEXT    NOT NULL,             -- first characters, to recognise a key in listings
  is_admin     INTEGER NOT NULL DEFAULT 0,
  created_at   TEXT    NOT NULL,
  revoked_at   TEXT
);

CREATE TABLE conversations (
  id         TEXT    PRIMARY KEY,            -- conv_<uuid>
  user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title      TEXT,
  created_at TEXT    NOT NULL,
  updated_at TEXT    NOT NULL
);
CREATE INDEX conversations_user ON conversations (user_id, updated_at);

-- The prediction log: everything needed to reproduce one answer. `seq` orders the log.
CREATE TABLE responses (
  seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
  id                   TEXT    NOT NULL UNIQUE,   -- resp_<uuid>, the public id
  user_id              INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  conversation_id      TEXT    NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  turn_index           INTEGER NOT NULL,          -- 0 for the first question of a conversation
  created_at           TEXT    NOT NULL,
  endpoint             TEXT    NOT NULL,          -- chat | chat.completions
  request_json         TEXT    NOT NULL,          -- the validated request
  query                TEXT    NOT NULL,          -- the user's message
  query_vector         BLOB,                      -- its embedding (float32) when an embedder ran; feeds the interest vector
  history_json         TEXT    NOT NULL,          -- earlier turns given to the model [{role, content}]
  collection           TEXT,
  top_k                INTEGER NOT NULL,
  retrieved_json       TEXT    NOT NULL,          -- [{chunk_id, document_id, content_sha256, score, ...}]
  features_json        TEXT    NOT NULL,          -- feature values as read (precomputed + on-demand)
  prompt_name          TEXT    NOT NULL,
  prompt_sha256        TEXT    NOT NULL,
  rendered_prompt_json TEXT    NOT NULL,          -- the exact messages sent to the model [{role, content}]
  model_backend        TEXT    NOT NULL,
  model_id             TEXT    NOT NULL,
  sampling_json        TEXT    NOT NULL,
  answer               TEXT,
  citations_json       TEXT    NOT NULL,
  timings_json         TEXT    NOT NULL,
  prompt_tokens        INTEGER,
  completion_tokens    INTEGER,
  status               TEXT    NOT NULL CHECK (status IN ('ok', 'error', 'cancelled')),
  error_code           TEXT,
  error_message        TEXT
);
CREATE INDEX responses_user ON responses (user_id, seq);
CREATE INDEX responses_conversation ON responses (conversation_id, seq);
CREATE INDEX responses_created ON responses (created_at);

-- Conversation turns as shown to users (the assistant turn links to its response row).
CREATE TABLE messages (
  id              INTEGER PRIMARY KEY,
  conversation_id TEXT    NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role            TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
  content         TEXT    NOT NULL,
  response_id     TEXT    REFERENCES responses(id) ON DELETE SET NULL,
  created_at      TEXT    NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

-- Append-only; the latest row per (response, user) is the current rating.
CREATE TABLE feedback (
  id          INTEGER PRIMARY KEY,
  response_id TEXT    NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
  user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  rating      INTEGER NOT NULL CHECK (rating IN (1, -1)),
  correction  TEXT,
  created_at  TEXT    NOT NULL
);
CREATE INDEX feedback_response ON feedback (response_id, id);
CREATE INDEX feedback_user ON feedback (user_id, id);

-- User feature store: offline history (every value with the time it became true) and the online
-- latest value. Point-in-time reads use the history; chat reads the online table.
CREATE TABLE feature_history (
  user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  feature    TEXT    NOT NULL,
  event_time TEXT    NOT NULL,
  value_json TEXT    NOT NULL,
  created_at TEXT    NOT NULL,               -- when the pipeline computed it
  PRIMARY KEY (user_id, feature, event_time)
) WITHOUT ROWID;

CREATE TABLE feature_online (
  user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  feature    TEXT    NOT NULL,
  value_json TEXT    NOT NULL,
  event_time TEXT    NOT NULL,
  PRIMARY KEY (user_id, feature)
) WITHOUT ROWID;

-- Pipeline watermarks (e.g. last materialized responses.seq).
CREATE TABLE watermarks (
  name  TEXT    PRIMARY KEY,
  value INTEGER NOT NULL
);
