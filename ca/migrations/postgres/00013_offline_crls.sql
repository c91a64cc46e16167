-- +goose Up
-- CRLs of offline CAs (an offline root's ARL, signed in a CRL ceremony on
-- the root's machine, ca/offline.go) imported into a node that serves them
-- at /pki/{ca_id}.crl (ca/offlinecrl.go). issuer is the offline CA's
-- certificate (DER) the CRL verified with: a CA of a chain stored with an
-- imported CA. number only goes up per ca_id.
CREATE TABLE ca_offline_crls (
    ca_id       TEXT   NOT NULL,
    number      BIGINT NOT NULL,
    issuer      BYTEA  NOT NULL,
    this_update TEXT   NOT NULL,
    next_update TEXT   NOT NULL,
    der         BYTEA  NOT NULL,
    created_at  TEXT   NOT NULL,
    PRIMARY KEY (ca_id, number)
);

-- +goose Down
DROP TABLE ca_offline_crls;
