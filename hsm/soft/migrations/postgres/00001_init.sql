-- hsm/soft keystore (see hsm/soft/doc.go). Nothing here is a key in clear,
-- except dev_key, which only a dev keystore fills and production refuses.

-- +goose Up
CREATE TABLE hsm_soft_master (
    id          BIGINT  PRIMARY KEY CHECK (id = 1),
    kind        TEXT    NOT NULL CHECK (kind IN ('passphrase', 'shamir', 'dev')),
    check_value BYTEA   NOT NULL,
    kdf_time    BIGINT  NOT NULL DEFAULT 0,
    kdf_memory  BIGINT  NOT NULL DEFAULT 0,
    kdf_threads BIGINT  NOT NULL DEFAULT 0,
    kdf_salt    BYTEA,
    sealed      BYTEA,
    share_set   BYTEA,
    threshold   BIGINT  NOT NULL DEFAULT 0,
    shares      BIGINT  NOT NULL DEFAULT 0,
    dev_key     BYTEA,
    created     TEXT    NOT NULL
);

CREATE TABLE hsm_soft_keys (
    uri        TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    algorithm  TEXT   NOT NULL,
    key_usage  TEXT   NOT NULL,
    service    TEXT   NOT NULL,
    public_key BYTEA,
    nonce      BYTEA  NOT NULL,
    sealed     BYTEA  NOT NULL,
    created    TEXT   NOT NULL
);

CREATE INDEX hsm_soft_keys_service ON hsm_soft_keys (service, uri);

-- +goose Down
DROP TABLE hsm_soft_keys;
DROP TABLE hsm_soft_master;
