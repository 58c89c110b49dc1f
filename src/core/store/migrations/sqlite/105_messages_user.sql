-- A user's messages by time (PostgreSQL has had these since 035). Every chat turn reads the user's
-- last question time (lastUserMessageAt, for the session-gap feature): without an index that was a
-- scan of all their messages, growing with each turn — 17 % of the server's CPU after 13k turns of
-- one user (bench/serve-under-ingest.ts). Erasing a user (DELETE … WHERE user_id) uses the second.
CREATE INDEX messages_user ON messages (user_id, created_at) WHERE role = 'user';
CREATE INDEX messages_user_all ON messages (user_id);
