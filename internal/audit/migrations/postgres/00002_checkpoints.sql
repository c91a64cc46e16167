-- +goose Up
-- Signed checkpoints of the audit chain head. The signature covers seq,
-- head_hash, time, node and key_uri (audit.checkpointMessage); algorithm and
-- key_fingerprint (SM3 of the public key's SubjectPublicKeyInfo) are for
-- display only: verify checks signatures under a key the auditor trusts,
-- never one stored here. Rows are inserted after the audit head is locked,
-- so ids grow in commit order.
CREATE TABLE audit_checkpoints (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq             BIGINT NOT NULL,
    head_hash       BYTEA  NOT NULL,
    time            TEXT   NOT NULL,
    node            TEXT   NOT NULL,
    key_uri         TEXT   NOT NULL,
    algorithm       TEXT   NOT NULL,
    key_fingerprint TEXT   NOT NULL,
    signature       BYTEA  NOT NULL,
    UNIQUE (key_uri, seq)
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

-- +goose Down
DROP TABLE audit_checkpoints;
