-- Circuit breakers: one row per connection that has failed (a connection without a row is
-- closed and clean), so every worker process sees the same state. While a circuit is not
-- closed its exports are not claimed; an open circuit sends one probe export at
-- `next_probe_at`, leased until `probe_until` so a crashed worker's probe is taken over.
CREATE TABLE connection_health (
    connection_id        BLOB PRIMARY KEY REFERENCES erp_connection (id) ON DELETE CASCADE,
    org_id               BLOB NOT NULL REFERENCES org (id) ON DELETE CASCADE,
    state                TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    openings             INTEGER NOT NULL DEFAULT 0,
    since                TEXT NOT NULL,
    next_probe_at        TEXT,
    probe_until          TEXT,
    last_error_code      TEXT,
    last_error_message   TEXT,
    updated_at           TEXT NOT NULL
);
CREATE INDEX connection_health_not_closed ON connection_health (connection_id)
    WHERE state <> 'closed';
-- A connection's own queue: its probe export, and how many exports wait for it.
CREATE INDEX erp_export_connection_queue ON erp_export (erp_connection_id, next_attempt_at, seq)
    WHERE status = 'PENDING';
