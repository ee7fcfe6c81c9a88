-- Which encryption key the connector configs are sealed with (issue 7): a check value
-- (HMAC-SHA256 of a fixed label under the key; never the key). At start the service refuses to
-- run when neither ENCRYPTION_MASTER_KEY nor a previous key matches it, instead of answering
-- 500 for every config and sealing new ones under a wrong key. One row at most.
CREATE TABLE key_check (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    check_value  TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
