-- +goose Up
-- The platform's certificate authorities. key_uri names the CA key in the
-- key manager (hsm); the key itself never enters the database.
CREATE TABLE ca_authorities (
    id         TEXT PRIMARY KEY,
    algorithm  TEXT NOT NULL,
    key_uri    TEXT NOT NULL UNIQUE,
    cert       BYTEA NOT NULL,
    parent     TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
-- Issued certificates. A serial is never reused under one issuer
-- (ARCHITECTURE.md §4); serial is the lowercase hex of the DER INTEGER's
-- content octets. idempotency_key is NULL when the request had none, so the
-- unique index covers only keyed requests.
CREATE TABLE ca_certificates (
    issuer_id       TEXT NOT NULL REFERENCES ca_authorities (id),
    serial          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    profile         TEXT NOT NULL,
    not_before      TEXT NOT NULL,
    not_after       TEXT NOT NULL,
    der             BYTEA NOT NULL,
    status          TEXT NOT NULL DEFAULT 'good',
    requester       TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash    BYTEA,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (issuer_id, serial)
);
CREATE UNIQUE INDEX ca_certificates_idempotency ON ca_certificates (issuer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Events for the bus and the directory publisher, written in the same
-- transaction as the change they announce (transactional outbox).
CREATE TABLE ca_outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event        TEXT NOT NULL,
    issuer_id    TEXT NOT NULL,
    serial       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    published_at TEXT
);

-- +goose Down
DROP TABLE ca_outbox;
DROP INDEX ca_certificates_idempotency;
DROP TABLE ca_certificates;
DROP TABLE ca_authorities;
