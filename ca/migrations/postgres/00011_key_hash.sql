-- +goose Up
-- The SHA-256 of each certificate's SubjectPublicKeyInfo, as ca_blocked_keys
-- holds it: when a certificate is revoked for keyCompromise, every other
-- unexpired certificate of the key is revoked with it (CA/B Forum BR
-- §4.9.1.1; Boulder's keyHashToSerial). NULL for a revocation carried over
-- without its certificate; rows from before this migration are filled at
-- the CA's start (ca/keysweep.go).
ALTER TABLE ca_certificates ADD COLUMN spki_sha256 BYTEA;
CREATE INDEX ca_certificates_spki ON ca_certificates (spki_sha256) WHERE spki_sha256 IS NOT NULL;

-- +goose Down
DROP INDEX ca_certificates_spki;
ALTER TABLE ca_certificates DROP COLUMN spki_sha256;
