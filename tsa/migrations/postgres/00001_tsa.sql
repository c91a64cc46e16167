-- +goose Up
-- Time-stamping units: one key and certificate per profile and generation.
-- A rollover adds a generation and retires the previous one; retired units
-- stay here (and at GET /tsa/{profile}/certs) so old tokens verify.
CREATE TABLE tsa_units (
    profile     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    key_uri     TEXT NOT NULL UNIQUE,
    cert        BYTEA NOT NULL,
    chain       BYTEA NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (profile, generation)
);
-- Every token issued, recorded before it is returned (RELIABILITY.md I3).
-- serial is the lowercase hex of TSTInfo.serialNumber, unique across all
-- profiles and restarts; imprint is the hashed message as requested.
CREATE TABLE tsa_tokens (
    serial      TEXT PRIMARY KEY,
    profile     TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    policy      TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    imprint     BYTEA NOT NULL,
    gen_time    TEXT NOT NULL,
    nonce       TEXT,
    token       BYTEA NOT NULL
);
CREATE INDEX tsa_tokens_gen_time ON tsa_tokens (gen_time);

-- +goose Down
DROP TABLE tsa_tokens;
DROP TABLE tsa_units;
