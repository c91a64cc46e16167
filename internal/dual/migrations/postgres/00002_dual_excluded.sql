-- +goose Up
-- Who may not approve a request besides its requester (the account that
-- would receive a recovered key, for example): such an approval is refused
-- and never counts.
CREATE TABLE dual_excluded (
    request_id TEXT NOT NULL REFERENCES dual_requests (id),
    actor      TEXT NOT NULL,
    PRIMARY KEY (request_id, actor)
);

-- +goose Down
DROP TABLE dual_excluded;
