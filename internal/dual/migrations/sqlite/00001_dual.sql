-- +goose Up
-- Dual-control requests. Times are unix nanoseconds (UTC) so that expiry can
-- be compared in SQL the same way on both backends. status is the stored
-- state; "expired" is never stored but derived from expires_at when read.
CREATE TABLE dual_requests (
    id            TEXT   PRIMARY KEY,
    kind          TEXT   NOT NULL,
    requester     TEXT   NOT NULL,
    summary       TEXT   NOT NULL,
    approver_role TEXT   NOT NULL,
    payload_hash  BLOB   NOT NULL,
    required      BIGINT NOT NULL CHECK (required >= 1),
    status        TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'executed')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    executed_at   BIGINT NOT NULL DEFAULT 0,
    executed_by   TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX dual_requests_status ON dual_requests (status, expires_at);
CREATE INDEX dual_requests_created ON dual_requests (created_at);
-- One row per decision. The primary key makes each approver count at most
-- once per request even when two of their approvals race.
CREATE TABLE dual_decisions (
    request_id TEXT   NOT NULL REFERENCES dual_requests (id),
    decision   TEXT   NOT NULL CHECK (decision IN ('approve', 'reject')),
    actor      TEXT   NOT NULL,
    at         BIGINT NOT NULL,
    comment    TEXT   NOT NULL,
    PRIMARY KEY (request_id, decision, actor)
);

-- +goose Down
DROP TABLE dual_decisions;
DROP TABLE dual_requests;
