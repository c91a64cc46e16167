-- hsm/soft keystore (see hsm/soft/doc.go). Nothing here is a key in clear,
-- except dev_key, which only a dev keystore fills and production refuses.

-- +goose Up
CREATE TABLE hsm_soft_master (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    kind        TEXT    NOT NULL CHECK (kind IN ('passphrase', 'shamir', 'dev')),
    check_value BLOB    NOT NULL,
    kdf_time    BIGINT  NOT NULL DEFAULT 0,
    kdf_memory  BIGINT  NOT NULL DEFAULT 0,
    kdf_threads BIGINT  NOT NULL DEFAULT 0,
    kdf_salt    BLOB,
    sealed      BLOB,
    share_set   BLOB,
    threshold   BIGINT  NOT NULL DEFAULT 0,
    shares      BIGINT  NOT NULL DEFAULT 0,
    dev_key     BLOB,
    created     TEXT    NOT NULL
);

CREATE TABLE hsm_soft_keys (
    uri        TEXT   PRIMARY KEY,
    version    BIGINT NOT NULL,
    algorithm  TEXT   NOT NULL,
    key_usage  TEXT   NOT NULL,
    service    TEXT   NOT NULL,
    public_key BLOB,
    nonce      BLOB   NOT NULL,
    sealed     BLOB   NOT NULL,
    created    TEXT   NOT NULL
);

CREATE INDEX hsm_soft_keys_service ON hsm_soft_keys (service, uri);

-- +goose Down
DROP TABLE hsm_soft_keys;
DROP TABLE hsm_soft_master;
