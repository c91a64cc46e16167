-- +goose Up
-- A certificate binding names one certificate: cert_sha256 is the SHA-256
-- (hex) of its DER, which mTLS login and CertificateAccount match on; the
-- issuer and subject stay for display and audit. Binding by issuer and
-- subject alone let anyone who could get a certificate with the same names
-- (a registration officer of the same CA) log in as the account or receive
-- a key recovered for its officer. Rows made before this migration have
-- cert_sha256 '' and no longer authenticate or name a recipient (fail
-- closed): the node logs how many at start; bind each certificate again
-- (govtrust account bind-cert), which replaces the old row. mac covers
-- cert_sha256. SQLite cannot drop the old primary key (issuer, subject),
-- which would refuse a renewed certificate with the same names, so the
-- table is rebuilt.
CREATE TABLE authz_cert_bindings_v2 (
    cert_sha256 TEXT NOT NULL DEFAULT '',
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    account_id  TEXT NOT NULL REFERENCES authz_accounts (id),
    created_at  TEXT NOT NULL,
    mac         TEXT NOT NULL
);
INSERT INTO authz_cert_bindings_v2 (cert_sha256, issuer, subject, account_id, created_at, mac)
    SELECT '', issuer, subject, account_id, created_at, mac FROM authz_cert_bindings;
DROP TABLE authz_cert_bindings;
ALTER TABLE authz_cert_bindings_v2 RENAME TO authz_cert_bindings;
CREATE UNIQUE INDEX authz_cert_bindings_sha256 ON authz_cert_bindings (cert_sha256) WHERE cert_sha256 <> '';
CREATE INDEX authz_cert_bindings_names ON authz_cert_bindings (issuer, subject);

-- +goose Down
-- Only the rows made before the Up survive: the others' MACs cover
-- cert_sha256, which the older code does not know.
CREATE TABLE authz_cert_bindings_v1 (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES authz_accounts (id),
    created_at TEXT NOT NULL,
    mac        TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
INSERT OR IGNORE INTO authz_cert_bindings_v1 (issuer, subject, account_id, created_at, mac)
    SELECT issuer, subject, account_id, created_at, mac FROM authz_cert_bindings WHERE cert_sha256 = '';
DROP TABLE authz_cert_bindings;
ALTER TABLE authz_cert_bindings_v1 RENAME TO authz_cert_bindings;
