-- +goose Up
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    time       TEXT   NOT NULL,
    node       TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    object     TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    details    TEXT   NOT NULL,
    prev_hash  BLOB   NOT NULL,
    hash       BLOB   NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
-- The head row is updated in the same transaction as every append, so a
-- truncated tail (rows deleted from the end) is visible to verify.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BLOB   NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_log;
