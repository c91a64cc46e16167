-- +goose Up
-- Tokens are looked up by serial only, and the serial begins with the
-- issuing millisecond (handler.go newSerial), so a time range is a serial
-- range: the gen_time index only cost writes. The table is keyed by serial
-- itself (WITHOUT ROWID), so each token writes one B-tree, not a table and
-- a primary-key index.
CREATE TABLE tsa_tokens_by_serial (
    serial      TEXT PRIMARY KEY,
    profile     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    policy      TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    imprint     BLOB NOT NULL,
    gen_time    TEXT NOT NULL,
    nonce       TEXT,
    token       BLOB NOT NULL
) WITHOUT ROWID;
INSERT INTO tsa_tokens_by_serial (serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token)
    SELECT serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token FROM tsa_tokens;
DROP TABLE tsa_tokens;
ALTER TABLE tsa_tokens_by_serial RENAME TO tsa_tokens;

-- +goose Down
CREATE TABLE tsa_tokens_rowid (
    serial      TEXT PRIMARY KEY,
    profile     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    policy      TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    imprint     BLOB NOT NULL,
    gen_time    TEXT NOT NULL,
    nonce       TEXT,
    token       BLOB NOT NULL
);
INSERT INTO tsa_tokens_rowid (serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token)
    SELECT serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token FROM tsa_tokens;
DROP TABLE tsa_tokens;
ALTER TABLE tsa_tokens_rowid RENAME TO tsa_tokens;
CREATE INDEX tsa_tokens_gen_time ON tsa_tokens (gen_time);
