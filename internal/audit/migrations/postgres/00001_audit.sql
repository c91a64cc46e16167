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
    prev_hash  BYTEA  NOT NULL,
    hash       BYTEA  NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
-- The head row is locked (SELECT ... FOR UPDATE) by every append, which
-- serialises appenders across nodes into one chain, and it makes a truncated
-- tail visible to verify.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA  NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_log;
