-- Signed-out access tokens. A token is valid by its signature until it expires; signing out
-- must end it at once, so its id (`jti`) is listed here until its expiry, and every request
-- checks the list in the same query that loads the user. Rows past `expires_at` are purged:
-- the signature check refuses those tokens anyway.
CREATE TABLE revoked_token (
    jti         UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_token_expiry ON revoked_token (expires_at);
