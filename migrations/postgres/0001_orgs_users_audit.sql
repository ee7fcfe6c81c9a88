-- Tenants, their users, and the audit log (SPEC §2, §9).
-- PostgreSQL flavour; the SQLite folder holds the same schema.

-- The slug doubles as the org's dropzone folder name, so it is unique and never changes.
CREATE TABLE org (
    id          UUID PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

-- E-mails are stored normalised (lowercase), so the unique pair is the login identity.
-- Users are disabled, never deleted: audit rows keep pointing at them.
CREATE TABLE app_user (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL REFERENCES org (id),
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('ADMIN', 'INTEGRATOR', 'OPS', 'VIEWER')),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT app_user_org_email_key UNIQUE (org_id, email)
);

-- seq gives a total order for "newest first" pagination that timestamps (equal within a
-- microsecond, or stepping back with the clock) cannot.
CREATE TABLE audit_log (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             UUID NOT NULL UNIQUE,
    org_id         UUID NOT NULL REFERENCES org (id),
    actor_user_id  UUID,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    entity_type    TEXT NOT NULL,
    entity_id      TEXT,
    details        JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE INDEX audit_log_org_seq ON audit_log (org_id, seq DESC);
