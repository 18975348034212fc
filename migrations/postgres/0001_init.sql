-- Fieldsync server schema, step 1 (PostgreSQL): facts about this installation.
-- The sync tables (organisations, users, devices, records, change log) arrive as
-- later steps; an applied step is never edited.
CREATE TABLE server_info (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO server_info (key, value) VALUES ('schema_created', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));
