-- +goose Up
-- Cross-certificates issued to a CA of this database by another CA (RFC
-- 5280 §3.2: same subject and key as the CA's own certificate, another
-- issuer), imported by a CA operator and published at /pki/{ca}-cross.p7c
-- so that relying parties who trust the other CA can build a path to this
-- one. fingerprint is the hex SHA-256 of der; ca_id the generation whose
-- subject and key the certificate names.
CREATE TABLE ca_cross_certificates (
    ca_id       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    serial      TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    der         BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (ca_id, fingerprint)
);

-- +goose Down
DROP TABLE ca_cross_certificates;
