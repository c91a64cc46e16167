-- +goose Up
-- The organisation registry is part of what authz_epoch names (00002): a
-- write to it, by anyone, gives the epoch a new value, so a node that keeps
-- the organisations it has read (orgcache.go) sees the change at the next
-- request.
CREATE TRIGGER authz_orgs_epoch_insert AFTER INSERT ON authz_orgs BEGIN UPDATE authz_epoch SET n = random(); END;
CREATE TRIGGER authz_orgs_epoch_update AFTER UPDATE ON authz_orgs BEGIN UPDATE authz_epoch SET n = random(); END;
CREATE TRIGGER authz_orgs_epoch_delete AFTER DELETE ON authz_orgs BEGIN UPDATE authz_epoch SET n = random(); END;

-- +goose Down
DROP TRIGGER authz_orgs_epoch_delete;
DROP TRIGGER authz_orgs_epoch_update;
DROP TRIGGER authz_orgs_epoch_insert;
