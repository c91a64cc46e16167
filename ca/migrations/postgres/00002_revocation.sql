-- +goose Up
-- The organisation of the account that requested a certificate: revocation
-- and reading are decided in it (an RA acts for its own organisation only).
-- Rows issued before this column existed keep '', which no RA matches.
ALTER TABLE ca_certificates ADD COLUMN requester_org TEXT NOT NULL DEFAULT '';
-- Revocation (RFC 5280 §5.3.1): revoked_at is RFC 3339 UTC, reason the
-- CRLReason code; both NULL while status is 'good'.
ALTER TABLE ca_certificates ADD COLUMN revoked_at TEXT;
ALTER TABLE ca_certificates ADD COLUMN revocation_reason INTEGER;
-- The last CRL number given out per CA (RFC 5280 §5.2.3: strictly
-- increasing); it moves in the transaction that stores the CRL.
CREATE TABLE ca_crl_numbers (
    issuer_id TEXT PRIMARY KEY REFERENCES ca_authorities (id),
    last      BIGINT NOT NULL
);
-- Published full CRLs (DER), newest by number; older ones are pruned.
CREATE TABLE ca_crls (
    issuer_id   TEXT NOT NULL REFERENCES ca_authorities (id),
    number      BIGINT NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    der         BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (issuer_id, number)
);

-- +goose Down
DROP TABLE ca_crls;
DROP TABLE ca_crl_numbers;
ALTER TABLE ca_certificates DROP COLUMN revocation_reason;
ALTER TABLE ca_certificates DROP COLUMN revoked_at;
ALTER TABLE ca_certificates DROP COLUMN requester_org;
