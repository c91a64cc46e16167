-- +goose Up
-- Which person and application entries hold each certificate in their
-- userCertificate: the SHA-256 of the DER and the holder's dn_norm. Every
-- directory write keeps it in its own transaction, so a revoked or expired
-- certificate leaves every entry that holds it, whatever that entry's mail
-- or uid says by then. The rows of entries written before this migration
-- are filled at the directory's first start after it (holders_indexed).
CREATE TABLE dir_cert_holders (
    cert_sha256 BLOB NOT NULL,
    holder_norm TEXT NOT NULL,
    PRIMARY KEY (cert_sha256, holder_norm)
);
CREATE INDEX dir_cert_holders_holder ON dir_cert_holders (holder_norm);
ALTER TABLE dir_meta ADD COLUMN holders_indexed INTEGER NOT NULL DEFAULT 0;
-- A directory with no entries yet has nothing to fill.
UPDATE dir_meta SET holders_indexed = 1 WHERE NOT EXISTS (SELECT 1 FROM dir_entries);

-- +goose Down
ALTER TABLE dir_meta DROP COLUMN holders_indexed;
DROP INDEX dir_cert_holders_holder;
DROP TABLE dir_cert_holders;
