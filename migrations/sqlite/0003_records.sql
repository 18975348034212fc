-- Fieldsync server schema, step 3 (SQLite): the central store of records.
--
-- `records` holds each record's merged Automerge document (`save()` bytes) and the
-- projection columns lists, scope and reports query. `change_log` is every
-- accepted Automerge change in commit order: its `seq` is the feed devices pull
-- from. SQLite has one writer, so sequences become visible in order and a cursor
-- never skips one (AUTOINCREMENT: a sequence is never reused).
-- Nothing here is ever purged on a timer: tombstones and history stay.
CREATE TABLE records (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organisations (id),
    kind         TEXT NOT NULL,
    doc          BLOB NOT NULL,
    status       TEXT,
    owner_id     TEXT,
    team_id      TEXT,
    territory_id TEXT,
    account_id   TEXT,
    parent_id    TEXT,
    start_ms     INTEGER,
    deleted      INTEGER NOT NULL DEFAULT 0,
    created_seq  INTEGER NOT NULL,
    updated_seq  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX records_org_kind ON records (org_id, kind, status);
CREATE INDEX records_account ON records (account_id);
CREATE INDEX records_parent ON records (parent_id);
CREATE INDEX records_owner ON records (owner_id, kind);

CREATE TABLE change_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id       TEXT NOT NULL,
    record_id    TEXT NOT NULL,
    hash         BLOB NOT NULL,
    change       BLOB NOT NULL,
    user_id      TEXT,
    device_id    TEXT,
    committed_at INTEGER NOT NULL,
    CONSTRAINT change_log_record_hash UNIQUE (record_id, hash)
);
CREATE INDEX change_log_org_seq ON change_log (org_id, seq);

-- Who may read a record, as principals: `u:<user>` (owner, or a user a record of
-- theirs refers to), `t:<team>` (the team's managers), `r:<territory>` (master
-- data of a territory), `o:<org>` (administrators). `granted_seq` is 0 for
-- principals the record had from its first change (the feed already carries its
-- whole history to them) and the log position of the grant for principals added
-- later: a pull past that position sends the record's whole history.
CREATE TABLE record_scope (
    record_id   TEXT NOT NULL REFERENCES records (id),
    principal   TEXT NOT NULL,
    granted_seq INTEGER NOT NULL,
    PRIMARY KEY (record_id, principal)
);
CREATE INDEX record_scope_principal ON record_scope (principal, granted_seq);

-- The server's rejection ledger: every refused push of a record, with who, from
-- which device, when, the refused changes (a CBOR array of byte strings) and why.
CREATE TABLE rejections (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    batch_id   TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    code       TEXT NOT NULL,
    message    TEXT NOT NULL,
    changes    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX rejections_org ON rejections (org_id, created_at);
CREATE INDEX rejections_record ON rejections (record_id);
