-- Fieldsync server schema, step 20 (PostgreSQL): erasure of personal data by
-- rewrite (docs/adr/0005-erasure-by-rewrite.md, docs/privacy.md).
--
-- `records.epoch` counts the rewrites of a record's history: an erasure
-- copies the record's current state, without the person's data, into a new
-- document of one change and raises the epoch. Devices that hold an older
-- epoch replace their copy when they pull the record, and a push made on an
-- older epoch is refused as retryable. `erased_fields` (JSON) lists the field
-- paths the last rewrite took out and the attachments it deleted, never a
-- value: devices drop their unsynced edits to those fields and their copies
-- of those attachments.
ALTER TABLE records ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN erased_fields TEXT;

-- Every erasure: who ran it, when, why, whose data (the contact's record id
-- or the user's id: pseudonymous ids, kept so an erasure can be run again
-- after a restore from an older backup) and which records were rewritten and
-- which attachments deleted. Never an erased value.
CREATE TABLE erasure_log (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organisations (id),
    at           BIGINT NOT NULL,
    actor_id     UUID NOT NULL,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('contact', 'user')),
    subject_id   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    records      TEXT NOT NULL,
    attachments  BIGINT NOT NULL
);
CREATE INDEX erasure_log_org ON erasure_log (org_id, at);
