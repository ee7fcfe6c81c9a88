-- Tenants, their users, and the audit log (SPEC §2, §9).
-- SQLite flavour; the PostgreSQL folder holds the same schema with native types.
-- UUIDs are 16-byte BLOBs (sqlx's SQLite encoding); timestamps are RFC 3339 TEXT in UTC.

-- The slug doubles as the org's dropzone folder name, so it is unique and never changes.
CREATE TABLE org (
    id          BLOB PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- E-mails are stored normalised (lowercase), so the unique pair is the login identity.
-- Users are disabled, never deleted: audit rows keep pointing at them.
CREATE TABLE app_user (
    id             BLOB PRIMARY KEY NOT NULL,
    org_id         BLOB NOT NULL REFERENCES org (id),
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('ADMIN', 'INTEGRATOR', 'OPS', 'VIEWER')),
    disabled       BOOLEAN NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    CONSTRAINT app_user_org_email_key UNIQUE (org_id, email)
);

-- seq gives a total order for "newest first" pagination that timestamps (equal within a
-- millisecond, or stepping back with the clock) cannot.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             BLOB NOT NULL UNIQUE,
    org_id         BLOB NOT NULL REFERENCES org (id),
    actor_user_id  BLOB,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    entity_type    TEXT NOT NULL,
    entity_id      TEXT,
    details        TEXT NOT NULL,
    created_at     TEXT NOT NULL
);

CREATE INDEX audit_log_org_seq ON audit_log (org_id, seq DESC);
