-- +goose Up
-- Signing keys held for applications (department application accounts):
-- the key lives in the key manager under the key service "signature"
-- (usage sign only); owner is the account allowed to sign with it.
CREATE TABLE signature_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    org         TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    key_uri     TEXT NOT NULL UNIQUE,
    cert        BYTEA NOT NULL,
    chain       BYTEA NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX signature_keys_owner ON signature_keys (owner);

-- +goose Down
DROP TABLE signature_keys;
