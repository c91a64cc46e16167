-- +goose Up
-- authz_epoch names the state of what a bearer token authenticates as: the
-- tokens, the accounts, their role bindings and the integrity key. The
-- triggers give it a new random value on every write, whoever makes it
-- (the API, the offline CLI in another process, a hand-written UPDATE), so
-- a node that keeps tokens it has checked (tokencache.go) and reads the
-- epoch on each request sees a revocation by anyone at once. Random rather
-- than counted: a database restored from a backup comes back with the
-- value it had then, which cannot be mistaken for a later state.
CREATE TABLE authz_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO authz_epoch (id, n) VALUES (1, 0);
-- +goose StatementBegin
CREATE TRIGGER authz_tokens_epoch_insert AFTER INSERT ON authz_tokens BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_tokens_epoch_update AFTER UPDATE ON authz_tokens BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_tokens_epoch_delete AFTER DELETE ON authz_tokens BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_accounts_epoch_insert AFTER INSERT ON authz_accounts BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_accounts_epoch_update AFTER UPDATE ON authz_accounts BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_accounts_epoch_delete AFTER DELETE ON authz_accounts BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_role_bindings_epoch_insert AFTER INSERT ON authz_role_bindings BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_role_bindings_epoch_update AFTER UPDATE ON authz_role_bindings BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_role_bindings_epoch_delete AFTER DELETE ON authz_role_bindings BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_meta_epoch_insert AFTER INSERT ON authz_meta BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_meta_epoch_update AFTER UPDATE ON authz_meta BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER authz_meta_epoch_delete AFTER DELETE ON authz_meta BEGIN UPDATE authz_epoch SET n = random(); END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER authz_meta_epoch_delete;
DROP TRIGGER authz_meta_epoch_update;
DROP TRIGGER authz_meta_epoch_insert;
DROP TRIGGER authz_role_bindings_epoch_delete;
DROP TRIGGER authz_role_bindings_epoch_update;
DROP TRIGGER authz_role_bindings_epoch_insert;
DROP TRIGGER authz_accounts_epoch_delete;
DROP TRIGGER authz_accounts_epoch_update;
DROP TRIGGER authz_accounts_epoch_insert;
DROP TRIGGER authz_tokens_epoch_delete;
DROP TRIGGER authz_tokens_epoch_update;
DROP TRIGGER authz_tokens_epoch_insert;
DROP TABLE authz_epoch;
