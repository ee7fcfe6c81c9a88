-- Draft orders and their exports (SPEC §7).

-- A draft as it arrives from OrderFlow's intake. seq orders "newest first" pages (ids are
-- random; timestamps tie). Quantities and prices live in draft_order_line as the exact decimal
-- text that arrived, so "10.000" is written back as 10.000.
CREATE TABLE draft_order (
    seq                      BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                       UUID PRIMARY KEY,
    org_id                   UUID NOT NULL REFERENCES org (id),
    status                   TEXT NOT NULL
        CHECK (status IN ('READY', 'APPROVED', 'PUSHING', 'PUSHED', 'ERROR')),
    external_order_number    TEXT,
    order_date               TEXT,
    currency                 TEXT,
    requested_delivery_date  TEXT,
    notes                    TEXT,
    customer_id              UUID,
    customer_erp_number      TEXT,
    customer_name            TEXT,
    source_document          JSONB,
    approved_at              TIMESTAMPTZ,
    approved_by              TEXT,
    erp_order_id             TEXT,
    created_at               TIMESTAMPTZ NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL
);

CREATE INDEX draft_order_org_seq ON draft_order (org_id, seq DESC);
CREATE INDEX draft_order_org_status_seq ON draft_order (org_id, status, seq DESC);

CREATE TABLE draft_order_line (
    draft_order_id    UUID NOT NULL REFERENCES draft_order (id) ON DELETE CASCADE,
    line_no           INTEGER NOT NULL CHECK (line_no >= 1),
    internal_sku      TEXT NOT NULL,
    qty               TEXT NOT NULL,
    uom               TEXT NOT NULL,
    unit_price        TEXT,
    currency          TEXT,
    customer_sku_raw  TEXT,
    description       TEXT,
    PRIMARY KEY (draft_order_id, line_no)
);

-- One delivery of a draft to the org's active connection. The file name (and its timestamp)
-- is fixed at creation. attempts counts deliveries started; next_attempt_at is when the
-- export is next due; lease_owner/lease_expires_at reserve it for one worker (a crashed
-- worker's export is taken over once the lease runs out).
CREATE TABLE erp_export (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY,
    id                  UUID PRIMARY KEY,
    org_id              UUID NOT NULL REFERENCES org (id),
    draft_order_id      UUID NOT NULL REFERENCES draft_order (id),
    erp_connection_id   UUID NOT NULL REFERENCES erp_connection (id),
    status              TEXT NOT NULL CHECK (status IN ('PENDING', 'SENT', 'ACKED', 'FAILED')),
    file_name           TEXT NOT NULL,
    dropzone_path       TEXT,
    export_storage_key  TEXT,
    content_sha256      TEXT,
    erp_order_id        TEXT,
    error_json          JSONB,
    attempts            INTEGER NOT NULL DEFAULT 0,
    idempotency_key     TEXT,
    next_attempt_at     TIMESTAMPTZ NOT NULL,
    lease_owner         UUID,
    lease_expires_at    TIMESTAMPTZ,
    sent_at             TIMESTAMPTZ,
    acked_at            TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);

-- A draft has at most one export that is not FAILED, enforced here so concurrent pushes
-- cannot both create one.
CREATE UNIQUE INDEX erp_export_one_live_per_draft ON erp_export (draft_order_id)
    WHERE status IN ('PENDING', 'SENT', 'ACKED');
-- A repeated push with the same Idempotency-Key (per draft) finds the export it made.
CREATE UNIQUE INDEX erp_export_idempotency ON erp_export (draft_order_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Claiming: due PENDING exports in due order.
CREATE INDEX erp_export_due ON erp_export (next_attempt_at, seq) WHERE status = 'PENDING';
-- Acknowledgements match by file name within an org.
CREATE INDEX erp_export_org_file ON erp_export (org_id, file_name);
CREATE INDEX erp_export_org_seq ON erp_export (org_id, seq DESC);
CREATE INDEX erp_export_org_status_seq ON erp_export (org_id, status, seq DESC);
CREATE INDEX erp_export_draft ON erp_export (draft_order_id, seq DESC);
