-- Fieldsync server schema, step 9 (PostgreSQL): browser sessions of the managers' pages.
--
-- A browser login registers a device (platform `web`) like an app login, so it
-- is listed and revoked with `/v1/devices`, and its decisions carry its user.
-- The session cookie holds a random token; only its SHA-256 is stored here. A
-- session is live while it has not ended (logout), has not expired and its
-- device is not revoked; the CSRF token of its forms is derived from the cookie
-- token, so nothing else needs storing.
CREATE TABLE web_sessions (
    token_hash   BYTEA PRIMARY KEY,
    device_id    UUID NOT NULL REFERENCES devices (id),
    user_id      UUID NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX web_sessions_device ON web_sessions (device_id);
