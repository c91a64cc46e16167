-- +goose Up
-- Facts about the installation: when it was initialised, by which node.
CREATE TABLE node_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose Down
DROP TABLE node_meta;
