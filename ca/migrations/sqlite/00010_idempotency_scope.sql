-- +goose Up
-- An Idempotency-Key names a request of one requester (the account that
-- sent it): another account's request with the same key is another request,
-- which neither collides with the first nor learns that the key was used.
-- The look-up spans the generations of the issuer's lineage (ca/issue.go),
-- so a retry after a rollover finds what the previous generation issued.
DROP INDEX ca_certificates_idempotency;
CREATE UNIQUE INDEX ca_certificates_idempotency ON ca_certificates (issuer_id, requester, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- +goose Down
-- Fails if two requesters have since used one key under one issuer.
DROP INDEX ca_certificates_idempotency;
CREATE UNIQUE INDEX ca_certificates_idempotency ON ca_certificates (issuer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
