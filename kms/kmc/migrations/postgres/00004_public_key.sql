-- +goose Up
-- The escrows of a public key: the CA refuses to certify an escrowed
-- encryption key as anyone's signing key (GM/T 0014: signing keys are never
-- escrowed), and a recovery naming a certificate whose binding was lost
-- finds its pending escrow.
CREATE INDEX kmc_escrow_public_key ON kmc_escrow (public_key);

-- +goose Down
DROP INDEX kmc_escrow_public_key;
