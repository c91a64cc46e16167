-- +goose Up
-- The seal maker is renewed before its certificate ends, and at once when
-- the CA revokes it or its issuing CA: each renewal is a new key (key_uri)
-- with a new certificate. base is the configured seal.maker_key the
-- lineage started from (generation 1 uses that key itself); status is
-- 'active' for the one that makes seals and 'retired' for those replaced,
-- with when and why. A retired maker's certificate is not revoked: the
-- seals it made carry it and verify with it.
ALTER TABLE seal_maker ADD COLUMN base TEXT NOT NULL DEFAULT '';
ALTER TABLE seal_maker ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE seal_maker ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE seal_maker ADD COLUMN retired_at TEXT NOT NULL DEFAULT '';
ALTER TABLE seal_maker ADD COLUMN retired_why TEXT NOT NULL DEFAULT '';
UPDATE seal_maker SET base = key_uri;
-- Two nodes renewing at once: one generation is recorded, the other
-- node's insert fails and it takes the recorded one.
CREATE UNIQUE INDEX seal_maker_generation ON seal_maker (base, generation);

-- +goose Down
DROP INDEX seal_maker_generation;
ALTER TABLE seal_maker DROP COLUMN retired_why;
ALTER TABLE seal_maker DROP COLUMN retired_at;
ALTER TABLE seal_maker DROP COLUMN status;
ALTER TABLE seal_maker DROP COLUMN generation;
ALTER TABLE seal_maker DROP COLUMN base;
