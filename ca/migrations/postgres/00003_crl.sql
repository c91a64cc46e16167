-- +goose Up
-- Delta CRLs (RFC 5280 §5.2.4) need to know, exactly, which revocations a
-- full CRL contained. Every revocation gets a per-CA sequence number, given
-- out by a trigger so that no code path that sets status = 'revoked' can
-- forget it; a CRL row records the highest sequence its snapshot saw, and
-- the delta on a base lists revocation_seq > the base's revocation_seq.
--
-- Why a counter row and not a SEQUENCE: nextval() is not transactional, so
-- revocation A could take 5, B take 6, and B commit first; a CRL snapshot
-- taken between the two commits would see 6 but not 5, record 6, and the
-- delta (revocation_seq > 6) would miss A forever. Here the trigger bumps
-- the CA's counter row with INSERT ... ON CONFLICT DO UPDATE, which holds
-- that row's lock until the revoking transaction ends: B cannot take a
-- number until A has committed (B then reads A's value and adds one) or
-- rolled back (B reuses A's number). So sequence order is commit order, and
-- every snapshot (REPEATABLE READ, taken at its first statement) holds
-- exactly the revocations with revocation_seq <= the highest it sees. The
-- cost is that revocations of one CA commit one at a time, which the audit
-- log's hash chain already imposes.
ALTER TABLE ca_certificates ADD COLUMN revocation_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX ca_certificates_revocation_seq ON ca_certificates (issuer_id, revocation_seq);
-- CRLs read the revoked certificates in numeric serial order (shorter hex
-- first, then bytewise); this index returns them in that order without a
-- sort on each of crl.Build's three passes.
CREATE INDEX ca_certificates_crl_order ON ca_certificates (issuer_id, status, LENGTH(serial), serial COLLATE "C");
CREATE TABLE ca_revocation_counters (
    issuer_id TEXT PRIMARY KEY REFERENCES ca_authorities (id),
    last      BIGINT NOT NULL
);
-- +goose StatementBegin
CREATE FUNCTION ca_revocation_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'revoked' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'revoked') THEN
        INSERT INTO ca_revocation_counters AS c (issuer_id, last) VALUES (NEW.issuer_id, 1)
            ON CONFLICT (issuer_id) DO UPDATE SET last = c.last + 1
            RETURNING c.last INTO NEW.revocation_seq;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER ca_certificates_revocation_seq BEFORE INSERT OR UPDATE OF status ON ca_certificates
    FOR EACH ROW EXECUTE FUNCTION ca_revocation_seq();
-- Full and delta CRLs share one number sequence per CA (RFC 5280 §5.2.3)
-- and one table. kind is 'full' or 'delta'; base_number is a delta's base
-- full CRL (its deltaCRLIndicator); revocation_seq is the highest revocation
-- sequence the CRL's snapshot saw (NULL for CRLs made before this
-- migration: they cannot be a delta's base); delta_base marks the full CRLs
-- made on schedule, which deltas are computed against.
ALTER TABLE ca_crls ADD COLUMN kind TEXT NOT NULL DEFAULT 'full';
ALTER TABLE ca_crls ADD COLUMN base_number BIGINT;
ALTER TABLE ca_crls ADD COLUMN revocation_seq BIGINT;
ALTER TABLE ca_crls ADD COLUMN delta_base INTEGER NOT NULL DEFAULT 0;
CREATE INDEX ca_crls_kind ON ca_crls (issuer_id, kind, number);

-- +goose Down
DROP INDEX ca_crls_kind;
ALTER TABLE ca_crls DROP COLUMN delta_base;
ALTER TABLE ca_crls DROP COLUMN revocation_seq;
ALTER TABLE ca_crls DROP COLUMN base_number;
ALTER TABLE ca_crls DROP COLUMN kind;
DROP TRIGGER ca_certificates_revocation_seq ON ca_certificates;
DROP FUNCTION ca_revocation_seq();
DROP TABLE ca_revocation_counters;
DROP INDEX ca_certificates_crl_order;
DROP INDEX ca_certificates_revocation_seq;
ALTER TABLE ca_certificates DROP COLUMN revocation_seq;
