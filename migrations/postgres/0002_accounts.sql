-- Fieldsync server schema, step 2 (PostgreSQL): who may log in, from which device.
-- Ids are UUIDs; times are Unix seconds (UTC) so the same comparisons run
-- on both databases. Emails are stored lower-cased; uniqueness is per organisation.
CREATE TABLE organisations (
    id         UUID PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE teams (
    id         UUID PRIMARY KEY,
    org_id     UUID NOT NULL REFERENCES organisations (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE territories (
    id         UUID PRIMARY KEY,
    org_id     UUID NOT NULL REFERENCES organisations (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    org_id        UUID NOT NULL REFERENCES organisations (id),
    email         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('rep', 'technician', 'manager', 'admin')),
    team_id       UUID REFERENCES teams (id),
    territory_id  UUID REFERENCES territories (id),
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    CONSTRAINT users_org_email_key UNIQUE (org_id, email)
);

-- One row per app installation. The actor id is the Automerge actor every change
-- made on this device carries; the server assigns it once and never reuses it.
CREATE TABLE devices (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id),
    org_id       UUID NOT NULL REFERENCES organisations (id),
    platform     TEXT NOT NULL,
    app_version  TEXT NOT NULL,
    actor_id     TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX devices_user ON devices (user_id);

-- Refresh tokens are stored as SHA-256 hashes only. Each login starts a family;
-- each refresh marks the used token rotated and links its replacement, so a
-- rotated token presented again reveals theft and revokes the whole family.
CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    token_hash  BYTEA NOT NULL UNIQUE,
    family_id   UUID NOT NULL,
    device_id   UUID NOT NULL REFERENCES devices (id),
    user_id     UUID NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    rotated_at  BIGINT,
    replaced_by UUID,
    revoked_at  BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_device ON refresh_tokens (device_id);

-- The JWT signing key generated on first start when none is configured. It lives
-- in the database (not the data directory) so every node sharing the database
-- signs and verifies with the same key, and a restart logs nobody out.
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
