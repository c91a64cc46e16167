-- +goose Up
-- Seal applications (印章申请): what a seal administrator asked for, under
-- the dual-control request dual_id (kind seal.make). spec is the canonical
-- JSON of the application: its SM3 hash is what the approvers approved.
CREATE TABLE seal_applications (
    id          TEXT PRIMARY KEY,
    org         TEXT NOT NULL,
    applicant   TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        BYTEA NOT NULL,
    dual_id     TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    seal_id     TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX seal_applications_org ON seal_applications (org);

-- The registry: every seal made, with its status. der is the SESeal.
CREATE TABLE seals (
    id              TEXT PRIMARY KEY,
    org             TEXT NOT NULL,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    status_at       TEXT NOT NULL,
    valid_start     TEXT NOT NULL,
    valid_end       TEXT NOT NULL,
    holders         TEXT NOT NULL,
    der             BYTEA NOT NULL,
    application_id  TEXT NOT NULL UNIQUE,
    made_by         TEXT NOT NULL,
    made_at         TEXT NOT NULL
);
CREATE INDEX seals_org ON seals (org);

-- Status history, so that the status at a past signing time is known.
CREATE TABLE seal_status_log (
    seal_id  TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT NOT NULL,
    actor    TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX seal_status_log_seal ON seal_status_log (seal_id, at);

-- Each seal's usage log: who sealed which document hash when.
CREATE TABLE seal_usage (
    id           TEXT PRIMARY KEY,
    seal_id      TEXT NOT NULL,
    actor        TEXT NOT NULL,
    signer       TEXT NOT NULL,
    format       TEXT NOT NULL,
    document     TEXT NOT NULL,
    doc_hash     TEXT NOT NULL,
    signed_at    TEXT NOT NULL,
    timestamped  INTEGER NOT NULL
);
CREATE INDEX seal_usage_seal ON seal_usage (seal_id, signed_at);

-- The seal maker's certificate (profile seal-maker) for its key.
CREATE TABLE seal_maker (
    key_uri     TEXT PRIMARY KEY,
    cert        BYTEA NOT NULL,
    chain       BYTEA NOT NULL,
    created_at  TEXT NOT NULL
);

-- +goose Down
DROP TABLE seal_maker;
DROP TABLE seal_usage;
DROP TABLE seal_status_log;
DROP TABLE seals;
DROP TABLE seal_applications;
