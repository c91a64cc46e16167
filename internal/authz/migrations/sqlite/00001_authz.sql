-- +goose Up
-- Security data. Every row carries mac = hex HMAC-SM3 of its canonical
-- content under the integrity key (authz_meta 'integrity_key', wrapped by a
-- key of the key manager), so a row edited directly in the database is
-- detected and refused.
CREATE TABLE authz_meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE authz_accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    org         TEXT NOT NULL,
    clearance   INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    disabled_at TEXT NOT NULL DEFAULT '',
    mac         TEXT NOT NULL
);
CREATE TABLE authz_role_bindings (
    account_id TEXT NOT NULL REFERENCES authz_accounts (id),
    role       TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    mac        TEXT NOT NULL,
    PRIMARY KEY (account_id, role)
);
-- API bearer tokens. Only SM3(token) is stored: a database dump does not
-- reveal a usable token. scopes narrows the account's roles ('' = all).
CREATE TABLE authz_tokens (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES authz_accounts (id),
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL DEFAULT '',
    mac        TEXT NOT NULL
);
CREATE INDEX authz_tokens_account ON authz_tokens (account_id);
-- TLS client certificates: issuer and subject DN (RFC 4514) -> account.
CREATE TABLE authz_cert_bindings (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES authz_accounts (id),
    created_at TEXT NOT NULL,
    mac        TEXT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

-- +goose Down
DROP TABLE authz_cert_bindings;
DROP TABLE authz_tokens;
DROP TABLE authz_role_bindings;
DROP TABLE authz_accounts;
DROP TABLE authz_meta;
