-- +goose Up
-- Every serial a CA is about to sign, recorded with the linted
-- TBSCertificate before the signature is made (RELIABILITY.md §1.1, as
-- Boulder records a serial before it signs): the primary key makes a serial
-- unique per issuer before anything carries it, and a row without a
-- matching ca_certificates row names a signature that may have been made
-- but was never stored (the process died in between).
CREATE TABLE ca_serials (
    issuer_id  TEXT NOT NULL REFERENCES ca_authorities (id),
    serial     TEXT NOT NULL,
    profile    TEXT NOT NULL,
    tbs        BYTEA NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (issuer_id, serial)
);

-- +goose Down
DROP TABLE ca_serials;
