-- +goose Up
-- Delegated OCSP responders (RFC 6960 §4.2.2.2): per CA, generations 1, 2,
-- ... of a responder key and its ocsp-signer certificate. A process that
-- makes a generation first claims it (state 'pending', owner = a random id
-- of that process); the primary key lets exactly one claim win across
-- processes sharing the database. It then creates the key, has the CA issue
-- the certificate and, in the transaction that records the certificate in
-- ca_certificates, sets the row 'active'. key_uri names the key in the key
-- manager; the key itself never enters the database. 'retired' rows keep the
-- history after their key was destroyed.
CREATE TABLE ca_ocsp_responders (
    issuer_id  TEXT NOT NULL REFERENCES ca_authorities (id),
    generation BIGINT NOT NULL,
    state      TEXT NOT NULL,
    owner      TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    key_uri    TEXT UNIQUE,
    serial     TEXT,
    cert       BYTEA,
    not_after  TEXT,
    created_at TEXT,
    PRIMARY KEY (issuer_id, generation)
);
-- Pre-signed OCSP responses (RFC 5019 §2.2.1: requests without a nonce),
-- one per CA, serial and CertID hash algorithm. generation is the responder
-- generation that signed it (0: the CA itself). A revocation deletes the
-- serial's rows in its own transaction.
CREATE TABLE ca_ocsp_responses (
    issuer_id   TEXT NOT NULL REFERENCES ca_authorities (id),
    serial      TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    status      TEXT NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    der         BYTEA NOT NULL,
    PRIMARY KEY (issuer_id, serial, hash_alg)
);
CREATE INDEX ca_ocsp_responses_this_update ON ca_ocsp_responses (this_update);
-- A counter per CA that every revocation moves in its own transaction, so
-- that other processes on the same database see within a poll interval that
-- their in-memory responses of that CA may be stale.
CREATE TABLE ca_ocsp_epochs (
    issuer_id TEXT PRIMARY KEY REFERENCES ca_authorities (id),
    epoch     BIGINT NOT NULL
);

-- +goose Down
DROP TABLE ca_ocsp_epochs;
DROP INDEX ca_ocsp_responses_this_update;
DROP TABLE ca_ocsp_responses;
DROP TABLE ca_ocsp_responders;
