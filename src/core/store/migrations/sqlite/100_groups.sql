-- Groups of users for collection access (issue 14, item 4: "readable by listed users / groups").
-- A user reads a private collection when they hold a grant (collection_grants) or belong to a group
-- that holds one (collection_group_grants); write access likewise (either grant with can_write).
-- Memberships carry user_id, so erasing a user erases their memberships; deleting a group removes
-- its memberships and grants; deleting a collection's access row removes its group grants.
CREATE TABLE user_groups (
  name        TEXT    PRIMARY KEY,
  created_at  TEXT    NOT NULL
);
CREATE TABLE group_members (
  group_name  TEXT    NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
  user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  added_at    TEXT    NOT NULL,
  PRIMARY KEY (group_name, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE TABLE collection_group_grants (
  collection  TEXT    NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
  group_name  TEXT    NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
  can_write   INTEGER NOT NULL DEFAULT 0 CHECK (can_write IN (0, 1)),
  granted_at  TEXT    NOT NULL,
  PRIMARY KEY (collection, group_name)
);
CREATE INDEX collection_group_grants_group ON collection_group_grants (group_name);
