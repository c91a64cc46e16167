-- +goose Up
-- status is also 'abandoned': no certificate was issued for the key (the
-- CA's request failed after ApplyKey, or the sweep found none); its wrapped
-- key is set to NULL. The sweep reads the escrows pending longest.
CREATE INDEX kmc_escrow_pending ON kmc_escrow (created_at) WHERE status = 'pending';

-- +goose Down
DROP INDEX kmc_escrow_pending;
