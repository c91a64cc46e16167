-- +goose Up
-- Application keys (envelope encryption for applications, like Vault
-- Transit). A key has versions; latest encrypts, every version from
-- min_decrypt up decrypts. rotation_period is in seconds (0: manual only).
CREATE TABLE kms_keys (
    name            TEXT PRIMARY KEY,
    algorithm       TEXT NOT NULL,
    owner           TEXT NOT NULL,
    org             TEXT NOT NULL,
    description     TEXT NOT NULL,
    status          TEXT NOT NULL,
    latest          INTEGER NOT NULL,
    min_decrypt     INTEGER NOT NULL,
    rotation_period BIGINT NOT NULL,
    created_at      TEXT NOT NULL,
    rotated_at      TEXT NOT NULL
);
-- Key versions. wrapped is the version's key material wrapped under the
-- key-encryption key kek in hsm (never in clear); it is NULL once the
-- version is destroyed (crypto-shredding, under dual control).
CREATE TABLE kms_key_versions (
    name         TEXT NOT NULL REFERENCES kms_keys (name),
    version      INTEGER NOT NULL,
    wrapped      BLOB,
    kek          TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    destroyed_at TEXT,
    PRIMARY KEY (name, version)
);

-- +goose Down
DROP TABLE kms_key_versions;
DROP TABLE kms_keys;
