-- Each org's configured ways of reaching its ERP (SPEC §4).
-- config_encrypted is AES-256-GCM (IV ‖ ciphertext ‖ tag) whose associated data is
-- "erp_connection:<org_id>:<id>", so a blob copied to another row or org fails to decrypt.
CREATE TABLE erp_connection (
    id                UUID PRIMARY KEY,
    org_id            UUID NOT NULL REFERENCES org (id),
    connector_type    TEXT NOT NULL,
    config_encrypted  BYTEA NOT NULL,
    -- Bumped on every config write; pooled SFTP sessions are keyed by (id, version), so a
    -- changed config never reuses a session opened with the old one.
    config_version    BIGINT NOT NULL DEFAULT 1,
    status            TEXT NOT NULL CHECK (status IN ('ACTIVE', 'DISABLED')),
    last_test_at      TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

-- At most one ACTIVE connection per org, enforced by the database so that concurrent creates
-- cannot both win; DISABLED rows stay as history.
CREATE UNIQUE INDEX erp_connection_one_active_per_org ON erp_connection (org_id)
    WHERE status = 'ACTIVE';

CREATE INDEX erp_connection_org ON erp_connection (org_id, created_at);
