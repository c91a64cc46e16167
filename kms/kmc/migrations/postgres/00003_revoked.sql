-- +goose Up
-- status is also 'revoked': the CA revoked the escrow's encryption
-- certificate (GM/T 0014 RevokeKeyReq), at revoked_at for
-- revocation_reason (an RFC 5280 CRLReason name). The key stays
-- recoverable until kmc.retention after not_after, as an active one.
ALTER TABLE kmc_escrow ADD COLUMN revoked_at TEXT;
ALTER TABLE kmc_escrow ADD COLUMN revocation_reason TEXT;

-- +goose Down
ALTER TABLE kmc_escrow DROP COLUMN revocation_reason;
ALTER TABLE kmc_escrow DROP COLUMN revoked_at;
