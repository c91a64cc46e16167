-- +goose Up
-- The pairs of a dual certificate (GM/T 0015; ca/dual_cert.go): the signing
-- certificate and the encryption certificate issued with it, whose key the
-- KMC generated and escrows (escrow_id). The row is written in the
-- transaction that stores the encryption certificate. Revoking the signing
-- certificate revokes its encryption certificate with it (ca/revoke.go).
-- kmc_pending is 1 while the KMC has not been told of the encryption
-- certificate's revocation (GM/T 0014 RevokeKeyReq; normally told in the
-- revoking transaction), kmc_reason the CRLReason it was last told. Pairs
-- issued before this migration are filled at the CA's start from the
-- KMC's escrows.
CREATE TABLE ca_dual_pairs (
    issuer_id   TEXT NOT NULL,
    sign_serial TEXT NOT NULL,
    enc_serial  TEXT NOT NULL,
    escrow_id   TEXT,
    created_at  TEXT NOT NULL,
    kmc_pending INTEGER NOT NULL DEFAULT 0,
    kmc_reason  INTEGER,
    PRIMARY KEY (issuer_id, enc_serial)
);
CREATE INDEX ca_dual_pairs_sign ON ca_dual_pairs (issuer_id, sign_serial);
CREATE INDEX ca_dual_pairs_kmc ON ca_dual_pairs (issuer_id) WHERE kmc_pending = 1;

-- +goose Down
DROP TABLE ca_dual_pairs;
