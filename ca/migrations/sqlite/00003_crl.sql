-- +goose Up
-- Delta CRLs (RFC 5280 §5.2.4) need to know, exactly, which revocations a
-- full CRL contained. Every revocation gets a per-CA sequence number, given
-- out by a trigger so that no code path that sets status = 'revoked' can
-- forget it; a CRL row records the highest sequence its snapshot saw, and
-- the delta on a base lists revocation_seq > the base's revocation_seq.
--
-- On SQLite one writer commits at a time, so sequence order is commit order
-- and every reader snapshot (WAL) holds a prefix of the sequence. The
-- PostgreSQL migration explains how it gets the same property.
ALTER TABLE ca_certificates ADD COLUMN revocation_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX ca_certificates_revocation_seq ON ca_certificates (issuer_id, revocation_seq);
-- CRLs read the revoked certificates in numeric serial order (shorter hex
-- first, then bytewise); this index returns them in that order without a
-- sort on each of crl.Build's three passes.
CREATE INDEX ca_certificates_crl_order ON ca_certificates (issuer_id, status, LENGTH(serial), serial);
CREATE TABLE ca_revocation_counters (
    issuer_id TEXT PRIMARY KEY REFERENCES ca_authorities (id),
    last      BIGINT NOT NULL
);
-- +goose StatementBegin
CREATE TRIGGER ca_certificates_revoked AFTER UPDATE OF status ON ca_certificates
FOR EACH ROW WHEN NEW.status = 'revoked' AND OLD.status <> 'revoked'
BEGIN
    INSERT OR IGNORE INTO ca_revocation_counters (issuer_id, last) VALUES (NEW.issuer_id, 0);
    UPDATE ca_revocation_counters SET last = last + 1 WHERE issuer_id = NEW.issuer_id;
    UPDATE ca_certificates SET revocation_seq = (SELECT last FROM ca_revocation_counters WHERE issuer_id = NEW.issuer_id)
        WHERE issuer_id = NEW.issuer_id AND serial = NEW.serial;
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER ca_certificates_inserted_revoked AFTER INSERT ON ca_certificates
FOR EACH ROW WHEN NEW.status = 'revoked'
BEGIN
    INSERT OR IGNORE INTO ca_revocation_counters (issuer_id, last) VALUES (NEW.issuer_id, 0);
    UPDATE ca_revocation_counters SET last = last + 1 WHERE issuer_id = NEW.issuer_id;
    UPDATE ca_certificates SET revocation_seq = (SELECT last FROM ca_revocation_counters WHERE issuer_id = NEW.issuer_id)
        WHERE issuer_id = NEW.issuer_id AND serial = NEW.serial;
END;
-- +goose StatementEnd
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
DROP TRIGGER ca_certificates_inserted_revoked;
DROP TRIGGER ca_certificates_revoked;
DROP TABLE ca_revocation_counters;
DROP INDEX ca_certificates_crl_order;
DROP INDEX ca_certificates_revocation_seq;
ALTER TABLE ca_certificates DROP COLUMN revocation_seq;
