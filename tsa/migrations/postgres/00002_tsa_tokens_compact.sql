-- +goose Up
-- Tokens are looked up by serial only, and the serial begins with the
-- issuing millisecond (handler.go newSerial), so a time range is a serial
-- range: the gen_time index only cost writes.
DROP INDEX tsa_tokens_gen_time;

-- +goose Down
CREATE INDEX tsa_tokens_gen_time ON tsa_tokens (gen_time);
