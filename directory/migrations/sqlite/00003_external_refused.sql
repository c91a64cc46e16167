-- +goose Up
-- Entries an external server refused for what they are (schema,
-- constraint, naming: directory/external.go, entryRefusals), one row per
-- target and entry. Such an entry is skipped so that the rest of the queue
-- goes on; it is written again when it changes, when the process starts
-- and every ten minutes, and its row goes once it is written. dn is the DN
-- on the target; change_id the last change of the entry refused.
CREATE TABLE dir_refused (
    target     TEXT NOT NULL,
    dn_norm    TEXT NOT NULL,
    dn         TEXT NOT NULL,
    change_id  BIGINT NOT NULL,
    code       INTEGER NOT NULL,
    message    TEXT NOT NULL,
    refused_at TEXT NOT NULL,
    PRIMARY KEY (target, dn_norm)
);

-- +goose Down
DROP TABLE dir_refused;
