-- +goose Up
-- Dynamic authorities (issue #5 §1-3). lineage is the CA id clients issue
-- from (POST /api/v1/ca/{lineage}/certificates); each generation of a
-- lineage is its own row with its own id ("<lineage>" for the first,
-- "<lineage>-g<N>" after rollovers), key, certificate, CRLs and OCSP, so
-- certificates a generation signed keep their revocation service when the
-- next takes over. status is 'active' (issues) or 'retired' (only signs
-- CRLs and OCSP for what it issued). origin says how the CA came: builtin,
-- imported, rollover. chain holds, for a CA whose issuer is not a platform
-- CA (an offline root), the issuer's certificates up to the root as
-- concatenated DER. ceremony_sm3 is the hex SM3 of the ceremony file when
-- one was given.
ALTER TABLE ca_authorities ADD COLUMN lineage TEXT NOT NULL DEFAULT '';
ALTER TABLE ca_authorities ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE ca_authorities ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE ca_authorities ADD COLUMN origin TEXT NOT NULL DEFAULT 'builtin';
ALTER TABLE ca_authorities ADD COLUMN chain BLOB;
ALTER TABLE ca_authorities ADD COLUMN ceremony_sm3 TEXT NOT NULL DEFAULT '';
UPDATE ca_authorities SET lineage = id WHERE lineage = '';
-- One active generation per lineage: issuance switches atomically.
CREATE UNIQUE INDEX ca_authorities_active ON ca_authorities (lineage) WHERE status = 'active';

-- +goose Down
DROP INDEX ca_authorities_active;
ALTER TABLE ca_authorities DROP COLUMN ceremony_sm3;
ALTER TABLE ca_authorities DROP COLUMN chain;
ALTER TABLE ca_authorities DROP COLUMN origin;
ALTER TABLE ca_authorities DROP COLUMN status;
ALTER TABLE ca_authorities DROP COLUMN generation;
ALTER TABLE ca_authorities DROP COLUMN lineage;
