-- Fieldsync server schema, step 15 (SQLite): administration of people.
--
-- A team's manager, as the administrators set it (the manager's own row says
-- which team they manage through `users.team_id`; this names the one shown as
-- the team's manager).
ALTER TABLE teams ADD COLUMN manager_id TEXT REFERENCES users (id);

-- Every administrative action on people, teams, territories and devices: who
-- did it (a user, or the command line as the server), when, what and on whom.
-- `detail` says what changed in words; it never holds a password.
CREATE TABLE admin_log (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organisations (id),
    at           INTEGER NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX admin_log_org ON admin_log (org_id, at);

-- A user's read scope changed (role, team or territory): the principals they
-- read through before and after (space-separated), at a log position made
-- for the change (a row of `change_log` that belongs to no record), so every
-- cursor handed out before the change is below it. A pull past `seq` sends
-- the user's devices the whole history of what they may now read and names
-- in `removed` what they no longer may.
CREATE TABLE scope_changes (
    seq     INTEGER NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    before  TEXT NOT NULL,
    after   TEXT NOT NULL,
    PRIMARY KEY (user_id, seq)
);
