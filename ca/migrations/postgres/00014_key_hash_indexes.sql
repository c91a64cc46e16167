-- +goose Up
-- Issuance looks a request's key up by its hash and either the holder's
-- organisation (checkKeyHolder: another organisation's certificate of the
-- key) or the profile (checkNotEscrowed: a certificate of a KMC profile).
-- With the key hash alone, each lookup read every certificate of the key:
-- an organisation certifying one key many times made its issuance slower
-- with each certificate. These two indexes bound the rows read to the
-- ones that answer; the first also serves the lookups by key hash alone.
CREATE INDEX ca_certificates_spki_org ON ca_certificates (spki_sha256, requester_org) WHERE spki_sha256 IS NOT NULL;
CREATE INDEX ca_certificates_spki_profile ON ca_certificates (spki_sha256, profile) WHERE spki_sha256 IS NOT NULL;
DROP INDEX ca_certificates_spki;

-- +goose Down
CREATE INDEX ca_certificates_spki ON ca_certificates (spki_sha256) WHERE spki_sha256 IS NOT NULL;
DROP INDEX ca_certificates_spki_profile;
DROP INDEX ca_certificates_spki_org;
