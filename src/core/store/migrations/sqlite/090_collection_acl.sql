-- Collections with access control (issue 14, item 4). A collection is a name in documents.collection;
-- a row here only when someone set its access. No row = public (every existing collection and those
-- made by `mneme ingest --collection` stay readable by every user). A private collection is readable
-- by admins and by the users granted it; writes (uploads, deletes) need an admin or a grant with
-- can_write. Grants carry user_id, so erasing a user erases their grants.
CREATE TABLE collections (
  name        TEXT    PRIMARY KEY,
  visibility  TEXT    NOT NULL CHECK (visibility IN ('public', 'private')),
  created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,   -- null: the CLI, or the creator was erased
  created_at  TEXT    NOT NULL
);
CREATE TABLE collection_grants (
  collection  TEXT    NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  can_write   INTEGER NOT NULL DEFAULT 0 CHECK (can_write IN (0, 1)),
  granted_at  TEXT    NOT NULL,
  PRIMARY KEY (collection, user_id)
);
CREATE INDEX collection_grants_user ON collection_grants (user_id);
