-- +goose Up
-- authz_epoch names the state of what a bearer token authenticates as: the
-- tokens, the accounts, their role bindings and the integrity key. The
-- triggers give it a new random value (53 bits) on every write statement,
-- whoever runs it (the API, the offline CLI, another node, a hand-written
-- UPDATE), so a node that keeps tokens it has checked (tokencache.go) and
-- reads the epoch on each request sees a revocation by anyone at once.
-- Random rather than counted: a database restored from a backup comes back
-- with the value it had then, which cannot be mistaken for a later state.
-- (The row serialises writes to these tables; they are rare.)
CREATE TABLE authz_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO authz_epoch (id, n) VALUES (1, 0);
-- +goose StatementBegin
CREATE FUNCTION authz_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE authz_epoch SET n = floor(random() * 9007199254740991)::bigint;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER authz_tokens_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION authz_epoch_bump();
CREATE TRIGGER authz_accounts_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION authz_epoch_bump();
CREATE TRIGGER authz_role_bindings_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_role_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION authz_epoch_bump();
CREATE TRIGGER authz_meta_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_meta
    FOR EACH STATEMENT EXECUTE FUNCTION authz_epoch_bump();

-- +goose Down
DROP TRIGGER authz_meta_epoch ON authz_meta;
DROP TRIGGER authz_role_bindings_epoch ON authz_role_bindings;
DROP TRIGGER authz_accounts_epoch ON authz_accounts;
DROP TRIGGER authz_tokens_epoch ON authz_tokens;
DROP FUNCTION authz_epoch_bump();
DROP TABLE authz_epoch;
