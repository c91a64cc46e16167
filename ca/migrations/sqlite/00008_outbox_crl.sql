-- +goose Up
-- CRL publication events in the outbox (event 'crl_published', serial ''):
-- which CRL of the issuer, so the directory publisher copies exactly that
-- row of ca_crls. 'ca_added' events (a new CA or generation) use issuer_id
-- and the serial of the CA's certificate, like 'issued'.
ALTER TABLE ca_outbox ADD COLUMN crl_kind TEXT;
ALTER TABLE ca_outbox ADD COLUMN crl_number BIGINT;

-- +goose Down
ALTER TABLE ca_outbox DROP COLUMN crl_number;
ALTER TABLE ca_outbox DROP COLUMN crl_kind;
