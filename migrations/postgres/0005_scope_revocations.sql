-- Fieldsync server schema, step 5 (PostgreSQL): principals a record lost.
--
-- When a record changes owner, team or (master data) territory, the principals
-- it had through the old values leave `record_scope` and are logged here with
-- the log position of that change: a pull past it names the record in
-- `removed` for the devices that can no longer read it.
CREATE TABLE scope_revocations (
    seq       BIGINT NOT NULL,
    record_id UUID NOT NULL REFERENCES records (id),
    principal TEXT NOT NULL,
    PRIMARY KEY (record_id, principal, seq)
);
CREATE INDEX scope_revocations_principal ON scope_revocations (principal, seq);
