-- +goose Up
-- Public keys whose certificate was revoked for key compromise (RFC 5280
-- §5.3.1 keyCompromise, cACompromise): the CA refuses to certify them again
-- (CA/B Forum BR §6.1.1.3). spki_sha256 is the SHA-256 of the DER
-- SubjectPublicKeyInfo; the row is written in the revocation's transaction.
CREATE TABLE ca_blocked_keys (
    spki_sha256 BLOB PRIMARY KEY,
    issuer_id   TEXT NOT NULL,
    serial      TEXT NOT NULL,
    reason      INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);

-- +goose Down
DROP TABLE ca_blocked_keys;
