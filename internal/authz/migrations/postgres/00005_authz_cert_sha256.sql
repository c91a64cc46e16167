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
-- cert_sha256. The primary key (issuer, subject) goes: a renewed
-- certificate with the same names is bound beside the old one.
ALTER TABLE authz_cert_bindings ADD COLUMN cert_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE authz_cert_bindings DROP CONSTRAINT authz_cert_bindings_pkey;
CREATE UNIQUE INDEX authz_cert_bindings_sha256 ON authz_cert_bindings (cert_sha256) WHERE cert_sha256 <> '';
CREATE INDEX authz_cert_bindings_names ON authz_cert_bindings (issuer, subject);

-- +goose Down
-- Only the rows made before the Up survive: the others' MACs cover
-- cert_sha256, which the older code does not know.
DELETE FROM authz_cert_bindings WHERE cert_sha256 <> '';
DROP INDEX authz_cert_bindings_names;
DROP INDEX authz_cert_bindings_sha256;
ALTER TABLE authz_cert_bindings DROP COLUMN cert_sha256;
ALTER TABLE authz_cert_bindings ADD PRIMARY KEY (issuer, subject);
