-- +goose Up
-- API bearer tokens. Only SM3(token) is stored: a database dump does not
-- reveal a usable token.
CREATE TABLE authz_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    roles      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE authz_tokens;
