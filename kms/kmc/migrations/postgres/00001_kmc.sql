-- +goose Up
-- Escrowed encryption key pairs of dual certificates (GM/T 0014 ApplyKeyReq).
-- wrapped is the private key wrapped under the KMC escrow key in hsm (never
-- in clear); public_key and sign_public_key are SubjectPublicKeyInfo DER.
-- ca, enc_serial, sign_serial and not_after are set once the CA has issued
-- the certificates (status pending until then, active after).
CREATE TABLE kmc_escrow (
    id              TEXT PRIMARY KEY,
    algorithm       TEXT NOT NULL,
    public_key      BYTEA NOT NULL,
    wrapped         BYTEA,
    escrow_key      TEXT NOT NULL,
    sign_public_key BYTEA NOT NULL,
    subject         TEXT NOT NULL,
    org             TEXT NOT NULL,
    requester       TEXT NOT NULL,
    ca              TEXT,
    enc_serial      TEXT,
    sign_serial     TEXT,
    not_after       TEXT,
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX kmc_escrow_enc ON kmc_escrow (ca, enc_serial);
CREATE INDEX kmc_escrow_sign ON kmc_escrow (ca, sign_serial);
-- Key recovery requests; id is the dual-control request's. payload is the
-- canonical request the approvers approved (its SM3 is in dual_requests).
CREATE TABLE kmc_recoveries (
    id          TEXT PRIMARY KEY,
    escrow_id   TEXT NOT NULL REFERENCES kmc_escrow (id),
    payload     BYTEA NOT NULL,
    requester   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    executed_at TEXT
);

-- +goose Down
DROP TABLE kmc_recoveries;
DROP TABLE kmc_escrow;
