-- +goose Up
-- The directory's entries (issue #6). attrs is JSON: attribute name ->
-- list of base64 values. The in-memory tree every node serves is loaded
-- from here and reloaded when dir_meta.version moves.
CREATE TABLE dir_entries (
    dn_norm     TEXT PRIMARY KEY,
    dn          TEXT NOT NULL,
    parent_norm TEXT NOT NULL,
    kind        TEXT NOT NULL,
    attrs       BYTEA NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX dir_entries_parent ON dir_entries (parent_norm);
-- One row. Every writing transaction first bumps version: that row lock
-- serialises the directory's writers across processes, so dir_changes ids
-- are assigned in commit order.
CREATE TABLE dir_meta (
    id      INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO dir_meta (id, version) VALUES (1, 0);
-- The change log the external publishers follow (dn_norm of each changed
-- or deleted entry).
CREATE TABLE dir_changes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dn_norm    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- One row per external LDAP server: how far it has been brought, and who
-- holds the lease to push to it.
CREATE TABLE dir_targets (
    name        TEXT PRIMARY KEY,
    cursor      BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until TEXT NOT NULL DEFAULT '',
    last_error  TEXT NOT NULL DEFAULT '',
    updated_at  TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE dir_targets;
DROP TABLE dir_changes;
DROP TABLE dir_meta;
DROP INDEX dir_entries_parent;
DROP TABLE dir_entries;
