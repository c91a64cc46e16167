-- +goose Up
-- The sweep (sweep.go) reads the escrows pending longest, and finds a
-- pending escrow by its public key.
CREATE INDEX kmc_escrow_pending ON kmc_escrow (created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX kmc_escrow_pending;
