-- Acknowledgement polling (SPEC §8): with several workers on one database, each connection's
-- ack folder is polled by one at a time. A worker holds a connection's lease until it
-- releases it or the lease runs out (a crashed worker's lease simply expires).
CREATE TABLE ack_poll_lease (
    connection_id  UUID PRIMARY KEY,
    owner          UUID NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL
);
