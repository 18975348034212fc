-- The identity of the change log. Devices remember the one they last synced
-- with; a new row (made by `fieldsync restore` or `fieldsync mark-restored`
-- after the database is put back from a backup) tells every device that the
-- log positions it holds no longer name the same changes, so it pulls the feed
-- again and repairs what it holds (see docs/operations.md, "Backup and
-- restore"). The newest row is the identity in force; the server makes the
-- first when it starts on a database without one.
CREATE TABLE change_log_identity (
    id         TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    reason     TEXT NOT NULL
);
