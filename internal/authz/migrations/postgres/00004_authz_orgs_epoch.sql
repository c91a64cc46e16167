-- +goose Up
-- The organisation registry is part of what authz_epoch names (00002): a
-- write to it, by anyone, gives the epoch a new value, so a node that keeps
-- the organisations it has read (orgcache.go) sees the change at the next
-- request.
CREATE TRIGGER authz_orgs_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_orgs
    FOR EACH STATEMENT EXECUTE FUNCTION authz_epoch_bump();

-- +goose Down
DROP TRIGGER authz_orgs_epoch ON authz_orgs;
