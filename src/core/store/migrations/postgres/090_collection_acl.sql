-- Collections with access control (issue 14, item 4): the SQLite engine's 090_collection_acl.sql.
-- No row = public; private = admins and granted users.
CREATE TABLE collections (
  name        text        PRIMARY KEY,
  visibility  text        NOT NULL CHECK (visibility IN ('public', 'private')),
  created_by  bigint      REFERENCES users(id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL
);
CREATE TABLE collection_grants (
  collection  text        NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  user_id     bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  can_write   boolean     NOT NULL DEFAULT false,
  granted_at  timestamptz NOT NULL,
  PRIMARY KEY (collection, user_id)
);
CREATE INDEX collection_grants_user ON collection_grants (user_id);
