-- Groups of users for collection access (issue 14, item 4): the SQLite engine's 100_groups.sql.
CREATE TABLE user_groups (
  name        text        PRIMARY KEY,
  created_at  timestamptz NOT NULL
);
CREATE TABLE group_members (
  group_name  text        NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
  user_id     bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  added_at    timestamptz NOT NULL,
  PRIMARY KEY (group_name, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE TABLE collection_group_grants (
  collection  text        NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  group_name  text        NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
  can_write   boolean     NOT NULL DEFAULT false,
  granted_at  timestamptz NOT NULL,
  PRIMARY KEY (collection, group_name)
);
CREATE INDEX collection_group_grants_group ON collection_group_grants (group_name);
