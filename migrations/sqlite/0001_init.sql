-- Fieldsync server schema, step 1 (SQLite): facts about this installation.
-- The sync tables (organisations, users, devices, records, change log) arrive as
-- later steps; an applied step is never edited.
CREATE TABLE server_info (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO server_info (key, value) VALUES ('schema_created', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
