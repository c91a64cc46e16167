-- +goose Up
-- Signed checkpoints of the audit chain head. The signature covers seq,
-- head_hash, time, node and key_uri (audit.checkpointMessage); algorithm and
-- key_fingerprint (SM3 of the public key's SubjectPublicKeyInfo) are for
-- display only: verify checks signatures under a key the auditor trusts,
-- never one stored here. AUTOINCREMENT keeps ids from ever being reused.
CREATE TABLE audit_checkpoints (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    seq             BIGINT  NOT NULL,
    head_hash       BLOB    NOT NULL,
    time            TEXT    NOT NULL,
    node            TEXT    NOT NULL,
    key_uri         TEXT    NOT NULL,
    algorithm       TEXT    NOT NULL,
    key_fingerprint TEXT    NOT NULL,
    signature       BLOB    NOT NULL,
    UNIQUE (key_uri, seq)
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

-- +goose Down
DROP TABLE audit_checkpoints;
